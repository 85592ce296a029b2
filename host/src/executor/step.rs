//! One step of a run: its scope, the preparation shared with the dry run (`if`, render, schema
//! check, serialise), then attempts with retries, each committed before the next action.

use super::outputs::{collect_outputs, recordable_outputs, store_secret_outputs};
use super::sink::StepEvents;
use super::{Event, ExecError, RunShared};
use crate::capability::{Denial, Granter, LogLevel, Masker, StepSink};
use crate::resolve::ResolvedPlugin;
use crate::runtime::{Fault, Invocation, StepContext};
use crate::store::{StepEnd, StepStatus, StepWrite};
use crate::workflow::expr::{Rendered, Scope};
use crate::workflow::{Step, StepsRead};
use serde_json::{Map, Value as Json, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A step ready for its plugin, or decided without it.
pub(super) enum Prepared {
    /// Its `if` is false.
    Skipped,
    /// The rendered config, checked against the plugin's schema, as JSON text.
    Config(String),
}

/// Evaluate `if`, render `with`, check it against the plugin's schema and serialise it. The
/// error is the reason the step fails, masked. Run and dry run both start here.
pub(super) fn prepare_step(
    step: &Step,
    plugin: &ResolvedPlugin,
    scope: &Scope,
    masker: &Masker,
) -> Result<Prepared, String> {
    if let Some(condition) = &step.condition {
        match condition.eval_bool(scope) {
            Ok(true) => {}
            Ok(false) => return Ok(Prepared::Skipped),
            Err(e) => return Err(masker.mask(&format!("`if` failed: {e}"))),
        }
    }
    let rendered = step
        .with
        .render_shared(scope)
        .map_err(|e| masker.mask(&format!("cannot render `with`: {e}")))?;
    let check = |config: &Rendered<'_>| {
        plugin.check_config(config).map_err(|problems| {
            masker.mask(&format!(
                "`with` does not match plugin `{}` after rendering: {problems}",
                plugin.info.name
            ))
        })
    };
    if !rendered.holds_at_least(LARGE_CONFIG) {
        check(&rendered)?;
        return serialise(&rendered).map(Prepared::Config);
    }
    // A large config (100k rows read from another step): the check (~10 ms for 100k rows)
    // runs on a second thread while this one writes the text (~11 ms); both read the
    // config where it lies.
    let (verdict, text) = std::thread::scope(|threads| {
        let beside = std::thread::Builder::new().spawn_scoped(threads, || check(&rendered));
        let text = serialise(&rendered);
        let verdict = match beside {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            // No thread to be had: one after the other.
            Err(_) => check(&rendered),
        };
        (verdict, text)
    });
    // What the render owns (a list CEL computed) can be as large: freeing 100k rows takes
    // ~25 ms.
    drop_off_path(rendered.into_owned_parts());
    verdict?;
    text.map(Prepared::Config)
}

/// Free `value` on a blocking thread when there is a runtime to run one; here otherwise.
fn drop_off_path<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(value))),
        Err(_) => drop(value),
    }
}

/// The config as JSON text, straight into a buffer (`Value`'s `Display` goes through a
/// formatter, ~3x slower).
fn serialise<T: serde::Serialize + ?Sized>(config: &T) -> Result<String, String> {
    serde_json::to_string(config).map_err(|e| format!("cannot serialise `with`: {e}"))
}

/// A rendered `with` holding this many JSON values or more is checked beside its serialising.
const LARGE_CONFIG: usize = 50_000;

/// The expression scope for a step: the run's values plus the finished steps it reads, shared.
pub(super) fn scope_for(shared: &RunShared, step: &Step) -> Scope {
    let mut scope = shared.base.clone();
    let read = step.steps_read();
    if read == StepsRead::These(vec![]) {
        return scope;
    }
    let finished = shared.finished.read().unwrap_or_else(|e| e.into_inner());
    let dag = shared.workflow.dag();
    scope.steps = match read {
        // `steps` as a whole or by index: still only the steps this one needs.
        StepsRead::All => finished
            .iter()
            .filter(|(id, _)| dag.is_ancestor(id, &step.id))
            .map(|(id, v)| (id.clone(), v.clone()))
            .collect(),
        StepsRead::These(ids) => ids
            .into_iter()
            .filter_map(|id| finished.get(id).map(|v| (id.to_string(), v.clone())))
            .collect(),
    };
    scope
}

