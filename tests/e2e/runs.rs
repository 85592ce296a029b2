//! Running workflows through the CLI: inputs, templates, skips, plan, graph, the run store.

use crate::harness::{Orch, example, root, signal, step};
use std::time::Duration;

const PIPELINE: &str = r#"
name = "pipeline"

[inputs.db_user]
type = "string"
default = ""

[inputs.count]
type = "number"
default = 2

[inputs.env]
options = ["dev", "prod"]
default = "dev"

[inputs.tags]
type = "array"
default = ["a"]

[steps.create_user]
plugin = "echo"
if = "inputs.db_user != ''"
with = { message = "create ${{ inputs.db_user }}", outputs = { user = "${{ inputs.db_user }}" } }

[steps.create_db]
plugin = "echo"
needs = ["create_user"]
with = { outputs = { n = "${{ inputs.count * 2 }}", env = "${{ inputs.env }}", tags = "${{ inputs.tags }}", run = "${{ run.trigger }}" } }
"#;

#[test]
fn skipped_need_lets_dependants_run_and_templates_keep_types() {
    let orch = Orch::new();
    let ran = orch.run(PIPELINE, &[]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let report = ran.report();
    assert_eq!(report["status"], "succeeded");
    assert_eq!(step(&report, "create_user")["status"], "skipped");
    let db = step(&report, "create_db");
    assert_eq!(db["status"], "succeeded");
    assert_eq!(
        db["outputs"],
        serde_json::json!({"n": 4, "env": "dev", "tags": ["a"], "run": "cli"})
    );
}

#[test]
fn inputs_from_the_command_line_are_typed() {
    let orch = Orch::new();
    let ran = orch.run(
        PIPELINE,
        &[
            "-i",
            "db_user=etl",
            "-i",
            "count=5",
            "-i",
            "env=prod",
            "-i",
            r#"tags=["x","y"]"#,
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let report = ran.report();
    assert_eq!(step(&report, "create_user")["outputs"]["user"], "etl");
    assert_eq!(step(&report, "create_db")["outputs"]["n"], 10);
    assert_eq!(
        step(&report, "create_db")["outputs"]["tags"],
        serde_json::json!(["x", "y"])
    );
}

#[test]
fn bad_inputs_exit_2_before_anything_runs() {
    let orch = Orch::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &["-i", "count=three"],
            "input `count`: expected a number, got `three`",
        ),
        (
            &["-i", "env=staging"],
            "input `env`: \"staging\" is not one of the options [\"dev\", \"prod\"]",
        ),
        (
            &["-i", "db_usr=etl"],
            "input `db_usr`: not declared by the workflow; did you mean `db_user`?",
        ),
        (&["-i", "tags=x,y"], "input `tags`: expected a JSON array"),
        (&["-i", "novalue"], "input `novalue`: expected NAME=VALUE"),
    ];
    for (args, expected) in cases {
        let ran = orch.run(PIPELINE, args);
        assert_eq!(ran.code, 2, "{args:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(expected), "{args:?}: {}", ran.stderr);
    }
    let listed = orch.orch(&["--json", "runs", "list"]);
    assert_eq!(listed.stdout.trim(), "[]", "no run was recorded");
}

#[test]
fn missing_required_input_and_regex_mismatch_are_reported_together() {
    let orch = Orch::new();
    let ran = orch.run(
        r#"
        name = "required"
        [inputs.db_name]
        description = "database to create"
        [inputs.owner]
        default = "app"
        regex = "^[a-z_]+$"
        [steps.a]
        plugin = "echo"
        "#,
        &["-i", "owner=Bad-Owner"],
    );
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr.contains(
            "input `db_name`: required string input is missing: pass --input db_name=VALUE"
        ),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr
            .contains("input `owner`: \"Bad-Owner\" does not match the regex `^[a-z_]+$`"),
        "{}",
        ran.stderr
    );
}

#[test]
fn missing_secret_is_a_clear_error_naming_the_env_file() {
    let orch = Orch::new();
    let ran = orch.run(
        r#"
        name = "secret"
        [steps.a]
        plugin = "echo"
        with = { message = "${{ secrets.NOT_SET_ANYWHERE }}" }
        "#,
        &[],
    );
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr.contains(
            "secret `NOT_SET_ANYWHERE` is not set: export NOT_SET_ANYWHERE=..., add it to"
        ),
        "{}",
        ran.stderr
    );
}

