//! Waiting for the conditions compose users rely on (started, healthy, completed
//! successfully), and the errors that show a failed container's health checks and logs.

use crate::compose::Condition;
use crate::project::Service;
use orch_sdk::StepError;
use orch_sdk::docker::{ContainerState, Engine};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(500);
const LOG_TAIL: u32 = 50;

/// The health status, `None` without a healthcheck (whether the host says so with `none` or
/// with an empty status).
pub fn health(state: &ContainerState) -> Option<&str> {
    state
        .health
        .as_deref()
        .filter(|h| !h.is_empty() && *h != "none")
}

pub fn is_exited(state: &ContainerState) -> bool {
    matches!(state.status.as_str(), "exited" | "dead")
}

/// Waits on dependency conditions, remembering which are already met.
pub struct Waiter<'a> {
    engine: &'a Engine,
    timeout: Duration,
    met: BTreeSet<(String, &'static str)>,
}

impl<'a> Waiter<'a> {
    pub fn new(engine: &'a Engine, timeout: Duration) -> Self {
        Waiter {
            engine,
            timeout,
            met: BTreeSet::new(),
        }
    }

    pub fn wait(
        &mut self,
        dep: &Service,
        id: &str,
        condition: Condition,
        dependant: &str,
    ) -> Result<(), StepError> {
        let key = (dep.name.clone(), condition.as_str());
        if self.met.contains(&key) {
            return Ok(());
        }
        let what = match condition {
            Condition::Started => "started",
            Condition::Healthy => "healthy",
            Condition::CompletedSuccessfully => "completed successfully",
        };
        orch_sdk::log::info(format!(
            "service {dependant}: waiting for {} to be {what}",
            dep.name
        ));
        match condition {
            Condition::Started => self.started(dep, id)?,
            Condition::Healthy => drop(self.healthy(dep, id)?),
            Condition::CompletedSuccessfully => self.completed(dep, id)?,
        }
        self.met.insert(key);
        Ok(())
    }

    fn started(&self, svc: &Service, id: &str) -> Result<(), StepError> {
        let state = self.engine.inspect_container(id)?;
        if state.running || state.status == "restarting" || (svc.one_shot && is_exited(&state)) {
            Ok(())
        } else {
            Err(self.exited(svc, &state, "is not running: "))
        }
    }

    /// Poll until healthy; fail at once on "unhealthy" or exit, or at the timeout.
    pub fn healthy(&self, svc: &Service, id: &str) -> Result<ContainerState, StepError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let state = self.engine.inspect_container(id)?;
            match health(&state) {
                Some("healthy") => return Ok(state),
                Some("unhealthy") => {
                    return Err(StepError::Failed(format!(
                        "service `{}` is unhealthy{}",
                        svc.name,
                        health_log(&state)
                    )));
                }
                None => {
                    return Err(StepError::Failed(format!(
                        "service `{}` has no healthcheck, so it can never be healthy: add one or depend on it with `service_started`",
                        svc.name
                    )));
                }
                Some(_) => {}
            }
            if !state.running && is_exited(&state) {
                return Err(self.exited(svc, &state, "stopped before it was healthy: "));
            }
            if Instant::now() >= deadline {
                return Err(StepError::Failed(format!(
                    "service `{}` is not healthy after {}s (state {}, health {}){}",
                    svc.name,
                    self.timeout.as_secs(),
                    state.status,
                    health(&state).unwrap_or("none"),
                    health_log(&state)
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Poll until the container exits; its exit code must be 0.
    pub fn completed(&self, svc: &Service, id: &str) -> Result<(), StepError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let state = self.engine.inspect_container(id)?;
            if !state.running && is_exited(&state) {
                return if state.exit_code == 0 {
                    Ok(())
                } else {
                    Err(self.exited(svc, &state, ""))
                };
            }
            if Instant::now() >= deadline {
                let logs = self.engine.logs(id, LOG_TAIL).unwrap_or_default();
                return Err(StepError::Failed(format!(
                    "service `{}` has not exited after {}s (state {}){}",
                    svc.name,
                    self.timeout.as_secs(),
                    state.status,
                    log_section(&logs)
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// "service `x` exited with code N" and its last log lines.
    pub fn exited(&self, svc: &Service, state: &ContainerState, how: &str) -> StepError {
        let logs = self.engine.logs(&state.id, LOG_TAIL).unwrap_or_default();
        let status = if is_exited(state) {
            format!("exited with code {}", state.exit_code)
        } else {
            format!("is {}", state.status)
        };
        StepError::Failed(format!(
            "service `{}` {how}{status}{}",
            svc.name,
            log_section(&logs)
        ))
    }
}

fn log_section(logs: &str) -> String {
    let logs = logs.trim_end();
    if logs.trim().is_empty() {
        String::new()
    } else {
        format!("\nlast {LOG_TAIL} log lines:\n{logs}")
    }
}

fn health_log(state: &ContainerState) -> String {
    let lines: Vec<&str> = state
        .health_log
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("\nlast health checks:\n  {}", lines.join("\n  "))
    }
}