/// How one attempt ended.
pub(super) enum AttemptEnd {
    /// The plugin returned: `succeeded`, or `failed` because its outputs could not be kept.
    Returned {
        status: StepStatus,
        /// What later steps read, what is shown, and what is stored.
        real: Json,
        masked: Json,
        stored: Json,
        /// `stored` is `real`: a resumed run or another worker can reuse it.
        resumable: bool,
        error: Option<String>,
        error_kind: Option<&'static str>,
    },
    /// The plugin failed; `retry`: the policy allows another attempt.
    Fault {
        kind: &'static str,
        message: String,
        retry: bool,
    },
}

impl AttemptEnd {
    /// The attempt's record, for an end that is final or a retry.
    pub(super) fn record(&self) -> StepEnd<'_> {
        match self {
            AttemptEnd::Returned {
                status,
                stored,
                resumable,
                error,
                error_kind,
                ..
            } => StepEnd {
                status: *status,
                resumable: *resumable,
                outputs: Some(stored),
                error: error.as_deref(),
                error_kind: *error_kind,
            },
            AttemptEnd::Fault {
                kind,
                message,
                retry,
            } => StepEnd {
                status: if *retry {
                    StepStatus::Retrying
                } else {
                    StepStatus::Failed
                },
                resumable: false,
                outputs: None,
                error: Some(message),
                error_kind: Some(kind),
            },
        }
    }
}

/// What an attempt of a step runs with.
pub(super) struct AttemptOf<'a> {
    pub step: &'a Step,
    pub plugin: &'a ResolvedPlugin,
    pub config: &'a str,
    pub events: &'a Arc<StepEvents>,
    pub granter: &'a Arc<Granter>,
    pub attempt: u32,
}

/// Run one attempt: call the plugin, collect and mask its outputs (keeping the ones
/// `store_secret` names), or explain its fault. Returns how it ended and the grants it used.
pub(super) async fn run_attempt(
    shared: &RunShared,
    a: &AttemptOf<'_>,
) -> (AttemptEnd, Vec<String>) {
    let (step, id, masker, events) = (a.step, a.step.id.as_str(), &shared.channel.masker, a.events);
    events.attempt.store(a.attempt, Ordering::Relaxed);
    shared.channel.observer.event(&Event::StepStarted {
        step: id.to_string(),
        attempt: a.attempt,
    });
    let invocation = Invocation {
        ctx: StepContext {
            run_id: shared.run_id.clone(),
            workflow: shared.workflow.name.clone(),
            step_id: id.to_string(),
            attempt: a.attempt,
            trigger: shared.trigger.to_string(),
        },
        config: a.config,
        limits: step.limits,
        timeout: step.timeout,
        granter: a.granter.clone(),
        sink: events.clone(),
        connections: shared.connections.clone(),
    };
    let result = shared.runtime.run(&a.plugin.plugin, invocation).await;
    let denials = events.take_denials();
    let used = a.granter.take_used();
    let mut outputs = match result {
        Ok(outputs) => outputs,
        Err(fault) => {
            let (kind, message) = explain(&fault, &denials);
            let message = mask_error(events, masker, kind, &message);
            let retry = fault.is_retryable() && denials.is_empty() && a.attempt <= step.retry.max;
            return (
                AttemptEnd::Fault {
                    kind,
                    message,
                    retry,
                },
                used,
            );
        }
    };
    let secret_names: Vec<String> = outputs
        .iter()
        .filter(|o| o.secret)
        .map(|o| o.name.clone())
        .collect();
    // What `store_secret` names is a secret, whether the plugin said so or not.
    for o in outputs.iter_mut() {
        o.secret |= step
            .store_secrets
            .iter()
            .any(|keep| keep.output.as_deref() == Some(o.name.as_str()));
    }
    let (collected, error) = match collect_outputs(masker, id, outputs) {
        Ok((real, masked)) => {
            let kept =
                store_secret_outputs(shared.secret_store.as_ref(), step, &real, &secret_names);
            let error = match kept {
                Ok(lines) => {
                    for line in lines {
                        events.log(LogLevel::Info, &line);
                    }
                    None
                }
                Err(error) => Some(("store-secret", masker.mask(&error))),
            };
            ((real, masked), error)
        }
        Err(refused) => {
            let nothing = (Json::Object(Map::new()), Json::Object(Map::new()));
            (nothing, Some(("secret-output", masker.mask(&refused))))
        }
    };
    let (real, masked) = collected;
    let (error_kind, error) = error.unzip();
    let stored = recordable_outputs(&masked);
    let succeeded = error.is_none();
    let end = AttemptEnd::Returned {
        status: if succeeded {
            StepStatus::Succeeded
        } else {
            StepStatus::Failed
        },
        // Nothing masked or cut: a resumed run can reuse these outputs as they are.
        resumable: succeeded && stored == real,
        real: if succeeded { real } else { json!({}) },
        masked,
        stored,
        error,
        error_kind,
    };
    (end, used)
}

