//! Tables and text for humans: run summaries, plans, run history, tokens, schedule ticks,
//! plugin descriptions. Every function returns text ending in a newline, printed as it is.

use crate::executor::{PlanReport, RunReport, StepPlan};
use crate::runtime::PluginInfo;
use crate::store::{RunDetail, RunRow, TickRow, TokenRow};
use comfy_table::{Table, presets};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_HORIZONTAL_ONLY)
        .set_header(header.to_vec());
    t
}

fn millis(ms: u128) -> String {
    if ms >= 1000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{ms}ms")
    }
}

/// Duration between two stored timestamps; empty while still running.
fn elapsed(start: i64, end: Option<i64>) -> String {
    end.map(|e| millis((e - start).max(0) as u128))
        .unwrap_or_default()
}

/// A stored timestamp, to the second (UTC).
fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// A stored timestamp, to the millisecond (UTC).
fn time_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_default()
}

/// A run id as `orch runs show` accepts it: its first 12 characters.
fn short_id(id: &str) -> &str {
    &id[..12.min(id.len())]
}

fn short(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        format!("{}…", one_line.chars().take(max).collect::<String>())
    }
}

/// The table printed at the end of `orch run`.
pub(super) fn run_summary(report: &RunReport) -> String {
    let mut t = table(&["step", "status", "attempts", "duration", "detail"]);
    for s in &report.steps {
        let detail = match &s.error {
            Some(e) => e.clone(),
            None if s.outputs.as_object().is_some_and(|o| !o.is_empty()) => {
                format!("outputs: {}", s.outputs)
            }
            None => String::new(),
        };
        t.add_row(vec![
            s.id.clone(),
            s.status.as_str().to_string(),
            s.attempts.to_string(),
            millis(s.duration.as_millis()),
            short(&detail, 100),
        ]);
    }
    format!(
        "{t}\nrun {} {} in {} (orch runs show {})\n",
        report.run_id,
        report.status,
        millis(report.duration.as_millis()),
        short_id(&report.run_id)
    )
}

/// `orch plan` output.
pub(super) fn plan(report: &PlanReport) -> String {
    let mut out = format!("plan for `{}`\n", report.workflow);
    for step in &report.steps {
        out.push_str(&format!("\n{} [{}]\n", step.id, step.plugin));
        match &step.plan {
            StepPlan::Changes(changes) if changes.is_empty() => out.push_str("  no change\n"),
            StepPlan::Changes(changes) => {
                for c in changes {
                    out.push_str(&format!("  {} {}", c.kind, c.resource));
                    if !c.detail.is_empty() {
                        out.push_str(&format!(": {}", c.detail));
                    }
                    out.push('\n');
                }
            }
            StepPlan::Skipped(why) => out.push_str(&format!("  skipped: {why}\n")),
            StepPlan::Unknown(why) => out.push_str(&format!("  unknown: {why}\n")),
            StepPlan::Failed(why) => out.push_str(&format!("  error: {why}\n")),
        }
    }
    out
}

/// `orch runs list` output.
pub(super) fn runs_list(runs: &[RunRow]) -> String {
    let mut t = table(&[
        "run", "workflow", "trigger", "status", "started", "duration",
    ]);
    for r in runs {
        let took = elapsed(r.created_at, r.finished_at);
        t.add_row(vec![
            r.id.clone(),
            r.workflow.clone(),
            r.trigger.to_string(),
            r.status.to_string(),
            time(r.created_at),
            took,
        ]);
    }
    format!("{t}\n")
}