#[test]
fn config_reaches_the_plugin_rendered_and_context_is_given() {
    let orch = Orch::new();
    let ran = orch.run(
        &format!(
            r#"
            name = "ctx"
            [inputs.n]
            type = "number"
            default = 7
            [steps.first]
            plugin = "echo"
            with = {{ outputs = {{ id = "abc" }} }}
            [steps.echo]
            plugin = "{}"
            needs = ["first"]
            with = {{ n = "${{{{ inputs.n }}}}", id = "${{{{ steps.first.outputs.id }}}}", nested = {{ list = [1, "${{{{ inputs.n + 1 }}}}"] }} }}
            "#,
            example("echo-config")
        ),
        &[],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let report = ran.report();
    let echo = step(&report, "echo");
    assert_eq!(
        echo["outputs"]["config"],
        serde_json::json!({"n": 7, "id": "abc", "nested": {"list": [1, 8]}})
    );
    assert_eq!(echo["outputs"]["attempt"], 1);
    assert_eq!(echo["outputs"]["run_id"], report["run_id"]);
}

#[test]
fn plan_calls_every_plugin_and_records_nothing() {
    let orch = Orch::new();
    let file = orch.write("p.toml", PIPELINE);
    let plan = orch.orch(&["plan", file.to_str().unwrap(), "-i", "db_user=etl"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(
        plan.stdout,
        "plan for `pipeline`\n\ncreate_user [echo]\n  run log: create etl\n\ncreate_db [echo]\n  no change\n"
    );
    let skipped = orch.orch(&["plan", file.to_str().unwrap()]);
    assert!(
        skipped
            .stdout
            .contains("create_user [echo]\n  skipped: `if` inputs.db_user != '' is false"),
        "{}",
        skipped.stdout
    );
    assert!(
        !orch.dir.path().join("orch.db").exists(),
        "plan must not touch the store"
    );
}

#[test]
fn graph_draws_text_dot_and_mermaid() {
    let orch = Orch::new();
    let file = orch.write("g.toml", PIPELINE);
    let file = file.to_str().unwrap();
    let text = orch.orch(&["graph", file]);
    assert_eq!(
        text.stdout,
        "pipeline\n  create_user [echo] if inputs.db_user != ''\n  create_db [echo] <- create_user\n"
    );
    let dot = orch.orch(&["graph", file, "--format", "dot"]);
    assert!(
        dot.stdout.starts_with("digraph \"pipeline\" {"),
        "{}",
        dot.stdout
    );
    assert!(
        dot.stdout.contains("\"create_user\" -> \"create_db\";"),
        "{}",
        dot.stdout
    );
    let mermaid = orch.orch(&["graph", file, "--format", "mermaid"]);
    assert_eq!(
        mermaid.stdout,
        "flowchart LR\n  create_user[\"create_user (echo)\"]\n  create_db[\"create_db (echo)\"]\n  create_user --> create_db\n"
    );
}

#[test]
fn runs_list_and_show_read_back_what_was_recorded() {
    let orch = Orch::new();
    let first = orch.run(PIPELINE, &["-i", "db_user=etl"]).report();
    let second = orch.run(PIPELINE, &[]).report();
    let listed: serde_json::Value =
        serde_json::from_str(&orch.orch(&["--json", "runs", "list"]).stdout).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            second["run_id"].as_str().unwrap(),
            first["run_id"].as_str().unwrap()
        ],
        "newest first"
    );
    let id = first["run_id"].as_str().unwrap();
    let shown: serde_json::Value =
        serde_json::from_str(&orch.orch(&["--json", "runs", "show", &id[..16]]).stdout).unwrap();
    assert_eq!(shown["status"], "succeeded");
    assert_eq!(shown["inputs"]["db_user"], "etl");
    assert_eq!(shown["trigger"], "cli");
    let steps: Vec<(&str, &str)> = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [("create_user", "succeeded"), ("create_db", "succeeded")]
    );
    assert_eq!(shown["logs"][0]["message"], "create etl");
    let human = orch.orch(&["runs", "show", id]);
    assert!(
        human.stdout.contains(&format!("run {id}")),
        "{}",
        human.stdout
    );
    let missing = orch.orch(&["runs", "show", "ffffffff"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("no run matches `ffffffff`"),
        "{}",
        missing.stderr
    );
}

#[test]
fn terminal_run_ends_with_a_summary_table() {
    let orch = Orch::new();
    let file = orch.write("w.toml", PIPELINE);
    let ran = orch.orch(&["run", file.to_str().unwrap(), "-i", "db_user=etl"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("✓ create_user succeeded"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("  create_user | create etl"),
        "{}",
        ran.stderr
    );
    let header = ran
        .stdout
        .lines()
        .find(|l| l.contains("step"))
        .expect("a table header");
    for column in ["step", "status", "attempts", "duration", "detail"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(ran.stdout.contains("succeeded in"), "{}", ran.stdout);
}

#[test]
fn usage_errors_exit_2() {
    let orch = Orch::new();
    assert_eq!(orch.orch(&["run"]).code, 2);
    assert_eq!(orch.orch(&["graph", "x.toml", "--format", "png"]).code, 2);
    let missing = orch.orch(&["validate", "does-not-exist.toml"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("cannot read workflow `does-not-exist.toml`"),
        "{}",
        missing.stderr
    );
}

#[test]
fn the_example_workflows_validate() {
    let orch = Orch::new();
    let mut files: Vec<String> = std::fs::read_dir(root().join("workflows"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let ran = orch.orch(&args);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
}

#[test]
fn plugin_list_describes_builtins_with_their_schema() {
    let orch = Orch::new();
    let ran = orch.orch(&["--json", "plugin", "list"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let plugins: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let echo = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "echo")
        .expect("echo is built in");
    assert!(
        echo["config_schema"]["properties"]["outputs"].is_object(),
        "{echo}"
    );
    let inspect = orch.orch(&["plugin", "inspect", &example("spin")]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    assert!(
        inspect.stdout.starts_with("spin 0.2.0"),
        "{}",
        inspect.stdout
    );
    // Capabilities come from the imports, not from the plugin: each with what grants it.
    let http = orch.orch(&["--json", "plugin", "inspect", "http"]);
    let http: serde_json::Value = serde_json::from_str(&http.stdout).unwrap();
    let can = http[0]["capabilities"].as_array().unwrap();
    assert!(
        can.contains(&"http".into()) && can.contains(&"log".into()),
        "{http}"
    );
    assert!(!can.contains(&"postgres".into()), "{http}");
    let handler = http[0]["imports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["import"]
                .as_str()
                .unwrap()
                .starts_with("wasi:http/outgoing-handler")
        })
        .expect("http imports the outgoing handler");
    assert_eq!(handler["access"], "granted", "{handler}");
    assert!(
        handler["detail"].as_str().unwrap().contains("allow"),
        "{handler}"
    );
}

#[test]
fn an_interrupted_run_is_recorded_as_cancelled() {
    let orch = Orch::new();
    let file = orch.write(
        "w.toml",
        &format!(
            "name = \"long\"\n[steps.spin]\nplugin = \"{}\"\ntimeout = \"60s\"\n[steps.after]\nplugin = \"echo\"\nneeds = [\"spin\"]\n",
            example("spin")
        ),
    );
    let mut running = orch.start(&["--json", "run", file.to_str().unwrap()]);
    // Interrupt once the step is under way (recorded as running), not after a guessed delay.
    running.wait_for_json(Duration::from_secs(60), "`spin` to start", |e| {
        e["event"] == "step_started" && e["step"] == "spin"
    });
    signal(running.id(), "INT");
    let ran = running.finish();
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let report = ran.report();
    assert_eq!(report["status"], "cancelled");
    let shown = orch.run_detail(report["run_id"].as_str().unwrap());
    assert_eq!(shown["status"], "cancelled");
    let steps = shown["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "`after` never started: {shown}");
    assert_eq!(steps[0]["status"], "cancelled");
    assert!(
        steps[0]["finished_at"].is_i64(),
        "no attempt left open: {shown}"
    );
}

#[test]
fn independent_steps_run_concurrently_up_to_the_bound() {
    let orch = Orch::new();
    let workflow = format!(
        "name = \"par\"\n[steps.a]\nplugin = \"{spin}\"\ntimeout = \"1s\"\n[steps.b]\nplugin = \"{spin}\"\ntimeout = \"1s\"\n",
        spin = example("spin")
    );
    let order = |parallel: &str| -> Vec<String> {
        let ran = orch.run(&workflow, &["--parallel", parallel]);
        ran.json_lines()
            .iter()
            .filter_map(|e| match e["event"].as_str() {
                Some("step_started") => Some(format!("start {}", e["step"].as_str().unwrap())),
                Some("step_finished") => Some(format!("end {}", e["step"].as_str().unwrap())),
                _ => None,
            })
            .collect()
    };
    let both = order("2");
    assert!(
        both[0].starts_with("start") && both[1].starts_with("start"),
        "{both:?}"
    );
    let one = order("1");
    assert_eq!(one, ["start a", "end a", "start b", "end b"]);
}

/// A `with` of 50 000 values or more (here ~60 000) takes its own path: it is checked in place on
/// a second thread while the text is written from what it borrows. The plugin gets the same config, a large
/// literal as well as a large output read by name, and a config that does not match the
/// plugin's schema fails with the same message as a small one.
#[test]
fn a_large_config_is_checked_beside_its_serialising_and_arrives_whole() {
    let rows: Vec<String> = (0..20_000)
        .map(|i| format!("{{ id = {i}, name = \"r{i}\" }}"))
        .collect();
    let workflow = format!(
        r#"
        name = "large"
        [steps.make]
        plugin = "echo"
        with = {{ outputs = {{ rows = [{}] }} }}
        [steps.read]
        plugin = "echo"
        needs = ["make"]
        with = {{ outputs = {{ rows = "${{{{ steps.make.outputs.rows }}}}", count = "${{{{ size(steps.make.outputs.rows) }}}}" }} }}
        [steps.bad]
        plugin = "echo"
        needs = ["make"]
        with = {{ outputs = {{ rows = "${{{{ steps.make.outputs.rows }}}}" }}, secret = "${{{{ steps.make.outputs.rows }}}}" }}
        "#,
        rows.join(", ")
    );
    let ran = Orch::new().run(&workflow, &[]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let report = ran.report();
    for id in ["make", "read"] {
        let step = step(&report, id);
        assert_eq!(step["status"], "succeeded", "{}", step["error"]);
        let rows = step["outputs"]["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 20_000);
        assert_eq!(rows[0], serde_json::json!({ "id": 0, "name": "r0" }));
        assert_eq!(
            rows[19_999],
            serde_json::json!({ "id": 19_999, "name": "r19999" })
        );
    }
    assert_eq!(step(&report, "read")["outputs"]["count"], 20_000);
    let bad = step(&report, "bad");
    assert_eq!(bad["status"], "failed");
    let error = bad["error"].as_str().unwrap();
    assert!(
        error.starts_with("`with` does not match plugin `echo` after rendering: at `/secret/0`:"),
        "{error}"
    );
}
