//! `orch import gitlab` on the fixture pipelines of tests/fixtures/gitlab/: the seed's shape
//! (spec:inputs, local includes with inputs, `docker exec` lines) becomes built-in steps that do
//! what its jobs did against the real services, twice without a change; the odder one
//! (anchors, `extends`, `default:`, `parallel`, a manual job) becomes container steps that run
//! on podman. The written files are compared with `expected/` beside each fixture
//! (`ORCH_BLESS=1` rewrites them).

use crate::docker::{containers, docker_host, remove_project};
use crate::harness::pg::{admin_url, psql, psql_at};
use crate::harness::{Orch, Ran, Server, root, step, unique};
use crate::kafka::{bootstrap, committed, partitions};
use std::path::Path;

/// A copy of fixture `name` in a fresh sandbox, with `replace` applied to every file.
fn fixture(name: &str, replace: &[(&str, &str)]) -> Orch {
    let orch = Orch::new();
    let from = root().join("tests/fixtures/gitlab").join(name);
    copy(&from, orch.dir.path(), replace);
    orch
}

fn copy(from: &Path, to: &Path, replace: &[(&str, &str)]) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_name() == "expected" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy(&entry.path(), &target, replace);
        } else {
            let mut text = std::fs::read_to_string(entry.path()).unwrap();
            for (a, b) in replace {
                text = text.replace(a, b);
            }
            std::fs::write(target, text).unwrap();
        }
    }
}