/// Say an attempt failed and when the next one starts.
pub(super) fn announce_retry(
    shared: &RunShared,
    events: &StepEvents,
    id: &str,
    attempt: u32,
    message: &str,
    delay: std::time::Duration,
) {
    events.log(
        LogLevel::Warn,
        &format!(
            "attempt {attempt} failed: {message}; retrying in {}",
            humantime::format_duration(delay)
        ),
    );
    shared.channel.observer.event(&Event::StepRetrying {
        step: id.into(),
        attempt,
        delay,
        error: message.to_string(),
    });
}

/// A step whose first attempt the walk recorded as started: the attempts it ran and how the
/// last one ended, not yet recorded (the walk records it with the other changes ready then).
pub(super) struct Ran {
    pub node: crate::dag::Node,
    pub attempt: u32,
    pub end: AttemptEnd,
    pub used: Vec<String>,
    pub duration: std::time::Duration,
}

/// Run a prepared step's attempts until one is final; its duration counts from `started`, when
/// its preparation began. A retried attempt's end and the next one's start are recorded here,
/// each before what follows it.
pub(super) async fn run_prepared(
    shared: &RunShared,
    node: crate::dag::Node,
    config: String,
    mut attempt: u32,
    started: Instant,
) -> Result<Ran, ExecError> {
    let (step, resolved) = shared.step(node)?;
    let id = step.id.as_str();
    let events = Arc::new(StepEvents::new(shared.channel.clone(), id));
    let granter = Arc::new(Granter::new(id, step.allow.clone()));
    let plugin = step.plugin.to_string();
    loop {
        let of = AttemptOf {
            step,
            plugin: resolved,
            config: &config,
            events: &events,
            granter: &granter,
            attempt,
        };
        let (end, used) = run_attempt(shared, &of).await;
        let AttemptEnd::Fault {
            message,
            retry: true,
            ..
        } = &end
        else {
            return Ok(Ran {
                node,
                attempt,
                end,
                used,
                duration: started.elapsed(),
            });
        };
        let retried = StepWrite::End {
            step: id,
            attempt,
            plugin: &plugin,
            end: end.record(),
            used: &used,
        };
        shared
            .store
            .record_steps(&shared.run_id, &[retried])
            .await?;
        let delay = step.retry.delay_before(attempt + 1);
        announce_retry(shared, &events, id, attempt, message, delay);
        tokio::time::sleep(delay).await;
        attempt += 1;
        let next = StepWrite::Start {
            step: id,
            attempt,
            plugin: &plugin,
        };
        shared.store.record_steps(&shared.run_id, &[next]).await?;
    }
}

/// A step's error masked: the host's own words about it (a denial) with what the step could
/// see, the plugin's with every secret.
pub(super) fn mask_error(
    events: &StepEvents,
    masker: &Masker,
    kind: &str,
    message: &str,
) -> String {
    if kind == "denied" {
        events.mask(message)
    } else {
        masker.mask(message)
    }
}

/// The kind and message of a failed call: a denial explains it better than what the guest
/// made of it (unless the step was stopped from outside).
pub(super) fn explain(fault: &Fault, denials: &[Denial]) -> (&'static str, String) {
    match denials.first() {
        Some(denial) if !matches!(fault, Fault::Timeout { .. } | Fault::OutOfMemory(_)) => {
            ("denied", format!("denied: {denial}"))
        }
        _ => (fault.kind(), fault.to_string()),
    }
}
