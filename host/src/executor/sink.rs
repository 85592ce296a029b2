//! The per-step [`StepSink`]: masks, tags and forwards plugin events to observers and, through
//! one writer task per run, to the store.

use super::events::{Event, Observer};
use crate::capability::{Denial, LogLevel, Masker, StepSink};
use crate::resolve::ResolvedWorkflow;
use crate::store::{AuditRow, NewLog, Store, now_ms};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// A record for the run's writer task.
pub(super) enum Record {
    Log(NewLog),
    Audit(AuditRow),
    /// Answered once everything queued before it is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Records queued for the run's writer; past this (the store fell behind) log lines are
/// dropped and counted, so a run's memory does not grow with what its steps write.
const WRITER_QUEUE: usize = 65_536;

/// Writes records in arrival order, batching whatever is queued into one transaction.
pub(super) fn spawn_writer(
    store: Store,
    run_id: String,
) -> (mpsc::Sender<Record>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Record>(WRITER_QUEUE);
    let handle = tokio::spawn(async move {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, 512).await > 0 {
            let mut logs = Vec::new();
            let mut flushed = Vec::new();
            for record in batch.drain(..) {
                match record {
                    Record::Log(line) => logs.push(line),
                    Record::Audit(row) => {
                        if let Err(e) = store.audit(&run_id, &row).await {
                            tracing::error!("cannot record audit row: {e}");
                        }
                    }
                    Record::Flush(done) => flushed.push(done),
                }
            }
            if !logs.is_empty()
                && let Err(e) = store.append_logs(&run_id, &logs).await
            {
                tracing::error!("cannot record {} log lines: {e}", logs.len());
            }
            for done in flushed {
                let _ = done.send(());
            }
        }
    });
    (tx, handle)
}

/// Shared by every step of a run.
pub(super) struct RunChannel {
    pub masker: Arc<Masker>,
    /// The run's DAG: what a step writes is masked with the secrets it could have seen (the
    /// run's own, and the outputs of the steps it needs); `None`: with every secret.
    pub dag: Option<Arc<ResolvedWorkflow>>,
    pub observer: Arc<dyn Observer>,
    /// None in plan mode: nothing is stored.
    pub records: Option<mpsc::Sender<Record>>,
    pub seq: AtomicI64,
}

/// Log lines one step may write (all attempts together); then one "log truncated" line and
/// nothing more, so a plugin cannot flood the store, the terminal or the API.
const MAX_STEP_LOG_LINES: u64 = 10_000;
/// Log bytes one step may write (each line is already cut at 16 KiB).
const MAX_STEP_LOG_BYTES: u64 = 8 << 20;
/// Denials audited per step; more are counted in the log's truncation line, not recorded.
const MAX_STEP_DENIALS: usize = 100;

/// The sink of one step.
pub(super) struct StepEvents {
    pub run: Arc<RunChannel>,
    pub step: String,
    pub attempt: AtomicU32,
    pub denials: Mutex<Vec<Denial>>,
    /// Lines and bytes logged so far, against the step's budget.
    logged: (AtomicU64, AtomicU64),
    /// The "log truncated" line was written.
    truncated: AtomicBool,
    audited: AtomicUsize,
    /// Lines the writer's full queue refused since the last one it took.
    dropped: AtomicU64,
    /// For a claimed attempt: its lines, fenced by its lease and numbered by the store;
    /// `None`: numbered from the run's counter here and written unfenced.
    claimed: Option<ClaimedLog>,
}

/// The log of a claimed attempt: held here and written with the attempt's end (in the
/// transaction its lease fences), or forwarded to the run's writer while the step runs long.
struct ClaimedLog {
    token: i64,
    held: Mutex<Vec<NewLog>>,
    /// Some lines went to the run's writer: flush it before the end gives the lease up.
    forwarded: AtomicBool,
}

impl StepEvents {
    /// A sink for `step` of the run.
    pub(super) fn new(run: Arc<RunChannel>, step: &str) -> Self {
        Self {
            run,
            step: step.to_string(),
            attempt: AtomicU32::new(0),
            denials: Mutex::new(Vec::new()),
            logged: (AtomicU64::new(0), AtomicU64::new(0)),
            truncated: AtomicBool::new(false),
            audited: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            claimed: None,
        }
    }