/// Compare the files the import wrote with `expected/` of the fixture (sandbox paths and
/// names put back with `undo`); `ORCH_BLESS=1` writes them instead.
fn golden(orch: &Orch, name: &str, files: &[&str], undo: &[(&str, &str)]) {
    let expected = root()
        .join("tests/fixtures/gitlab")
        .join(name)
        .join("expected");
    let dir = orch.dir.path().canonicalize().unwrap();
    for file in files {
        let mut text = std::fs::read_to_string(orch.dir.path().join(file)).unwrap();
        text = text.replace(dir.to_str().unwrap(), "$REPO");
        for (a, b) in undo {
            text = text.replace(a, b);
        }
        let path = expected.join(file.trim_start_matches('.'));
        if std::env::var_os("ORCH_BLESS").is_some() {
            std::fs::create_dir_all(&expected).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (bless with ORCH_BLESS=1)", path.display()));
        assert_eq!(text, want, "{file} differs from {}", path.display());
    }
}

fn import(orch: &Orch, args: &[&str]) -> Ran {
    let mut all = vec!["import", "gitlab", ".gitlab-ci.yml"];
    all.extend_from_slice(args);
    orch.orch(&all)
}

#[test]
fn the_seed_pipeline_runs_as_its_jobs_would_and_a_second_run_changes_nothing() {
    let project = unique("lab").replace('_', "-");
    let undo = [(project.as_str(), "datalab")];
    let orch = fixture(
        "seed",
        &[("default: datalab", &format!("default: {project}"))],
    );
    let ran = import(&orch, &["--name", "datalab"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("ok: ./datalab.toml (7 steps)"),
        "{}",
        ran.stdout
    );
    golden(
        &orch,
        "seed",
        &["datalab.toml", ".env.example", "import-report.md"],
        &undo,
    );
    let report = std::fs::read_to_string(orch.dir.path().join("import-report.md")).unwrap();
    assert!(report.contains("deploy.rules[0].changes"), "{report}");
    assert!(report.contains("$CI_PIPELINE_SOURCE"), "{report}");

    // Fill .env the way the report says, with this machine's services.
    let server = Server::start("ollama.py", &[]);
    let password = "pw-import-7Hq2x9";
    orch.write(
        ".env",
        &format!(
            "DOCKER_HOST={}\nPG_ADMIN_URL={}\nDB_PASSWORD={password}\nKAFKA_BOOTSTRAP={}\nOLLAMA_URL=http://127.0.0.1:{}\n",
            docker_host(),
            admin_url(),
            bootstrap(),
            server.port
        ),
    );
    let (user, db, topic, group) = (
        unique("imp_user"),
        unique("imp_db"),
        unique("imp_topic"),
        unique("imp_group"),
    );
    let inputs = [
        format!("postgres_db_user={user}"),
        format!("postgres_db_name={db}"),
        format!("kafka_topic={topic}"),
        format!("kafka_group={group}"),
        "ollama_pull=llama3.2".to_string(),
    ];
    let with_inputs = |command: &[&str]| {
        let mut args = command.to_vec();
        args.push("datalab.toml");
        for i in &inputs {
            args.extend(["-i", i.as_str()]);
        }
        orch.orch(&args)
    };
    let plan = with_inputs(&["plan"]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains(&format!("create role {user}")),
        "{}",
        plan.stdout
    );
    assert_eq!(partitions(&topic), 0, "a plan changes nothing");

    let run = with_inputs(&["--json", "run"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    for id in [
        "deploy",
        "psql_create_user",
        "psql_create_db",
        "psql_create_db_2",
        "kafka_create_topic",
        "kafka_init_consumer",
        "ollama_pull",
    ] {
        assert_eq!(
            step(&report, id)["status"],
            "succeeded",
            "{id}: {}",
            step(&report, id)
        );
    }
    // What the GitLab jobs would have left behind.
    assert_eq!(containers(&project)["web"].state, "running");
    let mut login = url::Url::parse(&admin_url()).unwrap();
    login.set_username(&user).unwrap();
    login.set_password(Some(password)).unwrap();
    login.set_path(&db);
    assert_eq!(
        psql_at(login.as_str(), "SELECT current_user"),
        user,
        "the role logs in with DB_PASSWORD"
    );
    assert_eq!(
        psql(&format!(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}'"
        )),
        user
    );
    assert_eq!(
        psql(&format!(
            "SELECT has_database_privilege('{user}', '{db}', 'CREATE')"
        )),
        "t"
    );
    assert_eq!(partitions(&topic), 3);
    assert_eq!(committed(&group, &topic, 3), [0, 0, 0]);
    let tags =
        crate::harness::http::request("GET", &server.url("/api/tags"), None, &[], b"").json();
    assert_eq!(tags["models"][0]["name"], "llama3.2:latest", "{tags}");
    assert!(
        !orch.sqlite_store_text().contains(password),
        "the password is masked everywhere"
    );

    // Again: nothing to change.
    let plan = with_inputs(&["plan"]);
    assert_eq!(
        plan.stdout.matches("no change").count(),
        7,
        "{}",
        plan.stdout
    );
    let again = with_inputs(&["--json", "run"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    let again = again.report();
    assert_eq!(
        step(&again, "kafka_create_topic")["outputs"]["created"],
        false
    );
    assert_eq!(step(&again, "ollama_pull")["outputs"]["pulled"], false);
    assert_eq!(
        step(&again, "deploy")["outputs"]["unchanged"],
        serde_json::json!(["web"])
    );
    remove_project(&project);

    // Empty inputs skip their jobs, as the rules did.
    let skipped = orch.orch(&["--json", "run", "datalab.toml"]);
    assert_eq!(skipped.code, 0, "{}\n{}", skipped.stdout, skipped.stderr);
    assert_eq!(
        step(&skipped.report(), "psql_create_user")["status"],
        "skipped"
    );
    remove_project(&project);
}

#[test]
fn an_odd_pipeline_becomes_container_steps_that_run_and_keep_its_secret_out() {
    let orch = fixture("odd", &[]);
    let ran = import(&orch, &["--name", "odd"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("ok: ./odd.toml (4 steps)"),
        "{}",
        ran.stdout
    );
    golden(
        &orch,
        "odd",
        &["odd.toml", ".env.example", "import-report.md"],
        &[],
    );
    for file in ["odd.toml", ".env.example", "import-report.md"] {
        let text = std::fs::read_to_string(orch.dir.path().join(file)).unwrap();
        assert!(
            !text.contains("glpat-do-not-copy-4f2a9c"),
            "{file} holds the pipeline's token"
        );
    }
    let report = std::fs::read_to_string(orch.dir.path().join("import-report.md")).unwrap();
    for reported in [
        "count rows.parallel: 2",
        "make-bucket.cache",
        "count rows.after_script",
        "publish.allow_failure",
        "`workflow`",
        "variables.API_TOKEN",
    ] {
        assert!(
            report.contains(reported),
            "no `{reported}` in the report:\n{report}"
        );
    }

    let token = "tok-odd-5521ab";
    orch.write(
        ".env",
        &format!("DOCKER_HOST={}\nAPI_TOKEN={token}\n", docker_host()),
    );
    let run = orch.orch(&["--json", "run", "odd.toml"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    for id in ["make_bucket", "count_rows", "lint"] {
        assert_eq!(step(&report, id)["status"], "succeeded", "{id}");
    }
    assert_eq!(
        step(&report, "publish")["status"],
        "skipped",
        "a manual job waits for its input"
    );
    let detail = orch.run_detail(report["run_id"].as_str().unwrap());
    let log: Vec<&str> = detail["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    for line in [
        "job count rows starting",
        "rows=2",
        "token present",
        "bucket raw at level quiet",
    ] {
        assert!(log.contains(&line), "no `{line}` in {log:#?}");
    }
    assert!(!log.iter().any(|l| l.contains(token)));

    let manual = orch.orch(&["--json", "run", "odd.toml", "-i", "run_publish=true"]);
    assert_eq!(manual.code, 0, "{}\n{}", manual.stdout, manual.stderr);
    assert_eq!(step(&manual.report(), "publish")["status"], "succeeded");
    // The rule reads the pipeline variable LEVEL, now an input a run may set.
    let debug = orch.orch(&[
        "--json",
        "run",
        "odd.toml",
        "-i",
        "run_publish=true",
        "-i",
        "level=debug",
    ]);
    assert_eq!(debug.code, 0, "{}\n{}", debug.stdout, debug.stderr);
    assert_eq!(step(&debug.report(), "publish")["status"], "skipped");
}

#[test]
fn broken_pipelines_are_refused_with_where_and_why_and_nothing_is_overwritten() {
    let orch = fixture("seed", &[]);
    let cases = [
        (
            "stages: [a]\njob:\n  script: [echo]\n  rules: [\n",
            ".gitlab-ci.yml:5:1",
        ),
        ("include:\n  - local: ci/missing.yml\n", "cannot read"),
        (
            "job:\n  script: echo $[[ inputs.nope ]]\n",
            "declares no `nope`",
        ),
        (
            "job:\n  extends: .base\n  script: [echo]\n",
            "extends `.base`, which no imported file defines",
        ),
        (
            "include:\n  - local: ci/postgres.yml\n    inputs:\n      db_usr: x\n",
            "gives input `db_usr`, which its `spec:inputs` does not declare",
        ),
        (
            "a:\n  needs: [b]\n  script: [echo]\nb:\n  needs: [a]\n  script: [echo]\n",
            "`needs` form a cycle: a -> b -> a",
        ),
        (
            "a:\n  script: [!reference [.nope, script]]\n",
            "`!reference [.nope, script]` points at nothing",
        ),
    ];
    for (text, expected) in cases {
        orch.write(".gitlab-ci.yml", text);
        let ran = import(&orch, &["--out", "out"]);
        assert_eq!(ran.code, 2, "{text}\n{}\n{}", ran.stdout, ran.stderr);
        assert!(ran.stderr.contains(expected), "{text}: {}", ran.stderr);
        assert!(!orch.dir.path().join("out").exists(), "nothing written");
    }
    orch.write(
        ".gitlab-ci.yml",
        "job:\n  image: localhost/busybox:latest\n  script: [echo hi]\n",
    );
    let first = import(&orch, &["--name", "mine"]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    orch.write("mine.toml", "# edited by hand\n");
    let second = import(&orch, &["--name", "mine"]);
    assert_ne!(second.code, 0);
    assert!(
        second.stderr.contains("exists already (pass --force"),
        "{}",
        second.stderr
    );
    assert_eq!(
        std::fs::read_to_string(orch.dir.path().join("mine.toml")).unwrap(),
        "# edited by hand\n"
    );
    let forced = import(&orch, &["--name", "mine", "--force"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(
        std::fs::read_to_string(orch.dir.path().join("mine.toml"))
            .unwrap()
            .contains("[steps.job]")
    );
}

#[test]
fn split_writes_a_workflow_per_file_and_paths_reach_back_into_the_repository() {
    let orch = fixture("seed", &[]);
    let ran = import(&orch, &["--split", "--out", "orch"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    for name in ["deploy", "postgres", "kafka", "ollama"] {
        assert!(
            ran.stdout.contains(&format!("ok: orch/{name}.toml")),
            "{}",
            ran.stdout
        );
    }
    let postgres = std::fs::read_to_string(orch.dir.path().join("orch/postgres.toml")).unwrap();
    assert!(postgres.contains("[inputs.postgres_db_user]"), "{postgres}");
    assert!(
        !postgres.contains("[inputs.kafka_topic]"),
        "only the inputs it reads: {postgres}"
    );
    // The compose file is outside `orch/`: granted and read by its absolute path.
    let deploy = std::fs::read_to_string(orch.dir.path().join("orch/deploy.toml")).unwrap();
    let dir = orch.dir.path().canonicalize().unwrap();
    let compose = dir.join("infra/services/docker/compose.yml");
    assert!(
        deploy.contains(&format!("file = \"{}\"", compose.display())),
        "{deploy}"
    );
    let report = std::fs::read_to_string(orch.dir.path().join("orch/import-report.md")).unwrap();
    assert!(
        report.contains("is in another workflow (from ci/deploy.yml): run that one first"),
        "{report}"
    );
}
