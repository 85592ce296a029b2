//! The typed vocabulary of the run store: run status, step (attempt) status, tick outcome and
//! trigger. Their text forms (`strum`/`serde`, snake_case) are written here once; the store,
//! the executor, the server and the CLI use the enums.

use serde::{Deserialize, Serialize};

/// `TryFrom<String>` through the strum parser, for `#[sqlx(try_from = "String")]` columns.
macro_rules! from_column {
    ($($ty:ty),*) => {$(
        impl TryFrom<String> for $ty {
            type Error = strum::ParseError;

            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }
    )*};
}

from_column!(RunStatus, StepStatus, TickOutcome, Trigger);

/// Where a run stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::Display,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum RunStatus {
    /// Recorded, waiting for a slot.
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Stopped by a server shutdown; resumed at the next start.
    Interrupted,
}

impl RunStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Will the run never change again?
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// The state of one step attempt, and of a step within a run.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum StepStatus {
    Running,
    /// This attempt failed with a retryable error; another follows.
    Retrying,
    Succeeded,
    Failed,
    /// Its own `if` was false.
    Skipped,
    /// A step it needs failed (or was itself upstream-failed); it never ran.
    UpstreamFailed,
    Cancelled,
    /// Stopped by a server shutdown; runs again at the next start.
    Interrupted,
}

impl StepStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Did the step end badly (for the run's outcome and for dependants)?
    pub fn is_failure(self) -> bool {
        matches!(self, StepStatus::Failed | StepStatus::UpstreamFailed)
    }
}

/// What a schedule tick did.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::Display,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TickOutcome {
    /// A run was queued to start now.
    Fired,
    /// The previous run was active (`overlap = "skip"`).
    Skipped,
    /// A run was queued behind the active one (`overlap = "queue"`, or a catch-up).
    Queued,
    /// Missed during downtime and not caught up.
    Missed,
    /// The schedule's inputs were invalid at fire time.
    Failed,
}

impl TickOutcome {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What started a run.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Trigger {
    Cli,
    Cron,
    Http,
    Webhook,
}

impl Trigger {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use strum::VariantArray;

    #[test]
    fn text_forms_round_trip_and_match_serde() {
        for s in RunStatus::VARIANTS {
            assert_eq!(RunStatus::from_str(s.as_str()).unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(StepStatus::UpstreamFailed.as_str(), "upstream_failed");
        assert_eq!(
            serde_json::to_value(StepStatus::UpstreamFailed).unwrap(),
            "upstream_failed"
        );
        for s in TickOutcome::VARIANTS {
            assert_eq!(TickOutcome::from_str(s.as_str()).unwrap(), *s);
        }
        assert_eq!(Trigger::Webhook.to_string(), "webhook");
    }

    #[test]
    fn only_ended_runs_are_final() {
        assert!(RunStatus::Cancelled.is_final());
        assert!(!RunStatus::Interrupted.is_final());
        assert!(!RunStatus::Queued.is_final());
    }
}
