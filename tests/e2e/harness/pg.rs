//! The project's PostgreSQL (tests/services.sh) through `psql`, and names no other test uses.
//! Self-contained (std, `uuid`, `url`), so a bench can include it with `#[path]`.

use std::process::Command;

/// The admin URL of the project's PostgreSQL; fails (never skips) when it is not set.
pub(crate) fn admin_url() -> String {
    std::env::var("ORCH_TEST_POSTGRES_URL")
        .expect("ORCH_TEST_POSTGRES_URL is not set: run `bash tests/services.sh start` and source its env file")
}

/// Run SQL at `url`, returning trimmed unaligned output; fails on any SQL error.
pub(crate) fn psql_at(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-X",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .expect("psql is installed");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Run SQL as the admin.
pub(crate) fn psql(sql: &str) -> String {
    psql_at(&admin_url(), sql)
}

/// A name no other test uses: `PREFIX_` and 12 hex digits.
pub(crate) fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    )
}

/// A new, empty database on the project's PostgreSQL (named `PREFIX_...`): its URL. A run
/// store of its own, migrated by whichever orch opens it first.
pub(crate) fn new_database(prefix: &str) -> String {
    let db = unique(prefix);
    psql(&format!("CREATE DATABASE {db}"));
    db_url(&db)
}

/// The admin URL pointed at database `db`.
pub(crate) fn db_url(db: &str) -> String {
    let mut url = url::Url::parse(&admin_url()).expect("ORCH_TEST_POSTGRES_URL is a URL");
    url.set_path(db);
    url.to_string()
}

/// A PostgreSQL cluster of one test's own (initdb in a temporary directory, a free port), so
/// the test can restart it without disturbing the others. Stopped and removed when dropped.
pub(crate) struct PrivatePg {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    pub port: u16,
}

impl PrivatePg {
    /// Create and start a cluster; `durable`: fsync and synchronous commits on (the
    /// default), else off like the project's shared test server.
    pub(crate) fn start(durable: bool) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (tests/services.sh installs it)")
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("pg_ctl").exists())
            .max()
            .expect("a PostgreSQL with pg_ctl under /usr/lib/postgresql");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = std::env::temp_dir().join(format!("orch-pg-{}", unique("c")));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let pg = PrivatePg { dir, bin, port };
        pg.as_postgres(
            &["chown", "-R", "postgres:postgres"],
            &[&pg.dir.display().to_string()],
        );
        let data = pg.data();
        pg.pg(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "orch",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--auth=trust",
            ],
        );
        let mut opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            pg.port,
            pg.dir.display()
        );
        if !durable {
            opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        std::fs::write(pg.dir.join("opts"), &opts).expect("write options");
        pg.ctl(&["start", "-w", "-t", "60", "-o", &opts]);
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// The admin URL.
    pub(crate) fn url(&self) -> String {
        format!("postgres://orch@127.0.0.1:{}/postgres", self.port)
    }

    /// Stop the server at once (`-m fast`: sessions are cut) and start it again.
    pub(crate) fn restart(&self) {
        let opts = std::fs::read_to_string(self.dir.join("opts")).expect("options");
        self.ctl(&["restart", "-m", "fast", "-w", "-t", "60", "-o", &opts]);
    }

    fn ctl(&self, args: &[&str]) {
        let mut all = vec!["-D".to_string(), self.data(), "-l".into()];
        all.push(self.dir.join("server.log").display().to_string());
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.pg("pg_ctl", &all);
    }

    /// Run a PostgreSQL program as the `postgres` user (as root) or as ourselves.
    fn pg(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program).display().to_string();
        self.as_postgres(&[&program], args);
    }

    fn as_postgres(&self, command: &[&str], args: &[&str]) {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let mut cmd = if root && command[0] != "chown" {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).args(command);
            c
        } else if command[0] == "chown" && !root {
            return;
        } else {
            let mut c = Command::new(command[0]);
            c.args(&command[1..]);
            c
        };
        let out = cmd.args(args).output().expect("run a PostgreSQL program");
        assert!(
            out.status.success(),
            "{command:?} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.data();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        }));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
