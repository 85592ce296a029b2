//! Waiting on events instead of guessing with sleeps: polling, a child's output line by line,
//! signals.

use super::sandbox::Ran;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Poll `check` every 100 ms until it returns Some, or fail after `within`.
pub(crate) fn wait_for<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Milliseconds since the epoch, the unit the run store records times in.
pub(crate) fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// Send `signal` (a `kill` name: `INT`, `TERM`) to process `pid`.
pub(crate) fn signal(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// A child whose stdout is read line by line as it comes (and stderr kept), so a test can
/// wait for a line, act, and still get the whole output at the end.
pub(crate) struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Running {
    pub(crate) fn new(mut child: Child) -> Self {
        let stdout = child.stdout.take().expect("stdout piped");
        let mut stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Wait up to `within` for a stdout line that is a JSON object matching `is`; that object.
    pub(crate) fn wait_for_json(
        &mut self,
        within: Duration,
        what: &str,
        is: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "timed out waiting for {what}; stdout so far:\n{}",
                        self.seen.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("stdout ended before {what}:\n{}", self.seen.join("\n"))
                }
            };
            let parsed = serde_json::from_str::<Value>(&line).ok();
            self.seen.push(line);
            if let Some(v) = parsed.filter(|v| is(v)) {
                return v;
            }
        }
    }

    /// Wait for the exit; everything it printed.
    pub(crate) fn finish(mut self) -> Ran {
        let status = self.child.wait().expect("wait for orch");
        // The reader thread ends at EOF and drops the sender: this drains every line.
        self.seen.extend(self.lines.iter());
        let mut stdout = self.seen.join("\n");
        if !stdout.is_empty() {
            stdout.push('\n');
        }
        Ran {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr: self
                .stderr
                .take()
                .map(|t| t.join().expect("stderr reader"))
                .unwrap_or_default(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that failed before `finish` leaves no process behind (`finish` already waited).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
