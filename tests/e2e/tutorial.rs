//! docs/plugins.md, executed command for command: `sh` blocks run in order in one shell, blocks
//! with `file=PATH` write that file where the commands have got to, and every line of an
//! `output` block must appear in what the commands printed. A tutorial that drifts from orch
//! fails here.

use crate::harness::{Orch, root};
use std::path::Path;

/// The shell script the tutorial amounts to, and the lines it must print.
fn script(markdown: &str) -> (String, Vec<String>) {
    let mut script = String::from("set -euo pipefail\n");
    let mut expected = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let file = info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("file="));
        match (info.split_whitespace().next(), file) {
            (_, Some(path)) => {
                script.push_str(&format!(
                    "mkdir -p \"$(dirname '{path}')\"\ncat > '{path}' <<'TUTORIAL_EOF'\n{}\nTUTORIAL_EOF\n",
                    body.join("\n")
                ));
            }
            (Some("sh"), None) => {
                for command in body {
                    script.push_str(&format!(
                        "echo '$ {}'\n{command}\n",
                        command.replace('\'', "")
                    ));
                }
            }
            (Some("output"), None) => {
                expected.extend(
                    body.iter()
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty()),
                );
            }
            _ => {}
        }
    }
    (script, expected)
}

#[test]
fn the_plugin_tutorial_works_as_written() {
    let markdown = std::fs::read_to_string(root().join("docs/plugins.md")).unwrap();
    let (script, expected) = script(&markdown);
    assert!(script.contains("orch plugin new"), "{script}");
    assert!(expected.len() >= 3, "{expected:?}");
    let orch = Orch::new();
    let bin = Path::new(env!("CARGO_BIN_EXE_orch")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(orch.dir.path())
        .env("PATH", path)
        .env("ORCH_DATABASE_URL", &orch.database_url)
        .env(
            "ORCH_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"),
        )
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the tutorial failed:\n{printed}");
    for line in &expected {
        assert!(
            printed.contains(line.as_str()),
            "the tutorial's output lacks `{line}`:\n{printed}"
        );
    }
}
