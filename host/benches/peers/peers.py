"""Run the same three DAGs with orch and with Luigi, Dagster and Prefect, alternately; report medians.

Started by `run.sh` with the Python of the peers' virtual environment. Settings (environment):

  REPS=5            repetitions of each DAG with each tool and set-up
  ONLY=a,b          only these tools or tool/set-ups (e.g. `orch,dagster/in-process`)
  SKIP=a,b          leave these out: `tool`, `tool/set-up`, `tool/set-up:DAG` or `:DAG`
                    (e.g. `SKIP=dagster/multiprocess:fanout1000`)
  DAGS=a,b          only these DAGs (chain40, chain40-work, fanout1000)
  ONCE_OVER=300     a tool/set-up whose run of a DAG takes longer than this (s, wall) is not
                    repeated for that DAG: its row says how many runs it has
  PEER_TIMEOUT=3600 a run still going after this (s) is killed and its row says so
  FRESH_STATE=0     1: every run gets a new empty state directory (orch's run store, Dagster's
                    and Prefect's homes). 0: one per tool/set-up, made by an unmeasured warm-up
                    run (a user's second run, with its database already created and migrated)
  ORCH              the orch binary (run.sh passes target/release/orch)
  PEERS_OUT         where results go (default target/peers)

Every measured run is a fresh process; "wall" is process start to exit, timed with
`time.perf_counter` around `subprocess.run`. Each peer also reports the time around its tool's
run call, measured inside the process, and where the tool records one, the run's own duration.
"""

import hashlib
import importlib.metadata as md
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE))
from common import ALL_DAGS, DAGS  # noqa: E402

# (tool, set-up, what it is): the order runs alternate in (rotated by one each repetition).
SETUPS = [
    ("orch", "parallel-8",
     "`orch run --json --parallel 8 FILE`, the TOML workflow of `echo` steps (`sleep_ms = 10` "
     "for the work); run store SQLite, compiled-plugin cache warm"),
    ("luigi", "local-w1",
     "`luigi.build(..., local_scheduler=True, workers=1)`: the local scheduler, Luigi's default "
     "single worker (tasks run in the scheduling process); an empty marker file per task as "
     "its output target"),
    ("luigi", "local-w8",
     "the same with `workers=8` (as orch's --parallel 8): Luigi forks a process per task"),
    ("dagster", "in-process",
     "`job.execute_in_process()`: the in-process executor, on the in-memory ephemeral instance "
     "it uses by default"),
    ("dagster", "multiprocess",
     "`execute_job(reconstructable(job), DagsterInstance.get())`: the default executor in its "
     "default multiprocess mode (a spawned Python process per op, at most cpu_count() at once), "
     "SQLite instance in DAGSTER_HOME"),
    ("prefect", "ephemeral",
     "a flow calling a task per step (fan-out: `.submit()` to the default ThreadPoolTaskRunner, "
     "then `wait`), no PREFECT_API_URL: the temporary local server Prefect starts by itself "
     "(ephemeral mode), SQLite in PREFECT_HOME"),
]


def env_list(name):
    return [x.strip() for x in os.environ.get(name, "").split(",") if x.strip()]


def selected(tool, setup, dag, only, skip):
    key = f"{tool}/{setup}"
    if only and tool not in only and key not in only:
        return False
    return not any(s in (tool, key, f"{tool}:{dag}", f"{key}:{dag}", f":{dag}") for s in skip)


def orch_workflow(path, shape, n, work_ms):
    lines = [f'name = "{shape}"', ""]
    for i in range(n):
        lines.append(f"[steps.s{i}]")
        lines.append('plugin = "echo"')
        if shape == "chain" and i > 0:
            lines.append(f'needs = ["s{i - 1}"]')
        if work_ms:
            lines.append(f"with = {{ sleep_ms = {work_ms} }}")
        lines.append("")
    path.write_text("\n".join(lines))