/// `orch runs show` output.
pub(super) fn run_detail(d: &RunDetail) -> String {
    let r = &d.run;
    let mut out = format!(
        "run {}\nworkflow {} ({})\ntrigger {}\nstatus {}\nstarted {}\ninputs {}\n",
        r.id,
        r.workflow,
        r.workflow_path,
        r.trigger,
        r.status,
        time(r.created_at),
        r.inputs
    );
    if let Some(e) = &r.error {
        out.push_str(&format!("error {e}\n"));
    }
    let workers = d.steps.iter().any(|s| s.worker.is_some());
    let mut header = vec!["step", "attempt", "status", "duration"];
    if workers {
        header.push("worker");
    }
    header.push("outputs / error");
    let mut t = table(&header);
    for s in &d.steps {
        let took = elapsed(s.started_at, s.finished_at);
        let detail = match (&s.error, &s.outputs) {
            (Some(e), _) => format!("{}: {e}", s.error_kind.as_deref().unwrap_or("error")),
            (None, Some(o)) => o.to_string(),
            _ => String::new(),
        };
        let mut row = vec![
            s.step.clone(),
            s.attempt.to_string(),
            s.status.to_string(),
            took,
        ];
        if workers {
            row.push(s.worker.clone().unwrap_or_default());
        }
        row.push(detail);
        t.add_row(row);
    }
    out.push_str(&format!("\n{t}\n"));
    for w in &d.waiting {
        out.push_str(&format!("waiting {}: {}\n", w.step, w.reason));
    }
    if !d.logs.is_empty() {
        out.push_str("\nlogs\n");
        if d.logs_before > 0 {
            out.push_str(&format!(
                "  ({} earlier lines: `orch runs show {} --logs-after -1` pages from the first)\n",
                d.logs_before, d.run.id
            ));
        }
        for l in &d.logs {
            out.push_str(&format!(
                "  {} {} #{} {}: {}\n",
                time(l.ts),
                l.step,
                l.attempt,
                l.level,
                l.message
            ));
        }
        if let (true, Some(last)) = (d.logs_after > 0, d.logs.last()) {
            out.push_str(&format!(
                "  ({} more lines: `orch runs show {} --logs-after {}`)\n",
                d.logs_after, d.run.id, last.seq
            ));
        }
    }
    if !d.used.is_empty() {
        out.push_str("\nused\n");
        for u in &d.used {
            out.push_str(&format!("  {} {}\n", u.step, u.grant));
        }
    }
    if !d.audit.is_empty() {
        out.push_str("\ndenied\n");
        for a in &d.audit {
            out.push_str(&format!(
                "  {} {} {}: {}\n",
                time(a.ts),
                a.step,
                a.action,
                a.reason
            ));
        }
    }
    out
}

/// A borderless table, as `orch token list` and `orch schedule` print them.
pub(super) fn plain_table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_header(header.to_vec());
    t
}

/// `orch token list` output.
pub(super) fn tokens(tokens: &[TokenRow]) -> String {
    let mut t = plain_table(&["id", "name", "scope", "created", "last used", "revoked"]);
    for token in tokens {
        t.add_row([
            token.id.clone(),
            token.name.clone(),
            token.scope.as_str().to_string(),
            time(token.created_at),
            token.last_used_at.map(time).unwrap_or_default(),
            token.revoked_at.map(time).unwrap_or_default(),
        ]);
    }
    format!("{t}\n")
}

/// `orch workers list` output.
pub(super) fn workers(workers: &[crate::store::WorkerRow], now: i64) -> String {
    let mut t = plain_table(&[
        "worker",
        "labels",
        "state",
        "heartbeat",
        "steps",
        "version",
        "started",
    ]);
    for w in workers {
        let state = w.state(now);
        let mut labels = w.labels.join(",");
        if !w.untagged {
            labels.push_str(" (tagged only)");
        }
        t.add_row([
            w.id.clone(),
            labels,
            state.to_string(),
            format!("{:.1}s ago", (now - w.heartbeat_at) as f64 / 1000.0),
            w.running.to_string(),
            w.version.clone(),
            time(w.started_at),
        ]);
    }
    format!("{t}\n")
}

