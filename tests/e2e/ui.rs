//! Golden tests for bad workflows: `tests/ui/NAME.toml` must fail `orch validate` with exit
//! code 2 and exactly the diagnostics in `tests/ui/NAME.err`. `ORCH_BLESS=1` rewrites them.

use crate::harness::root;
use std::process::Command;

#[test]
fn every_bad_workflow_gets_its_exact_diagnostic() {
    let ui = root().join("tests/ui");
    let mut cases: Vec<_> = std::fs::read_dir(&ui)
        .expect("tests/ui")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 15,
        "expected the ui cases, found {}",
        cases.len()
    );
    let bless = std::env::var_os("ORCH_BLESS").is_some();
    let mut failures = Vec::new();
    for case in cases {
        let relative = case
            .strip_prefix(root())
            .expect("inside the repo")
            .to_path_buf();
        let out = Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(["validate", relative.to_str().expect("utf-8")])
            .current_dir(root())
            .env("NO_COLOR", "1")
            .env(
                "ORCH_CACHE_DIR",
                std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"),
            )
            .output()
            .expect("run orch");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let expected_file = case.with_extension("err");
        if out.status.code() != Some(2) {
            failures.push(format!(
                "{}: exit {:?}, expected 2\n{stderr}",
                relative.display(),
                out.status.code()
            ));
            continue;
        }
        if bless {
            std::fs::write(&expected_file, &stderr).expect("bless");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file).unwrap_or_default();
        if stderr != expected {
            failures.push(format!(
                "{}: diagnostics differ (ORCH_BLESS=1 to accept)\n--- expected\n{expected}\n--- actual\n{stderr}",
                relative.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn error_lines_name_file_line_and_column() {
    // Every .err file starts each problem with `error: tests/ui/NAME.toml:LINE:COL: `.
    for entry in std::fs::read_dir(root().join("tests/ui"))
        .expect("tests/ui")
        .filter_map(Result::ok)
    {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "err") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read .err");
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("name");
        let first = text.lines().next().unwrap_or_default();
        let prefix = format!("error: tests/ui/{stem}.toml:");
        assert!(
            first.starts_with(&prefix),
            "{}: first line `{first}`",
            path.display()
        );
        let location: Vec<&str> = first[prefix.len()..].splitn(3, ':').collect();
        assert!(
            location[0].parse::<u32>().is_ok() && location[1].parse::<u32>().is_ok(),
            "{first}"
        );
    }
}
