//! The shell a `script` runs in, what a plan says of it, and the job's output cut into lines.

use std::collections::VecDeque;

/// Longest log line sent to the host (it cuts longer ones too; this keeps the tail honest).
const MAX_LINE: usize = 16 * 1024;

/// `sh -e -c` running `lines` in order, each echoed as `$ line` first (GitLab's job log).
pub fn shell_command(lines: &[String]) -> Vec<String> {
    let mut body = String::new();
    for line in lines {
        body.push_str("printf '$ %s\\n' ");
        body.push_str(&quote(line));
        body.push('\n');
        body.push_str(line);
        body.push('\n');
    }
    vec!["sh".into(), "-e".into(), "-c".into(), body]
}

/// `text` as one single-quoted shell word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// What the job runs, in a few words for a plan: the first script line or the command.
pub fn summary(script: &[String], command: Option<&[String]>) -> String {
    let (first, more) = match (script.first(), command) {
        (Some(first), _) => (first.clone(), script.len() - 1),
        (None, Some(command)) => (command.join(" "), 0),
        (None, None) => return "the image's own command".into(),
    };
    let first: String = first
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(80)
        .collect();
    match more {
        0 => format!("`{first}`"),
        1 => format!("`{first}` and 1 more line"),
        n => format!("`{first}` and {n} more lines"),
    }
}

/// Output bytes cut into lines (a line may arrive in pieces), keeping the last few for an error.
pub struct Lines {
    partial: Vec<u8>,
    tail: VecDeque<String>,
    keep: usize,
}

impl Lines {
    pub fn new(keep: usize) -> Self {
        Lines {
            partial: Vec::new(),
            tail: VecDeque::new(),
            keep,
        }
    }

    /// Hand every complete line of `bytes` to `emit`.
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&str)) {
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            match piece.strip_suffix(b"\n") {
                Some(end) => {
                    self.partial.extend_from_slice(end);
                    let line = std::mem::take(&mut self.partial);
                    self.line(&line, &mut emit);
                }
                None => {
                    self.partial.extend_from_slice(piece);
                    if self.partial.len() >= MAX_LINE {
                        let line = std::mem::take(&mut self.partial);
                        self.line(&line, &mut emit);
                    }
                }
            }
        }
    }

    /// The last line, if it had no newline.
    pub fn finish(&mut self, mut emit: impl FnMut(&str)) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line, &mut emit);
        }
    }

    fn line(&mut self, bytes: &[u8], emit: &mut impl FnMut(&str)) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        emit(text);
        if self.tail.len() == self.keep {
            self.tail.pop_front();
        }
        self.tail.push_back(text.to_string());
    }

    /// The last lines seen, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_script_line_is_echoed_then_run_and_quotes_survive() {
        let cmd = shell_command(&["echo 'hi' \"there\"".into(), "false".into()]);
        assert_eq!(cmd[..3], ["sh", "-e", "-c"]);
        assert_eq!(
            cmd[3],
            "printf '$ %s\\n' 'echo '\\''hi'\\'' \"there\"'\necho 'hi' \"there\"\nprintf '$ %s\\n' 'false'\nfalse\n"
        );
    }

    #[test]
    fn a_plan_names_the_first_line_and_counts_the_rest() {
        let script = ["mc mb local/raw".to_string(), "mc ls".into(), "x".into()];
        assert_eq!(summary(&script, None), "`mc mb local/raw` and 2 more lines");
        assert_eq!(summary(&script[..1], None), "`mc mb local/raw`");
        let command = ["dbt".to_string(), "run".into()];
        assert_eq!(summary(&[], Some(&command)), "`dbt run`");
        assert_eq!(summary(&[], None), "the image's own command");
    }

    #[test]
    fn lines_split_across_reads_are_joined_and_the_tail_is_bounded() {
        let mut lines = Lines::new(2);
        let mut seen = Vec::new();
        lines.push(b"one\ntw", |l| seen.push(l.to_string()));
        lines.push(b"o\r\nthree\nfo", |l| seen.push(l.to_string()));
        lines.finish(|l| seen.push(l.to_string()));
        assert_eq!(seen, ["one", "two", "three", "fo"]);
        assert_eq!(lines.tail(), ["three", "fo"]);
    }
}