/// `orch schedule explain` output: recent ticks, newest first.
pub(super) fn ticks(ticks: &[TickRow]) -> String {
    let mut t = plain_table(&["due (UTC)", "#", "outcome", "late", "run", "reason"]);
    for tick in ticks {
        t.add_row([
            time_ms(tick.fire_at),
            tick.schedule.to_string(),
            tick.outcome.to_string(),
            format!("{} ms", tick.recorded_at - tick.fire_at),
            tick.run_id
                .as_deref()
                .map(short_id)
                .unwrap_or_default()
                .to_string(),
            tick.reason.clone(),
        ]);
    }
    format!("{t}\n")
}

/// `orch plugin inspect` output: what the plugin says about itself, then what its imports let
/// it reach and what grants each.
pub(super) fn plugin_info(info: &PluginInfo, imports: &[String]) -> String {
    use crate::capability::reach::{self, Access};
    let schema = serde_json::from_str::<serde_json::Value>(&info.config_schema)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| info.config_schema.clone());
    let reached = reach::classify(imports);
    let width = reached.iter().map(|r| r.import.len()).max().unwrap_or(0);
    let mut rows = String::new();
    for r in &reached {
        let (how, detail) = match r.access {
            Access::Always(d) => ("always", d),
            Access::Granted(d) => ("granted by", d),
            Access::Denied(d) => ("denied", d),
        };
        rows.push_str(&format!(
            "    {:width$}  {:11}  {how}: {detail}\n",
            r.import, r.capability
        ));
    }
    format!(
        "{} {}\n  {}\n  can reach: {}\n  refused: {}\n  imports:\n{rows}  config schema:\n{}\n\n",
        info.name,
        info.version,
        info.description,
        reach::capabilities(&reached, false).join(", "),
        reach::capabilities(&reached, true).join(", "),
        schema
            .lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// `orch plugin inspect --json` output.
pub(super) fn plugin_json(info: &PluginInfo, imports: &[String]) -> serde_json::Value {
    use crate::capability::reach;
    let reached = reach::classify(imports);
    serde_json::json!({
        "name": info.name,
        "version": info.version,
        "description": info.description,
        "capabilities": reach::capabilities(&reached, false),
        "refused": reach::capabilities(&reached, true),
        "imports": reached,
        "config_schema": serde_json::from_str::<serde_json::Value>(&info.config_schema).unwrap_or_default(),
    })
}

/// A capability diff for people: what the new version may import that the old could not,
/// config fields, and the steps that would run it with their grants.
pub(super) fn plugin_diff(diff: &crate::resolve::lock::PluginDiff, color: bool) -> String {
    use crate::capability::reach;
    let paint = |code: &str, text: String| {
        if color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text
        }
    };
    let mut out = format!(
        "~ {} {} -> {}\n  digest {} -> {}\n",
        diff.source, diff.old_version, diff.new_version, diff.old_digest, diff.new_digest
    );
    for import in &diff.added {
        let reached = reach::classify(std::slice::from_ref(import));
        let how = match reached[0].access {
            reach::Access::Always(d) => format!("always: {d}"),
            reach::Access::Granted(d) => format!("granted by {d}"),
            reach::Access::Denied(d) => format!("denied: {d}"),
        };
        out.push_str(&paint("32", format!("  + {import}  ({how})\n")));
    }
    for import in &diff.removed {
        out.push_str(&paint("31", format!("  - {import}\n")));
    }
    for field in &diff.fields_added {
        out.push_str(&format!("  + config field `{field}`\n"));
    }
    for field in &diff.fields_removed {
        out.push_str(&format!("  - config field `{field}`\n"));
    }
    for (step, grants) in &diff.steps {
        out.push_str(&format!(
            "  step {step}: allow = [{}]\n",
            grants
                .iter()
                .map(|g| format!("{g:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if diff.escalates() {
        out.push_str(&paint(
            "1;33",
            "  escalation: new imports; accept with `--accept` after review\n".to_string(),
        ));
    }
    out
}
