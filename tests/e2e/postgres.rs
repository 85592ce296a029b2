//! The `postgres` plugin against the project's real PostgreSQL (tests/services.sh). Every test
//! asserts the database state afterwards, with `psql`.

use crate::harness::pg::{admin_url, db_url, psql, psql_at};
use crate::harness::{Denial, Orch, Ran, assert_denied_and_audited, root, step, unique, wait_for};
use std::process::Command;
use std::time::Duration;

/// Can `user` log in with `password`?
fn can_log_in(user: &str, password: &str) -> bool {
    let url = url::Url::parse(&admin_url()).unwrap();
    Command::new("psql")
        .args([
            "-X",
            "-t",
            "-A",
            "-h",
            url.host_str().unwrap(),
            "-p",
            &url.port().unwrap().to_string(),
        ])
        .args(["-U", user, "-d", "postgres", "-c", "SELECT current_user"])
        .env("PGPASSWORD", password)
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == user)
        .unwrap_or(false)
}

fn orch() -> Orch {
    Orch::new().env("POSTGRES_ADMIN_URL", &admin_url())
}

/// Inputs of the seed workflow (`workflows/postgres.toml`); `None` leaves one out.
#[derive(Clone, Copy)]
struct Seed<'a> {
    user: Option<&'a str>,
    db: Option<&'a str>,
}

impl Seed<'_> {
    /// `orch COMMAND workflows/postgres.toml` with these inputs.
    fn orch(self, orch: &Orch, command: &[&str]) -> Ran {
        let mut args: Vec<String> = command.iter().map(|c| c.to_string()).collect();
        args.push(root().join("workflows/postgres.toml").display().to_string());
        if let Some(user) = self.user {
            args.extend(["-i".to_string(), format!("db_user={user}")]);
        }
        if let Some(db) = self.db {
            args.extend(["-i".to_string(), format!("db_name={db}")]);
        }
        orch.orch(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `orch --json run`.
    fn run(self, orch: &Orch) -> Ran {
        self.orch(orch, &["--json", "run"])
    }

    /// `orch plan`.
    fn plan(self, orch: &Orch) -> Ran {
        self.orch(orch, &["plan"])
    }

    /// A run that must succeed; its report.
    fn seeded(self, orch: &Orch) -> serde_json::Value {
        let ran = self.run(orch);
        assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
        ran.report()
    }
}

#[test]
fn seed_workflow_creates_user_and_db_and_a_second_run_changes_nothing() {
    let orch = orch();
    let (user, db) = (unique("app"), unique("appdb"));
    let seed = Seed {
        user: Some(&user),
        db: Some(&db),
    };
    let first = seed.seeded(&orch);
    assert_eq!(step(&first, "psql_create_user")["outputs"]["created"], true);
    assert_eq!(
        step(&first, "psql_create_user")["outputs"]["password"],
        "***"
    );
    assert_eq!(
        psql(&format!(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = '{user}'"
        )),
        "t"
    );
    assert_eq!(
        psql(&format!(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}'"
        )),
        user
    );
    let oids = |_: ()| {
        psql(&format!(
            "SELECT (SELECT oid FROM pg_roles WHERE rolname = '{user}') || ' ' || (SELECT oid FROM pg_database WHERE datname = '{db}')"
        ))
    };
    let before = oids(());

    let plan = seed.plan(&orch);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(
        plan.stdout.matches("no change").count(),
        2,
        "{}",
        plan.stdout
    );

    let second = seed.seeded(&orch);
    assert_eq!(
        step(&second, "psql_create_user")["outputs"]["created"],
        false
    );
    assert_eq!(step(&second, "psql_create_db")["outputs"]["created"], false);
    assert!(
        step(&second, "psql_create_user")["outputs"]
            .get("password")
            .is_none(),
        "password kept"
    );
    assert_eq!(oids(()), before, "nothing was recreated");
}

#[test]
fn user_only_skips_the_db_and_db_only_uses_an_existing_owner() {
    let orch = orch();
    let user = unique("solo");
    let ran = Seed {
        user: Some(&user),
        db: None,
    }
    .run(&orch);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(step(&ran.report(), "psql_create_db")["status"], "skipped");
    assert_eq!(
        psql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{user}'"
        )),
        "1"
    );

    let (owner, db) = (unique("owner"), unique("owned"));
    psql(&format!("CREATE ROLE {owner}"));
    let report = Seed {
        user: Some(&owner),
        db: Some(&db),
    }
    .seeded(&orch);
    assert_eq!(
        step(&report, "psql_create_user")["outputs"]["created"],
        false
    );
    assert_eq!(
        psql(&format!(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = '{owner}'"
        )),
        "t",
        "LOGIN ensured"
    );
    assert_eq!(
        psql(&format!(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}'"
        )),
        owner
    );

    let only_db = unique("nodbuser");
    let ran = Seed {
        user: None,
        db: Some(&only_db),
    }
    .run(&orch);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(step(&ran.report(), "psql_create_user")["status"], "skipped");
    assert_eq!(
        psql(&format!(
            "SELECT count(*) FROM pg_database WHERE datname = '{only_db}'"
        )),
        "1"
    );
}

