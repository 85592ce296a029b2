//! The per-step [`StepSink`]: masks, tags and forwards plugin events to observers and, through
//! one writer task per run, to the store.

use super::events::{Event, Observer};
use crate::capability::{Denial, LogLevel, Masker, StepSink};
use crate::store::{AuditRow, NewLog, Store, now_ms};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// A record for the run's writer task.
pub(super) enum Record {
    Log(NewLog),
    Audit(AuditRow),
}

/// Writes records in arrival order, batching whatever is queued into one transaction.
pub(super) fn spawn_writer(
    store: Store,
    run_id: String,
) -> (mpsc::UnboundedSender<Record>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Record>();
    let handle = tokio::spawn(async move {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, 512).await > 0 {
            let mut logs = Vec::new();
            for record in batch.drain(..) {
                match record {
                    Record::Log(line) => logs.push(line),
                    Record::Audit(row) => {
                        if let Err(e) = store.audit(&run_id, &row).await {
                            tracing::error!("cannot record audit row: {e}");
                        }
                    }
                }
            }
            if !logs.is_empty()
                && let Err(e) = store.append_logs(&run_id, &logs).await
            {
                tracing::error!("cannot record {} log lines: {e}", logs.len());
            }
        }
    });
    (tx, handle)
}

/// Shared by every step of a run.
pub(super) struct RunChannel {
    pub masker: Arc<Masker>,
    pub observer: Arc<dyn Observer>,
    /// None in plan mode: nothing is stored.
    pub records: Option<mpsc::UnboundedSender<Record>>,
    pub seq: AtomicI64,
}

/// The sink of one step.
pub(super) struct StepEvents {
    pub run: Arc<RunChannel>,
    pub step: String,
    pub attempt: AtomicU32,
    pub denials: Mutex<Vec<Denial>>,
}

impl StepEvents {
    /// A sink for `step` of the run.
    pub(super) fn new(run: Arc<RunChannel>, step: &str) -> Self {
        Self {
            run,
            step: step.to_string(),
            attempt: AtomicU32::new(0),
            denials: Mutex::new(Vec::new()),
        }
    }

    /// Denials recorded since the last call (one attempt's worth).
    pub(super) fn take_denials(&self) -> Vec<Denial> {
        std::mem::take(&mut *self.denials.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl StepSink for StepEvents {
    fn log(&self, level: LogLevel, message: &str) {
        let message = self.run.masker.mask(message);
        let level = level.as_str();
        if let Some(records) = &self.run.records {
            let _ = records.send(Record::Log(NewLog {
                seq: self.run.seq.fetch_add(1, Ordering::Relaxed),
                step: self.step.clone(),
                attempt: self.attempt.load(Ordering::Relaxed) as i64,
                ts: now_ms(),
                level,
                message: message.clone(),
            }));
        }
        self.run.observer.event(&Event::StepLog {
            step: self.step.clone(),
            level,
            message,
        });
    }

    fn progress(&self, current: u64, total: Option<u64>, message: &str) {
        self.run.observer.event(&Event::StepProgress {
            step: self.step.clone(),
            current,
            total,
            message: self.run.masker.mask(message),
        });
    }

    fn denied(&self, denial: &Denial) {
        let reason = self.run.masker.mask(&denial.to_string());
        self.log(LogLevel::Error, &format!("denied: {reason}"));
        if let Some(records) = &self.run.records {
            let _ = records.send(Record::Audit(AuditRow {
                step: self.step.clone(),
                ts: now_ms(),
                action: denial.action.to_string(),
                target: self.run.masker.mask(&denial.target),
                reason,
            }));
        }
        self.denials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(denial.clone());
    }
}