    /// A sink for one claimed attempt: lines fenced by `token` (and numbered when written).
    pub(super) fn claimed(run: Arc<RunChannel>, step: &str, token: i64) -> Self {
        Self {
            claimed: Some(ClaimedLog {
                token,
                held: Mutex::new(Vec::new()),
                forwarded: AtomicBool::new(false),
            }),
            ..Self::new(run, step)
        }
    }

    /// `text` masked with the secrets this step could have seen.
    pub(super) fn mask(&self, text: &str) -> String {
        match &self.run.dag {
            Some(workflow) => self.run.masker.mask_seen_by(text, |origin| {
                origin == self.step || workflow.dag().is_ancestor(origin, &self.step)
            }),
            None => self.run.masker.mask(text),
        }
    }

    /// A log line of this step for the writer.
    fn record(&self, level: &'static str, message: String) -> Record {
        let (seq, lease) = match &self.claimed {
            Some(c) => (0, Some(c.token)),
            None => (self.run.seq.fetch_add(1, Ordering::Relaxed), None),
        };
        Record::Log(NewLog {
            seq,
            lease,
            step: self.step.clone(),
            attempt: self.attempt.load(Ordering::Relaxed) as i64,
            ts: now_ms(),
            level,
            message,
        })
    }

    /// Take one line of `bytes` from the step's log budget: is it within?
    fn within_budget(&self, bytes: usize) -> bool {
        let lines = self.logged.0.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.logged.1.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
        lines <= MAX_STEP_LOG_LINES && total <= MAX_STEP_LOG_BYTES
    }

