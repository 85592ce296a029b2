//! `/metrics` in Prometheus text format: runs by status (from the store at scrape time), step
//! durations, queue depth, schedule ticks and lateness (observed since the server started).

use crate::executor::{Event, Observer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    workflow: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// The server's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    runs: Family<StatusLabel, Gauge>,
    step_seconds: Family<StepLabel, Histogram>,
    queue_depth: Gauge,
    ticks: Family<OutcomeLabel, Counter>,
    lateness: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let runs = Family::<StatusLabel, Gauge>::default();
        let step_seconds = Family::<StepLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 4.0, 10))
        });
        let queue_depth = Gauge::default();
        let ticks = Family::<OutcomeLabel, Counter>::default();
        let lateness = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register("orch_runs", "Runs in the store by status", runs.clone());
        registry.register(
            "orch_step_duration_seconds",
            "Duration of finished steps",
            step_seconds.clone(),
        );
        registry.register(
            "orch_queue_depth",
            "Runs queued and not started",
            queue_depth.clone(),
        );
        registry.register(
            "orch_schedule_ticks",
            "Schedule ticks by outcome",
            ticks.clone(),
        );
        registry.register(
            "orch_schedule_lateness_seconds",
            "How late a schedule tick was handled after its fire time",
            lateness.clone(),
        );
        Self {
            registry,
            runs,
            step_seconds,
            queue_depth,
            ticks,
            lateness,
        }
    }
}

impl Metrics {
    /// Set the run counts read from the store just before encoding; a status no run has any
    /// more is dropped, not left at its last count.
    pub(crate) fn set_runs(&self, counts: &[(crate::store::RunStatus, i64)]) {
        self.runs.clear();
        for (status, n) in counts {
            self.runs
                .get_or_create(&StatusLabel {
                    status: status.to_string(),
                })
                .set(*n);
        }
    }

    /// The queue depth now.
    pub(crate) fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.set(depth as i64);
    }

    /// One schedule tick handled `late_secs` after it was due.
    pub(crate) fn tick(&self, outcome: &str, late_secs: Option<f64>) {
        self.ticks
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
        if let Some(late) = late_secs {
            self.lateness.observe(late.max(0.0));
        }
    }

    /// The text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// An observer recording step durations of runs of `workflow`.
    pub(crate) fn observer(self: &std::sync::Arc<Self>, workflow: &str) -> StepTimer {
        StepTimer {
            metrics: self.clone(),
            workflow: workflow.to_string(),
        }
    }
}

/// Records step durations from executor events.
pub(crate) struct StepTimer {
    metrics: std::sync::Arc<Metrics>,
    workflow: String,
}

impl Observer for StepTimer {
    fn event(&self, event: &Event) {
        if let Event::StepFinished {
            status, duration, ..
        } = event
        {
            self.metrics
                .step_seconds
                .get_or_create(&StepLabel {
                    workflow: self.workflow.clone(),
                    status: status.as_str().into(),
                })
                .observe(duration.as_secs_f64());
        }
    }
}
