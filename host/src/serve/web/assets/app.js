// orch web page: live run state (recolour the server-drawn DAG, update the step table),
// the selected log streamed as server-sent events, and repeatable rows of array inputs.
// Everything here enhances pages that already work without it.
(function () {
  "use strict";

  function badge(status) {
    var span = document.createElement("span");
    span.className = "badge st-" + status;
    span.textContent = status.replace(/_/g, " ");
    return span;
  }

  function setStatusClass(el, status) {
    el.setAttribute("class", (el.getAttribute("class") || "").replace(/\bst-[a-z_]+/g, "").trim() + " st-" + status);
  }

  function applyState(run, state) {
    run.dataset.status = state.status;
    var top = document.getElementById("run-status");
    if (top) top.replaceChildren(badge(state.status));
    var dur = document.getElementById("run-duration");
    if (dur) dur.textContent = state.duration || "";
    Object.keys(state.steps).forEach(function (id) {
      var s = state.steps[id];
      var sel = '[data-step="' + CSS.escape(id) + '"]';
      var node = document.querySelector("svg.dag a.node" + sel);
      if (node) {
        setStatusClass(node, s.status);
        var meta = node.querySelector(".meta");
        if (meta) meta.textContent = s.meta;
        var title = node.querySelector("title");
        if (title) title.textContent = id + ": " + s.status;
      }
      var row = document.querySelector("table.steps tr" + sel);
      if (row) {
        row.querySelector(".c-status").replaceChildren(badge(s.status));
        row.querySelector(".c-attempts").textContent = s.attempts;
        row.querySelector(".c-duration").textContent = s.duration || "";
        row.querySelector(".c-worker").textContent = s.worker || "";
      }
    });
    document.querySelectorAll("[data-when]").forEach(function (form) {
      var when = form.dataset.when;
      form.hidden = !((when === "active" && !state.final) || (when === "final" && state.final) ||
        (when === "failed" && state.status === "failed"));
    });
  }

  // The session ended (signed out elsewhere, token revoked): reloading leads to sign-in.
  function signedOut(status) {
    if (status === 401) window.location.reload();
    return status === 401;
  }

  function followRun(run) {
    var url = "/runs/" + encodeURIComponent(run.dataset.run) + "/state";
    var timer = null;
    var since = null; // the server's `now` of the last answer: later polls carry only changes
    function poll() {
      var query = since === null ? "" : "?since=" + since;
      fetch(url + query, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (signedOut(r.status)) return null;
          if (r.status >= 400 && r.status < 500) throw new Error("gone");
          if (!r.ok) throw new Error(r.status);
          return r.json();
        })
        .then(function (state) {
          if (!state) return;
          since = state.now;
          applyState(run, state);
          // An interrupted run that carries on (a server restarted) gets its log stream back.
          if (state.status === "running" && log && !log.source) streamLog(log);
          if (!state.final) timer = setTimeout(poll, 1000);
        })
        .catch(function (e) { if (e.message !== "gone") timer = setTimeout(poll, 3000); });
    }
    var status = run.dataset.status;
    if (status !== "succeeded" && status !== "failed" && status !== "cancelled") poll();
    return function () { clearTimeout(timer); };
  }

  function logTime(ms) {
    var d = new Date(ms);
    return d.toISOString().substring(11, 23);
  }

  var log = null;

  function streamLog(log) {
    if (!log.dataset.live || !window.EventSource) return;
    // From the last line shown (a reopened stream goes on from there).
    var last = log.querySelector(".line:last-child");
    var url = log.dataset.stream;
    if (last) url = url.replace(/after=-?\d+/, "after=" + last.dataset.seq);
    var source = new EventSource(url);
    log.source = source;
    source.addEventListener("log", function (e) {
      var l = JSON.parse(e.data);
      var empty = document.getElementById("log-empty");
      if (empty) empty.remove();
      var stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 24;
      var line = document.createElement("div");
      line.className = "line lv-" + l.level;
      line.dataset.seq = l.seq;
      var ts = document.createElement("span"); ts.className = "ts"; ts.textContent = logTime(l.ts);
      var step = document.createElement("span"); step.className = "step";
      step.textContent = l.step + (l.attempt > 1 ? "#" + l.attempt : "");
      var msg = document.createElement("span"); msg.className = "msg"; msg.textContent = l.message;
      line.append(ts, step, msg);
      log.appendChild(line);
      if (stick) log.scrollTop = log.scrollHeight;
    });
    function stop() { source.close(); log.source = null; }
    source.addEventListener("end", stop);
    // The server's own `error` event carries data; a dropped connection does not, and the
    // browser reconnects from the last line it got (Last-Event-ID).
    source.addEventListener("error", function (e) { if (e.data) stop(); });
  }

  document.addEventListener("htmx:responseError", function (e) {
    signedOut(e.detail.xhr.status);
  });

  function renumber(list) {
    var name = list.closest("fieldset").querySelector("legend").firstChild.textContent.trim();
    list.querySelectorAll(".row").forEach(function (row, i) {
      row.querySelector("input").setAttribute("aria-label", name + ", item " + (i + 1));
      row.querySelector(".remove").setAttribute("aria-label", "Remove item " + (i + 1) + " of " + name);
    });
  }

  document.addEventListener("click", function (e) {
    var add = e.target.closest("[data-add]");
    if (add) {
      var list = add.parentElement.querySelector(".row-list");
      var last = list.querySelector(".row:last-child");
      var row = last.cloneNode(true);
      row.querySelector("input").value = "";
      list.appendChild(row);
      renumber(list);
      row.querySelector("input").focus();
      return;
    }
    var remove = e.target.closest(".row .remove");
    if (remove) {
      var rows = remove.closest(".row-list");
      var row2 = remove.closest(".row");
      if (rows.querySelectorAll(".row").length > 1) row2.remove();
      else row2.querySelector("input").value = "";
      renumber(rows);
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    log = document.getElementById("log");
    if (log) {
      log.scrollTop = log.scrollHeight;
      streamLog(log);
    }
    var run = document.getElementById("run");
    if (run) followRun(run);
  });
})();
