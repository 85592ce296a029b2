//! Live run output: spinners per running step on a terminal, plain lines otherwise, JSON lines
//! with `--json`. Every text arriving here is already masked by the executor.

use crate::executor::{Event, Observer};
use crate::store::StepStatus;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Human output on stderr.
pub(super) struct TerminalObserver {
    bars: Option<(MultiProgress, Mutex<HashMap<String, ProgressBar>>)>,
}

impl TerminalObserver {
    /// `live`: draw spinners (stderr is a terminal).
    pub(super) fn new(live: bool) -> Self {
        let bars = live.then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                Mutex::new(HashMap::new()),
            )
        });
        Self { bars }
    }

    fn line(&self, mut text: String) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(text);
            }
            // One write per line (`eprintln!` makes one per piece: stderr is unbuffered).
            None => {
                text.push('\n');
                let _ = std::io::stderr().lock().write_all(text.as_bytes());
            }
        }
    }

    fn with_bar(&self, step: &str, f: impl FnOnce(&ProgressBar)) {
        if let Some((_, bars)) = &self.bars
            && let Some(bar) = bars.lock().unwrap_or_else(|e| e.into_inner()).get(step)
        {
            f(bar);
        }
    }
}

fn duration(d: &Duration) -> String {
    if d.as_secs() >= 1 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl Observer for TerminalObserver {
    fn event(&self, event: &Event) {
        match event {
            Event::RunStarted { run_id, workflow } => {
                self.line(format!("run {run_id} of `{workflow}`"))
            }
            Event::StepStarted { step, attempt } => match &self.bars {
                Some((multi, bars)) => {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {prefix} {wide_msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(step.clone());
                    bar.enable_steady_tick(Duration::from_millis(100));
                    bars.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(step.clone(), bar);
                }
                None if *attempt > 1 => self.line(format!("▶ {step} (attempt {attempt})")),
                None => self.line(format!("▶ {step}")),
            },
            Event::StepLog {
                step,
                level,
                message,
            } => {
                let tag = if *level == "info" {
                    String::new()
                } else {
                    format!("{level}: ")
                };
                self.line(format!("  {step} | {tag}{message}"));
            }
            Event::StepProgress {
                step,
                current,
                total,
                message,
            } => self.with_bar(step, |bar| {
                let amount = match total {
                    Some(t) => format!("{current}/{t}"),
                    None => current.to_string(),
                };
                bar.set_message(format!("{message} {amount}"));
            }),
            Event::StepRetrying {
                step,
                attempt,
                delay,
                error,
            } => {
                self.with_bar(step, ProgressBar::finish_and_clear);
                self.line(format!(
                    "↻ {step}: attempt {attempt} failed ({error}); retrying in {}",
                    duration(delay)
                ));
            }
            Event::StepFinished {
                step,
                status,
                duration: took,
                error,
            } => {
                if let Some((_, bars)) = &self.bars
                    && let Some(bar) = bars.lock().unwrap_or_else(|e| e.into_inner()).remove(step)
                {
                    bar.finish_and_clear();
                }
                let mark = match status {
                    StepStatus::Succeeded => "✓",
                    StepStatus::Skipped => "○",
                    _ => "✗",
                };
                let detail = error.as_ref().map(|e| format!(": {e}")).unwrap_or_default();
                self.line(format!(
                    "{mark} {step} {} in {}{detail}",
                    status.as_str(),
                    duration(took)
                ));
            }
        }
    }
}

/// One JSON object per event on stdout.
pub(super) struct JsonObserver;

impl Observer for JsonObserver {
    fn event(&self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            println!("{line}");
        }
    }
}