class Bench:
    def __init__(self):
        self.reps = int(os.environ.get("REPS", "5"))
        self.once_over = float(os.environ.get("ONCE_OVER", "300"))
        self.timeout = float(os.environ.get("PEER_TIMEOUT", "3600"))
        self.fresh = os.environ.get("FRESH_STATE", "0") == "1"
        self.orch = os.environ.get("ORCH", str(ROOT / "target/release/orch"))
        self.out = Path(os.environ.get("PEERS_OUT", ROOT / "target/peers"))
        self.dags = env_list("DAGS") or list(DAGS)
        for d in self.dags:
            if d not in DAGS:
                sys.exit(f"unknown DAG {d!r}: one of {', '.join(DAGS)}")
        only, skip = env_list("ONLY"), env_list("SKIP")
        self.only, self.skip = only, skip
        self.setups = [s for s in SETUPS if any(selected(s[0], s[1], d, only, skip) for d in self.dags)]
        self.tmp = Path(tempfile.mkdtemp(prefix="orch-peers-"))
        self.logs = self.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.cache = self.tmp / "orch-cache"
        self.workflows = self.tmp / "workflows"
        self.workflows.mkdir()
        for name, (shape, n, work_ms) in ALL_DAGS.items():
            orch_workflow(self.workflows / f"{name}.toml", shape, n, work_ms)
        self.samples = []  # dicts: dag, tool, setup, rep, wall_s, call_s, own_s, status
        self.orch_sha = self.orch_digest()

    def orch_digest(self):
        """To notice a rebuild of the binary while the benchmark runs (it would mix two builds)."""
        with open(self.orch, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()[:12]

    def state_dir(self, tool, setup):
        if self.fresh:
            return Path(tempfile.mkdtemp(prefix=f"{tool}-{setup}-", dir=self.tmp))
        d = self.tmp / f"state-{tool}-{setup}"
        d.mkdir(exist_ok=True)
        return d

    def command(self, tool, setup, dag, state):
        env = dict(os.environ)
        if tool == "orch":
            env.update(ORCH_DATABASE_URL=f"sqlite://{state}/orch.db", ORCH_CACHE_DIR=str(self.cache),
                       ORCH_SECRETS_DIR=str(state / "secrets"))
            return [self.orch, "run", "--json", "--parallel", "8", str(self.workflows / f"{dag}.toml")], env
        env.update(PYTHONPATH=str(HERE), PEER_STATE=str(state), DAGSTER_HOME=str(state),
                   PREFECT_HOME=str(state), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        if tool == "dagster":
            yaml = state / "dagster.yaml"
            if not yaml.exists():
                yaml.write_text("telemetry:\n  enabled: false\n")
        return [sys.executable, str(HERE / f"dag_{tool}.py"), dag, setup], env

    def run_one(self, tool, setup, dag, log):
        state = self.state_dir(tool, setup)
        cmd, env = self.command(tool, setup, dag, state)
        with open(log, "wb") as f:
            t0 = time.perf_counter()
            try:
                rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    timeout=self.timeout).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            wall = time.perf_counter() - t0
        if self.fresh:
            shutil.rmtree(state, ignore_errors=True)
        text = log.read_text(errors="replace")
        call_s = own_s = None
        if rc == 0 and tool == "orch":
            report = json.loads([ln for ln in text.splitlines() if ln.startswith("{")][-1])
            if report.get("status") != "succeeded" or len(report.get("steps", [])) != ALL_DAGS[dag][1]:
                rc = "failed"
            own_s = report["duration"] / 1000
        elif rc == 0:
            lines = [ln for ln in text.splitlines() if ln.startswith("PEER_RESULT ")]
            if not lines:
                rc = "no result"
            else:
                r = json.loads(lines[-1][len("PEER_RESULT "):])
                call_s, own_s = r["engine_s"], r.get("own_s")
        return {"tool": tool, "setup": setup, "dag": dag, "wall_s": wall, "call_s": call_s, "own_s": own_s,
                "status": "ok" if rc == 0 else f"{rc}"}

    def warm_up(self):
        for tool, setup, _ in self.setups:
            log = self.logs / f"warmup.{tool}-{setup}.log"
            r = self.run_one(tool, setup, "warmup", log)
            print(f"warm-up {tool}/{setup}: {r['wall_s']:.2f}s {r['status']}", flush=True)
            if r["status"] != "ok":
                sys.exit(f"warm-up of {tool}/{setup} failed: see {log}")

    def run(self):
        self.warm_up()
        dropped = {}  # (tool, setup, dag) -> why
        for dag in self.dags:
            todo = [s for s in self.setups if selected(s[0], s[1], dag, self.only, self.skip)]
            for rep in range(self.reps):
                k = rep % len(todo) if todo else 0
                for tool, setup, _ in todo[k:] + todo[:k]:
                    if (tool, setup, dag) in dropped:
                        continue
                    log = self.logs / f"{dag}.{tool}-{setup}.log"
                    r = self.run_one(tool, setup, dag, log)
                    r["rep"] = rep
                    self.samples.append(r)
                    extra = "" if r["status"] == "ok" else f"  ({r['status']}: see {log})"
                    print(f"{dag} rep {rep + 1}/{self.reps} {tool}/{setup}: {r['wall_s']:.3f}s{extra}", flush=True)
                    if r["status"] != "ok":
                        dropped[(tool, setup, dag)] = r["status"]
                    elif r["wall_s"] > self.once_over:
                        dropped[(tool, setup, dag)] = f"not repeated: over ONCE_OVER={self.once_over:g}s"
        self.dropped = dropped

    def versions(self):
        v = {"python": platform.python_version()}
        for p in ("luigi", "dagster", "prefect"):
            try:
                v[p] = md.version(p)
            except md.PackageNotFoundError:
                v[p] = "not installed"
        v["orch"] = subprocess.run([self.orch, "--version"], capture_output=True, text=True).stdout.strip()
        v["orch"] = v["orch"].removeprefix("orch ") + f" ({self.orch}, sha256 {self.orch_sha}…"
        git = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
        v["orch"] += f"; repository at {git.stdout.strip()})" if git.returncode == 0 else ")"
        return v

    def table(self, started, load_before):
        def ms(s):
            if s is None:
                return "—"
            return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s" if s < 100 else f"{s:.0f} s"

        med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
        v = self.versions()
        out = ["# orch and its peers: the same three DAGs", ""]
        out.append(f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(started))}; {platform.platform()}, "
                   f"{os.cpu_count()} CPUs; load average {load_before} before, {os.getloadavg()[0]:.2f} after; "
                   f"REPS={self.reps}; state: {'a new directory per run' if self.fresh else 'one per tool/set-up, made by a warm-up run'}.")
        out.append("")
        out.append("Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".")
        out.append("")
        now = self.orch_digest()
        if now != self.orch_sha:
            out += [f"**The orch binary changed during the run** (sha256 {self.orch_sha}… at the start, {now}… "
                    "at the end): orch's rows mix two builds. Run again with nothing rebuilding it.", ""]
        out.append("| DAG | tool / set-up | runs | wall (median) | wall per step | run call (median) | "
                   "recorded run (median) | wall × orch | recorded × orch |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for dag in self.dags:
            n = DAGS[dag][1]
            rows = {}
            for tool, setup, _ in self.setups:
                ss = [s for s in self.samples if s["dag"] == dag and s["tool"] == tool and s["setup"] == setup]
                ok = [s for s in ss if s["status"] == "ok"]
                if not ss:
                    continue
                rows[(tool, setup)] = (ss, ok, med([s["wall_s"] for s in ok]),
                                       med([s["call_s"] for s in ok if s["call_s"] is not None]),
                                       med([s["own_s"] for s in ok if s["own_s"] is not None]))
            base = rows.get(("orch", "parallel-8"))
            for (tool, setup), (ss, ok, wall, call, own) in rows.items():
                why = self.dropped.get((tool, setup, dag))
                runs = f"{len(ok)}" + (f" ({why})" if why else "")
                ratio = lambda a, b: "—" if a is None or b is None or not b else f"{a / b:.1f}×"  # noqa: E731
                out.append(f"| {dag} | {tool} / {setup} | {runs} | {ms(wall)} | "
                           f"{ms(wall / n) if wall is not None else '—'} | {ms(call)} | {ms(own)} | "
                           f"{ratio(wall, base and base[2])} | {ratio(own, base and base[4])} |")
        skipped = []
        for t, s, _ in SETUPS:
            out_dags = [d for d in self.dags if not selected(t, s, d, self.only, self.skip)]
            if out_dags:
                skipped += [f"{t}/{s}"] if out_dags == self.dags else [f"{t}/{s}:{d}" for d in out_dags]
        out += ["", "DAGs: " + "; ".join(
            f"`{d}` {'chain' if sh == 'chain' else 'fan-out'} of {n} steps, "
            f"{'sleep %d ms' % w if w else 'no-op'} each" for d, (sh, n, w) in DAGS.items() if d in self.dags) + "."]
        out += ["", "Columns: *wall* is process start to exit (a fresh process each run, the median of the runs); "
                "*run call* is the time around the tool's run call inside the process (after imports and "
                "DAG definition; Prefect's includes starting its temporary server); *recorded run* is the run's "
                "duration as the tool records it (orch's run report, Dagster's run stats, Prefect's flow run "
                "start to end; Luigi records none). Ratios are of medians, the tool's over orch's.", ""]
        out.append("Set-ups:")
        out.append("")
        for tool, setup, what in self.setups:
            out.append(f"- **{tool} / {setup}**: {what}.")
        if skipped:
            out += ["", "Left out (ONLY/SKIP): " + ", ".join(skipped) + "."]
        return "\n".join(out) + "\n"

    def write(self, started, load_before):
        text = self.table(started, load_before)
        (self.out / "results.md").write_text(text)
        (self.out / "results.json").write_text(json.dumps(
            {"versions": self.versions(), "reps": self.reps, "fresh_state": self.fresh, "samples": self.samples},
            indent=1))
        print()
        print(text)
        print(f"written: {self.out / 'results.md'}, {self.out / 'results.json'}; logs of the last run of each in {self.logs}")


def main():
    started = time.time()
    load_before = f"{os.getloadavg()[0]:.2f}"
    b = Bench()
    if not b.setups:
        sys.exit("nothing selected: check ONLY, SKIP and DAGS")
    try:
        b.run()
        b.write(started, load_before)
    finally:
        shutil.rmtree(b.tmp, ignore_errors=True)
    print(f"total {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