fn create_user_workflow(extra: &str) -> String {
    format!(
        r#"
        name = "users"
        [inputs.user]
        [connections.pg_admin]
        kind = "postgres"
        url = "${{{{ secrets.POSTGRES_ADMIN_URL }}}}"
        [steps.user]
        plugin = "postgres"
        allow = ["pg_admin"]
        {extra}
        "#
    )
}

#[test]
fn rotating_a_password_lets_the_user_log_in_with_the_new_one_only() {
    let orch = orch()
        .env("NEW_PW", "n3w-Pass-rotated")
        .env("OLD_PW", "0ld-Pass-first");
    let user = unique("rot");
    let first = orch.run(
        &create_user_workflow(r#"with = { action = "create-user", connection = "pg_admin", user = "${{ inputs.user }}", password = "${{ secrets.OLD_PW }}" }"#),
        &["-i", &format!("user={user}")],
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(can_log_in(&user, "0ld-Pass-first"));
    let rotated = orch.run(
        &create_user_workflow(r#"with = { action = "create-user", connection = "pg_admin", user = "${{ inputs.user }}", password = "${{ secrets.NEW_PW }}", rotate = true }"#),
        &["-i", &format!("user={user}")],
    );
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    assert_eq!(step(&rotated.report(), "user")["outputs"]["rotated"], true);
    assert!(can_log_in(&user, "n3w-Pass-rotated"));
    assert!(!can_log_in(&user, "0ld-Pass-first"));
    assert!(
        !rotated.stdout.contains("n3w-Pass-rotated")
            && !rotated.stderr.contains("n3w-Pass-rotated")
    );
}

#[test]
fn a_generated_password_is_stored_for_later_and_appears_nowhere_else() {
    let user = unique("gen");
    let secrets_dir = tempfile::tempdir().unwrap();
    let mut orch = orch().env("ORCH_SECRETS_DIR", secrets_dir.path().to_str().unwrap());
    let workflow = create_user_workflow(
        r#"with = { action = "create-user", connection = "pg_admin", user = "${{ inputs.user }}", rotate = true }
        store_secret = "APP_PW""#,
    );
    let file = orch.write("w.toml", &workflow);
    let file = file.to_str().unwrap();
    // SQLite store, terminal output.
    let human = orch.orch(&["run", file, "-i", &format!("user={user}")]);
    assert_eq!(human.code, 0, "{}", human.stderr);
    let password = orch
        .orch(&["secret", "get", "APP_PW"])
        .stdout
        .trim()
        .to_string();
    assert_eq!(password.len(), 32, "a strong generated password");
    assert!(can_log_in(&user, &password));
    let sqlite_run = orch.orch(&["--json", "runs", "list"]);
    let id = serde_json::from_str::<serde_json::Value>(&sqlite_run.stdout).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let show = orch.orch(&["runs", "show", &id]);
    assert!(
        show.stdout
            .contains("stored output `password` as secret `APP_PW`"),
        "{}",
        show.stdout
    );
    let store = orch.sqlite_store_text();
    for (what, text) in [
        ("terminal stdout", human.stdout.as_str()),
        ("terminal stderr", &human.stderr),
        ("runs show", &show.stdout),
        ("sqlite store", &store),
    ] {
        assert!(!text.contains(&password), "the password is in the {what}");
    }

    // PostgreSQL store, rotated again (a new generated password), JSON output.
    let store_url = crate::harness::pg::new_database("store");
    orch.database_url = store_url.clone();
    let json = orch.orch(&["--json", "run", file, "-i", &format!("user={user}")]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let rotated = orch
        .orch(&["secret", "get", "APP_PW"])
        .stdout
        .trim()
        .to_string();
    assert_ne!(rotated, password);
    assert!(can_log_in(&user, &rotated));
    let run_id = json.report()["run_id"].as_str().unwrap().to_string();
    let dump = psql_at(
        &store_url,
        &format!(
            "SELECT concat_ws(' ', (SELECT string_agg(r::text, ' ') FROM runs r WHERE id = '{run_id}'), \
         (SELECT string_agg(s::text, ' ') FROM step_runs s WHERE run_id = '{run_id}'), \
         (SELECT string_agg(l::text, ' ') FROM logs l WHERE run_id = '{run_id}'))"
        ),
    );
    assert!(dump.contains(&user), "the dump has the run: {dump}");
    assert!(
        !dump.contains(&rotated),
        "the password is in the PostgreSQL store"
    );
    assert!(!json.stdout.contains(&rotated) && !json.stderr.contains(&rotated));
}

#[test]
fn injection_attempts_in_names_and_values_are_created_literally() {
    let orch = orch().env("EVIL_PW", "p'; DROP ROLE orch; --");
    let user = format!("x\"; DROP DATABASE postgres; --{}", &unique("")[1..7]);
    let db = format!("d'); DROP TABLE x; --{}", &unique("")[1..7]);
    let ran = orch.run(
        r#"
            name = "evil"
            [inputs.user]
            [inputs.db]
            [connections.pg_admin]
            kind = "postgres"
            url = "${{ secrets.POSTGRES_ADMIN_URL }}"
            [steps.user]
            plugin = "postgres"
            allow = ["pg_admin"]
            with = { action = "create-user", connection = "pg_admin", user = "${{ inputs.user }}", password = "${{ secrets.EVIL_PW }}" }
            [steps.db]
            plugin = "postgres"
            needs = ["user"]
            allow = ["pg_admin"]
            with = { action = "create-db", connection = "pg_admin", name = "${{ inputs.db }}", owner = "${{ inputs.user }}" }
            "#,
        &["-i", &format!("user={user}"), "-i", &format!("db={db}")],
    );
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let literal = |s: &str| s.replace('\'', "''");
    assert_eq!(
        psql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{}'",
            literal(&user)
        )),
        "1"
    );
    assert_eq!(
        psql(&format!(
            "SELECT count(*) FROM pg_database WHERE datname = '{}'",
            literal(&db)
        )),
        "1"
    );
    assert_eq!(
        psql("SELECT count(*) FROM pg_database WHERE datname = 'postgres'"),
        "1",
        "postgres survived"
    );
    assert_eq!(
        psql("SELECT count(*) FROM pg_roles WHERE rolname = 'orch'"),
        "1",
        "the admin survived"
    );
    assert!(
        can_log_in(&user, "p'; DROP ROLE orch; --"),
        "the password was set literally"
    );

    let too_long = "a".repeat(64);
    let rejected = orch.run(
        &create_user_workflow(r#"with = { action = "create-user", connection = "pg_admin", user = "${{ inputs.user }}" }"#),
        &["-i", &format!("user={too_long}")],
    );
    assert_eq!(rejected.code, 1);
    let error = step(&rejected.report(), "user")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("must be 1 to 63 bytes"), "{error}");
}

#[test]
fn a_wrong_admin_password_fails_once_with_a_clear_error() {
    let mut url = url::Url::parse(&admin_url()).unwrap();
    url.set_password(Some("definitely-wrong-pw")).unwrap();
    let orch = Orch::new().env("POSTGRES_ADMIN_URL", url.as_str());
    let ran = Seed {
        user: Some("nobody_here"),
        db: None,
    }
    .run(&orch);
    assert_eq!(ran.code, 1);
    let report = ran.report();
    let user = step(&report, "psql_create_user");
    assert_eq!(user["attempts"], 1, "no retry storm: {user}");
    let error = user["error"].as_str().unwrap();
    assert!(
        error.contains("28P01") && error.contains("password authentication failed"),
        "{error}"
    );
    assert!(
        !ran.stdout.contains("definitely-wrong-pw") && !ran.stderr.contains("definitely-wrong-pw")
    );
}

#[test]
fn an_unreachable_server_is_retried_with_backoff_then_fails_clearly() {
    let orch = Orch::new().env(
        "POSTGRES_ADMIN_URL",
        "postgres://orch:pw@127.0.0.1:1/postgres",
    );
    let ran = orch.run(
        &create_user_workflow(
            r#"with = { action = "create-user", connection = "pg_admin", user = "${{ inputs.user }}" }
            retry = { max = 2, backoff = "100ms" }
            timeout = "20s""#,
        ),
        &["-i", "user=whoever"],
    );
    assert_eq!(ran.code, 1);
    assert_eq!(ran.retry_delays(), [100, 200]);
    let user = step(&ran.report(), "user").clone();
    assert_eq!(user["attempts"], 3);
    assert!(
        user["error"]
            .as_str()
            .unwrap()
            .starts_with("postgres unavailable"),
        "{user}"
    );
}

#[test]
fn a_step_without_the_grant_is_denied_and_audited() {
    let orch = orch();
    let ran = orch.run(
        r#"
        name = "sneaky"
        [connections.pg_admin]
        kind = "postgres"
        url = "${{ secrets.POSTGRES_ADMIN_URL }}"
        [steps.sneak]
        plugin = "postgres"
        with = { action = "query", connection = "pg_admin", sql = "SELECT 1" }
        "#,
        &[],
    );
    assert_eq!(ran.code, 1);
    let denial = Denial {
        step: "sneak",
        error: "denied: step `sneak` may not open connection `pg_admin`: add \"pg_admin\" to its `allow`",
        action: "connection",
        target: "pg_admin",
    };
    assert_denied_and_audited(&orch, &ran.report(), &denial);
}

#[test]
fn etl_workflow_moves_transformed_rows_and_is_idempotent() {
    let orch = orch();
    let (source, target) = (unique("etl_src"), unique("etl_dst"));
    let args = [
        "-i".to_string(),
        format!("source_db={source}"),
        "-i".to_string(),
        format!("target_db={target}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let file = root().join("workflows/etl-postgres.toml");
    let mut all = vec!["--json", "run", file.to_str().unwrap()];
    all.extend(&args);
    for _ in 0..2 {
        let ran = orch.orch(&all);
        assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    }
    assert_eq!(
        psql_at(
            &db_url(&target),
            "SELECT string_agg(customer || ':' || orders || ':' || total, ' ' ORDER BY customer) FROM customer_totals"
        ),
        "ANA:2:15.00 EVA:1:1.00 RUI:2:10.00"
    );
}

#[test]
fn sql_query_and_grant_actions_work_and_report_their_plan() {
    let orch = orch();
    let (db, reader) = (unique("qdb"), unique("reader"));
    psql(&format!("CREATE DATABASE {db}"));
    psql(&format!("CREATE ROLE {reader} LOGIN"));
    let workflow = format!(
        r#"
        name = "actions"
        [connections.pg_admin]
        kind = "postgres"
        url = "${{{{ secrets.POSTGRES_ADMIN_URL }}}}"
        [connections.app]
        kind = "postgres"
        url = "${{{{ secrets.POSTGRES_ADMIN_URL }}}}"
        database = "{db}"
        [steps.migrate]
        plugin = "postgres"
        allow = ["app"]
        with = {{ action = "sql", connection = "app", sql = "CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, v jsonb, at timestamptz DEFAULT '2026-01-01T00:00:00Z', n numeric(5,2) DEFAULT 1.5)" }}
        [steps.insert]
        plugin = "postgres"
        needs = ["migrate"]
        allow = ["app"]
        with = {{ action = "sql", connection = "app", sql = "INSERT INTO t (id, v) VALUES ($1::int, $2::jsonb) ON CONFLICT (id) DO NOTHING", params = [1, {{ a = "b" }}] }}
        [steps.read]
        plugin = "postgres"
        needs = ["insert"]
        allow = ["app"]
        with = {{ action = "query", connection = "app", sql = "SELECT id, v, at, n FROM t WHERE id = $1::int", params = [1] }}
        [steps.grant]
        plugin = "postgres"
        allow = ["pg_admin"]
        with = {{ action = "grant", connection = "pg_admin", role = "{reader}", privileges = ["create"], database = "{db}" }}
        "#
    );
    let ran = orch.run(&workflow, &[]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = ran.report();
    assert_eq!(
        step(&report, "read")["outputs"]["rows"],
        serde_json::json!([{"id": 1, "v": {"a": "b"}, "at": "2026-01-01T00:00:00+00:00", "n": "1.50"}])
    );
    assert_eq!(step(&report, "grant")["outputs"]["granted"], true);
    assert_eq!(
        psql(&format!(
            "SELECT has_database_privilege('{reader}', '{db}', 'CREATE')"
        )),
        "t"
    );
    let plan = orch.orch(&[
        "plan",
        orch.dir.path().join("workflow.toml").to_str().unwrap(),
    ]);
    assert!(
        plan.stdout.contains("grant [postgres]\n  no change"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("run sql: CREATE TABLE IF NOT EXISTS t"),
        "{}",
        plan.stdout
    );
}

/// A PostgreSQL of this test's own (initdb in a temp dir, trust auth), so it can be stopped.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
    /// The newest installed server's bin directory.
    bin: std::path::PathBuf,
}

impl PrivatePostgres {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .max()
            .expect("PostgreSQL server binaries (tests/services.sh installs them)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.path().join("data");
        let as_postgres = |args: &[&str]| {
            let status = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .args(args)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "{args:?}");
        };
        Command::new("chown")
            .args(["postgres", dir.path().to_str().unwrap()])
            .status()
            .unwrap();
        let (initdb, pg_ctl) = (bin.join("initdb"), bin.join("pg_ctl"));
        as_postgres(&[
            initdb.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-U",
            "admin",
            "--auth=trust",
        ]);
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        as_postgres(&[
            pg_ctl.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-w",
            "-o",
            &options,
            "-l",
            "/dev/null",
            "start",
        ]);
        Self { dir, port, bin }
    }

    fn url(&self) -> String {
        format!("postgres://admin@127.0.0.1:{}/postgres", self.port)
    }

    fn stop(&self) {
        let bin = &self.bin;
        let data = self.dir.path().join("data");
        Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                bin.join("pg_ctl").to_str().unwrap(),
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn a_server_stopped_mid_run_gives_retries_with_backoff_then_a_clear_failure() {
    let server = PrivatePostgres::start();
    let orch = Orch::new().env("POSTGRES_ADMIN_URL", &server.url());
    let file = orch.write(
        "w.toml",
        r#"
        name = "stopped"
        [connections.pg_admin]
        kind = "postgres"
        url = "${{ secrets.POSTGRES_ADMIN_URL }}"
        [steps.slow]
        plugin = "postgres"
        allow = ["pg_admin"]
        with = { action = "sql", connection = "pg_admin", sql = "SELECT pg_sleep(20)", transaction = false }
        retry = { max = 2, backoff = "200ms" }
        timeout = "60s"
        "#,
    );
    let running = orch.start(&["--json", "run", file.to_str().unwrap()]);
    // Wait until the statement is running on the server, then stop the server under it.
    wait_for(
        Duration::from_secs(20),
        "the step to reach the server",
        || {
            let active = psql_at(
                &server.url(),
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20)'",
            );
            (active == "1").then_some(())
        },
    );
    server.stop();
    let ran = running.finish();
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(ran.retry_delays(), [200, 400], "retried with backoff");
    let slow = step(&ran.report(), "slow").clone();
    assert_eq!(slow["status"], "failed");
    assert_eq!(slow["attempts"], 3);
    assert!(
        slow["error"]
            .as_str()
            .unwrap()
            .starts_with("postgres unavailable"),
        "{slow}"
    );
}

#[test]
fn load_copies_awkward_values_exactly_and_rejects_unknown_columns() {
    let orch = orch();
    let db = unique("loaddb");
    psql(&format!("CREATE DATABASE {db}"));
    let url = db_url(&db);
    psql_at(
        &url,
        "CREATE TABLE t (id int PRIMARY KEY, s text, b bool, j jsonb, f float8)",
    );
    let workflow = |rows: &str| {
        format!(
            r#"
            name = "load"
            [connections.app]
            kind = "postgres"
            url = "${{{{ secrets.POSTGRES_ADMIN_URL }}}}"
            database = "{db}"
            [steps.load]
            plugin = "postgres"
            allow = ["app"]
            with = {{ action = "load", connection = "app", table = "t", batch_size = 1, rows = {rows} }}
            "#
        )
    };
    let rows = r#"[{ id = 1, s = "tab\there\nnew line \\ back", b = true, j = { k = [1, "x"] }, f = 2.5 }, { id = 2, s = "\\N", b = false, f = -1 }]"#;
    let ran = orch.run(&workflow(rows), &[]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(
        psql_at(&url, "SELECT json_agg(t ORDER BY id) FROM t"),
        r#"[{"id":1,"s":"tab\there\nnew line \\ back","b":true,"j":{"k": [1, "x"]},"f":2.5}, 
 {"id":2,"s":"\\N","b":false,"j":null,"f":-1}]"#
    );
    let bad = orch.run(&workflow(r#"[{ id = 3 }, { id = 4, nope = 1 }]"#), &[]);
    assert_eq!(bad.code, 1);
    let error = step(&bad.report(), "load")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("row 2 has column `nope`"), "{error}");
    assert_eq!(
        psql_at(&url, "SELECT count(*) FROM t"),
        "2",
        "the failed load left nothing behind"
    );
}
