//! The typed vocabulary of the run store: run status, step (attempt) status, tick outcome and
//! trigger. Their text forms (snake_case, through `strum` and `serde` alike) are written here
//! once; the store, the executor, the server and the CLI use the enums.

use serde::{Deserialize, Serialize};

/// An enum of stored words: its text form (`as_str`, `Display`, `FromStr`, serde), and
/// `TryFrom<String>` for `#[sqlx(try_from = "String")]` columns.
macro_rules! vocabulary {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident,)* }) => {
        $(#[$meta])*
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
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// The word stored and shown.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }

        impl TryFrom<String> for $name {
            type Error = strum::ParseError;

            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }
    };
}

vocabulary! {
    /// Where a run stands.
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
}

impl RunStatus {
    /// Will the run never change again?
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

vocabulary! {
    /// The state of one step attempt, and of a step within a run.
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
}

impl StepStatus {
    /// Did the step end badly (for the run's outcome and for dependants)?
    pub fn is_failure(self) -> bool {
        matches!(self, StepStatus::Failed | StepStatus::UpstreamFailed)
    }
}

vocabulary! {
    /// What a schedule tick did.
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
}

vocabulary! {
    /// What started a run.
    pub enum Trigger {
        Cli,
        Cron,
        Http,
        Webhook,
        /// The web page's Run button (or a re-run from it).
        Web,
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