    fn write(&self, level: &'static str, message: String) {
        if let Some(claimed) = &self.claimed {
            if let Record::Log(line) = self.record(level, message.clone()) {
                claimed
                    .held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(line);
            }
        } else if let Some(records) = &self.run.records {
            // What a full queue refused is said before the next line that gets in.
            let dropped = self.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                let notice = format!("{dropped} log lines dropped: the run store fell behind");
                if records.try_send(self.record("warn", notice)).is_err() {
                    self.dropped.fetch_add(dropped, Ordering::Relaxed);
                }
            }
            if records
                .try_send(self.record(level, message.clone()))
                .is_err()
            {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.run.observer.event(&Event::StepLog {
            step: self.step.clone(),
            level,
            message,
        });
    }

    /// A claimed attempt's held lines, for the transaction that records its end.
    pub(super) fn take_held(&self) -> Vec<NewLog> {
        match &self.claimed {
            Some(c) => std::mem::take(&mut *c.held.lock().unwrap_or_else(|e| e.into_inner())),
            None => Vec::new(),
        }
    }

    /// Did a claimed attempt send lines to the run's writer?
    pub(super) fn forwarded(&self) -> bool {
        self.claimed
            .as_ref()
            .is_some_and(|c| c.forwarded.load(Ordering::Relaxed))
    }

    /// Send a claimed attempt's held lines to the run's writer (a long step's log shows
    /// live).
    pub(super) fn forward_held(&self) {
        let Some(c) = &self.claimed else {
            return;
        };
        let lines = self.take_held();
        if !lines.is_empty()
            && let Some(records) = &self.run.records
        {
            c.forwarded.store(true, Ordering::Relaxed);
            for line in lines {
                if records.try_send(Record::Log(line)).is_err() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Denials recorded since the last call (one attempt's worth).
    pub(super) fn take_denials(&self) -> Vec<Denial> {
        std::mem::take(&mut *self.denials.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl StepEvents {
    /// Append an already masked line, within the step's budget.
    fn append(&self, level: LogLevel, masked: String) {
        if self.within_budget(masked.len()) {
            self.write(level.as_str(), masked);
        } else if !self.truncated.swap(true, Ordering::Relaxed) {
            let notice = format!(
                "log truncated: a step may write {MAX_STEP_LOG_LINES} lines or {} MiB; the rest is dropped",
                MAX_STEP_LOG_BYTES >> 20
            );
            self.write(LogLevel::Warn.as_str(), notice);
        }
    }
}

/// What a plugin writes is masked with every secret of the run (it may have read one by a
/// side way); what the host writes about the step, with the secrets the step could see.
impl StepSink for StepEvents {
    fn log(&self, level: LogLevel, message: &str) {
        self.append(level, self.run.masker.mask(message));
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
        let reason = self.mask(&denial.to_string());
        self.append(LogLevel::Error, format!("denied: {reason}"));
        if self.audited.fetch_add(1, Ordering::Relaxed) >= MAX_STEP_DENIALS {
            return;
        }
        if let Some(records) = &self.run.records {
            let row = Record::Audit(AuditRow {
                step: self.step.clone(),
                ts: now_ms(),
                action: denial.action.to_string(),
                target: self.mask(&denial.target),
                reason,
            });
            // Never dropped (at most MAX_STEP_DENIALS per step): past a full queue, it waits.
            if let Err(mpsc::error::TrySendError::Full(row)) = records.try_send(row)
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                let records = records.clone();
                runtime.spawn(async move { records.send(row).await });
            }
        }
        self.denials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(denial.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the log events it sees.
    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl Observer for Lines {
        fn event(&self, event: &Event) {
            if let Event::StepLog { message, .. } = event {
                self.0.lock().unwrap().push(message.clone());
            }
        }
    }

    /// A step of a run with no DAG whose writer queue holds `capacity` records: the step, what
    /// its observer saw, and the writer's end of the queue.
    fn step_with_queue(
        step: &str,
        capacity: usize,
    ) -> (StepEvents, Arc<Lines>, mpsc::Receiver<Record>) {
        let lines = Arc::new(Lines::default());
        let (tx, rx) = mpsc::channel(capacity);
        let run = Arc::new(RunChannel {
            masker: Arc::new(Masker::default()),
            dag: None,
            observer: lines.clone(),
            records: Some(tx),
            seq: AtomicI64::new(0),
        });
        (StepEvents::new(run, step), lines, rx)
    }

    #[tokio::test]
    async fn a_flooding_step_gets_its_budget_then_one_truncation_line_and_capped_audit_rows() {
        let (step, lines, mut rx) = step_with_queue("flood", WRITER_QUEUE);
        for i in 0..MAX_STEP_LOG_LINES + 500 {
            step.log(LogLevel::Info, &format!("line {i}"));
        }
        let seen = lines.0.lock().unwrap().clone();
        assert_eq!(seen.len() as u64, MAX_STEP_LOG_LINES + 1);
        assert!(
            seen.last().unwrap().starts_with("log truncated"),
            "{:?}",
            seen.last()
        );
        let denial = Denial {
            step: "flood".into(),
            action: "connection",
            target: "db".into(),
            grant: "db".into(),
        };
        for _ in 0..MAX_STEP_DENIALS + 50 {
            step.denied(&denial);
        }
        drop(step);
        let mut audited = 0;
        let mut logged = 0;
        while let Ok(record) = rx.try_recv() {
            match record {
                Record::Audit(_) => audited += 1,
                Record::Log(_) => logged += 1,
                Record::Flush(_) => {}
            }
        }
        assert_eq!(audited, MAX_STEP_DENIALS);
        assert_eq!(
            logged as u64,
            MAX_STEP_LOG_LINES + 1,
            "denial lines count against the budget"
        );
    }

    /// R3: when the writer's queue is full, lines are dropped and counted, and the count is
    /// written before the next line that fits; the terminal still sees every line.
    #[tokio::test]
    async fn a_full_writer_queue_drops_lines_and_says_how_many() {
        let (step, lines, mut rx) = step_with_queue("fast", 8);
        for i in 0..20 {
            step.log(LogLevel::Info, &format!("line {i}"));
        }
        assert_eq!(lines.0.lock().unwrap().len(), 20, "the observer sees all");
        let mut stored = Vec::new();
        while let Ok(Record::Log(line)) = rx.try_recv() {
            stored.push(line.message);
        }
        assert_eq!(stored.len(), 8);
        step.log(LogLevel::Info, "after");
        let mut next = Vec::new();
        while let Ok(Record::Log(line)) = rx.try_recv() {
            next.push(line.message);
        }
        assert_eq!(
            next,
            ["12 log lines dropped: the run store fell behind", "after"]
        );
    }
}
