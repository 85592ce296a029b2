//! A refused capability: what the step reports and what the run's audit records.

use super::sandbox::{Orch, step};
use serde_json::Value;

/// The audit rows of a finished run.
pub(crate) fn audit(orch: &Orch, report: &Value) -> Value {
    let id = report["run_id"].as_str().expect("a run id in the report");
    orch.run_detail(id)["audit"].clone()
}

/// A refusal as a test expects it.
pub(crate) struct Denial<'a> {
    /// The step that was refused.
    pub step: &'a str,
    /// Its exact error.
    pub error: &'a str,
    /// The audit row's `action` (`connection`, `http`, `policy`).
    pub action: &'a str,
    /// The audit row's `target`.
    pub target: &'a str,
}

/// The step failed with exactly `denied.error`, and the run's audit holds that one refusal.
pub(crate) fn assert_denied_and_audited(orch: &Orch, report: &Value, denied: &Denial) {
    let failed = step(report, denied.step);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"], denied.error);
    let audit = audit(orch, report);
    let rows = audit.as_array().expect("audit rows");
    assert_eq!(rows.len(), 1, "{audit}");
    assert_eq!(rows[0]["step"], denied.step, "{audit}");
    assert_eq!(rows[0]["action"], denied.action, "{audit}");
    assert_eq!(rows[0]["target"], denied.target, "{audit}");
}
