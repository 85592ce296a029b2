//! The steps a job becomes: the built-in step for each recognised line ([`Action`]), and a
//! `container` step for the rest, with the connections they need and what `.env` must hold.

use super::shell::{self, Action, GrantOn, Sql};
use super::translate::{
    INPUT_TEMPLATE, REPO_IN_JOB, SECRET_NAME, SHELL_VAR, Translator, dir_name, is_secret,
};
use crate::import::model::{Connection, EnvEntry, Step};
use indexmap::IndexMap;
use regex::Regex;
use serde_norway::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::LazyLock;
use toml::Value as Toml;

impl Translator<'_> {
    pub(super) fn docker_connection(
        &mut self,
        connections: &mut IndexMap<String, Connection>,
        image: Option<&str>,
    ) {
        let host = self.job_variables.get("DOCKER_HOST").cloned();
        let conn = connections
            .entry("docker".into())
            .or_insert_with(|| Connection {
                kind: "docker",
                settings: vec![("host".into(), Toml::String("${{ env.DOCKER_HOST }}".into()))],
                images: Vec::new(),
                bind_paths: Vec::new(),
            });
        if let Some(image) = image
            && !conn.images.iter().any(|i| i == image)
        {
            conn.images.push(image.to_string());
        }
        self.env
            .entry("DOCKER_HOST".into())
            .or_insert_with(|| EnvEntry {
                name: "DOCKER_HOST".into(),
                secret: false,
                example: host.unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
                why: "the Docker engine the jobs used (their `DOCKER_HOST`)".into(),
            });
    }

    #[allow(clippy::too_many_arguments, reason = "one job's context")]
    pub(super) fn container_step(
        &mut self,
        file: &str,
        job: &str,
        script: &[String],
        image: Option<&str>,
        entrypoint: Option<Vec<String>>,
        variables: &IndexMap<String, String>,
        connections: &mut IndexMap<String, Connection>,
    ) -> Step {
        let image = match image {
            Some(image) => image.to_string(),
            None => {
                self.note(file, format!("{job}.image"), "no image (GitLab's runner default applies there); `alpine:3` was put in: set the image the job needs");
                "alpine:3".into()
            }
        };
        self.docker_connection(connections, Some(&image));
        if let Some(c) = connections.get_mut("docker") {
            let repo = self.root.display().to_string();
            if !c.bind_paths.contains(&repo) {
                c.bind_paths.push(repo);
            }
        }
        let mut env: IndexMap<String, String> = IndexMap::new();
        let mut lines = Vec::new();
        let assigned = assigned_in(script);
        for line in script {
            if line.contains("docker ")
                && (line.contains("docker exec") || line.contains("docker run"))
            {
                self.note(file, format!("{job}: `{}`", scrub(line)), "drives a Docker engine from inside the job: that reaches the engine outside orch's docker policy");
            }
            let line = inputs_as_variables(line, &mut env);
            let line = self.withhold_passwords(file, job, &line, &mut env);
            for c in SHELL_VAR.captures_iter(&line) {
                let var = c
                    .get(1)
                    .or(c.get(2))
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default();
                // The script's own variables, and lower-case ones (shell locals by custom;
                // CI/CD variables are upper case), are not asked of `.env`.
                let local = assigned.contains(&var)
                    || var.chars().any(|c| c.is_ascii_lowercase())
                    || WELL_KNOWN.contains(&var.as_str());
                if local || env.contains_key(&var) || variables.contains_key(&var) {
                    continue;
                }
                let value = match var.as_str() {
                    "CI" => Some("true".to_string()),
                    "CI_PROJECT_DIR" | "CI_BUILDS_DIR" => Some(REPO_IN_JOB.to_string()),
                    "CI_JOB_NAME" => Some(job.to_string()),
                    "CI_PIPELINE_ID" | "CI_PIPELINE_IID" | "CI_JOB_ID" => {
                        Some("${{ run.id }}".to_string())
                    }
                    "CI_PROJECT_NAME" => Some(dir_name(&self.root)),
                    v if v.starts_with("CI_") || v.starts_with("GITLAB_") => {
                        self.note(
                            file,
                            format!("{job}: `${v}`"),
                            "GitLab's own variable; empty in orch",
                        );
                        None
                    }
                    v if SECRET_NAME.is_match(v) => Some(format!("${{{{ secrets.{v} }}}}")),
                    v => Some(format!("${{{{ env.{v} }}}}")),
                };
                if let Some(value) = value {
                    env.insert(var, value);
                }
            }
            lines.push(line);
        }
        for (k, v) in variables {
            let value = if is_secret(k, v) {
                format!("${{{{ secrets.{k} }}}}")
            } else if let Some(input) = self.variable_input(k, v) {
                format!("${{{{ inputs.{input} }}}}")
            } else {
                INPUT_TEMPLATE
                    .replace_all(v, "$${{ inputs.$1 }}")
                    .into_owned()
            };
            env.insert(k.clone(), value);
        }
        for value in env.values().cloned().collect::<Vec<_>>() {
            self.need_env(&value, &format!("used by job `{job}`"));
        }
        let mut with: Vec<(String, Toml)> = vec![
            ("connection".into(), Toml::String("docker".into())),
            ("image".into(), Toml::String(image)),
        ];
        if let Some(entrypoint) = entrypoint {
            with.push(("entrypoint".into(), strings(&entrypoint)));
        }
        with.push(("mount".into(), Toml::String(self.guest(".").0)));
        with.push(("mount_at".into(), Toml::String(REPO_IN_JOB.into())));
        if !env.is_empty() {
            let table: toml::map::Map<String, Toml> =
                env.into_iter().map(|(k, v)| (k, Toml::String(v))).collect();
            with.push(("env".into(), Toml::Table(table)));
        }
        with.push(("script".into(), strings(&lines)));
        Step {
            plugin: "container",
            allow: vec!["docker".into(), self.guest(".").1],
            with,
            ..Step::default()
        }
    }

    /// `line` with literal passwords (in a URL, or `PASSWORD '...'` in SQL) replaced by shell
    /// variables read from secrets: the workflow never holds them.
    fn withhold_passwords(
        &mut self,
        file: &str,
        job: &str,
        line: &str,
        env: &mut IndexMap<String, String>,
    ) -> String {
        static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r#"([A-Za-z][A-Za-z0-9+.-]*://[^/@\s:'"]+:)([^/@\s'"$]+)(@)"#)
                .expect("valid regex")
        });
        static SQL_PASSWORD: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"(?i)(PASSWORD\s+')([^'$]+)(')").expect("valid regex"));
        let mut out = line.to_string();
        for (pattern, base) in [
            (&*URL_PASSWORD, "URL_PASSWORD"),
            (&*SQL_PASSWORD, "SQL_PASSWORD"),
        ] {
            while let Some(c) = pattern.captures(&out) {
                let mut name = base.to_string();
                let mut n = 2;
                while env.contains_key(&name) || self.env.contains_key(&name) {
                    name = format!("{base}_{n}");
                    n += 1;
                }
                let whole = c.get(0).map_or(0..0, |m| m.range());
                let replaced = format!("{}${{{name}}}{}", &c[1], &c[3]);
                out.replace_range(whole, &replaced);
                env.insert(name.clone(), format!("${{{{ secrets.{name} }}}}"));
                self.need_env(
                    &format!("${{{{ secrets.{name} }}}}"),
                    &format!("a password job `{job}` had in its script"),
                );
                self.note(
                    file,
                    format!("{job}: a literal password"),
                    format!("replaced by `${name}`, read from the secret `{name}`: set it in .env"),
                );
            }
        }
        out
    }

    /// A path of the repository as the workflow sees it: (guest path, `allow` grant).
    pub(super) fn guest(&self, repo_relative: &str) -> (String, String) {
        let target = normalize(&self.root.join(repo_relative));
        match target.strip_prefix(&self.out) {
            Ok(rel) if rel.as_os_str().is_empty() => (".".into(), "./".into()),
            Ok(rel) => (rel.display().to_string(), format!("./{}", rel.display())),
            Err(_) => (target.display().to_string(), target.display().to_string()),
        }
    }

    pub(super) fn builtin(
        &mut self,
        file: &str,
        job: &str,
        line: &str,
        action: Action,
        connections: &mut IndexMap<String, Connection>,
    ) -> Vec<(Step, String)> {
        let s = |v: &str| Toml::String(pretty(v));
        let step = |plugin: &'static str, allow: Vec<String>, with: Vec<(String, Toml)>| Step {
            plugin,
            allow,
            with,
            ..Step::default()
        };
        let mut out = Vec::new();
        match action {
            Action::Deploy {
                project,
                file: compose,
                profiles,
                remove_orphans,
                pull,
                services,
            } => {
                let compose = compose.unwrap_or_else(|| {
                    [
                        "compose.yaml",
                        "compose.yml",
                        "docker-compose.yml",
                        "docker-compose.yaml",
                    ]
                    .into_iter()
                    .find(|f| self.root.join(f).is_file())
                    .unwrap_or("compose.yaml")
                    .to_string()
                });
                let compose_path = self.root.join(&compose);
                let (images, name) = compose_facts(&compose_path);
                if images.iter().any(|i| i == "*") {
                    self.note(file, format!("{job}: {compose}"), "an image is set by a variable with no default: the docker connection allows any image (`*`); narrow its `images`");
                }
                if !compose_path.is_file() {
                    self.note(file, format!("{job}: {compose}"), "not found beside the pipeline: the connection's `images` is empty until you list the compose file's images");
                }
                let project = project
                    .or(name)
                    .unwrap_or_else(|| dir_name(compose_path.parent().unwrap_or(&self.root)));
                if !services.is_empty() {
                    self.note(
                        file,
                        format!("{job}: `{}`", scrub(line)),
                        format!(
                            "`deploy` converges the whole project, not only {}",
                            services.join(", ")
                        ),
                    );
                }
                self.docker_connection(connections, None);
                if let Some(c) = connections.get_mut("docker") {
                    for image in &images {
                        if !c.images.contains(image) {
                            c.images.push(image.clone());
                        }
                    }
                }
                let dir = Path::new(&compose)
                    .parent()
                    .map(|p| p.display().to_string())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| ".".into());
                let (guest_file, _) = self.guest(&compose);
                let (_, grant) = self.guest(&dir);
                let mut with = vec![
                    ("connection".into(), Toml::String("docker".into())),
                    ("project".into(), s(&project)),
                    ("file".into(), Toml::String(guest_file)),
                ];
                if !profiles.is_empty() {
                    with.push(("profiles".into(), strings(&profiles)));
                }
                if remove_orphans {
                    with.push(("remove_orphans".into(), Toml::Boolean(true)));
                }
                match pull.as_deref() {
                    Some(p @ ("always" | "missing" | "never")) => {
                        with.push(("pull".into(), Toml::String(p.into())))
                    }
                    Some(other) => self.note(
                        file,
                        format!("{job}: `--pull {other}`"),
                        "not a pull policy `deploy` has; the default (missing) applies",
                    ),
                    None => {}
                }
                out.push((
                    step("deploy", vec!["docker".into(), grant], with),
                    "`deploy`".into(),
                ));
            }
            Action::Psql {
                via,
                user,
                database,
                host,
                port,
                statements,
            } => {
                let conn = self.postgres_connection(
                    connections,
                    &via,
                    user.as_deref(),
                    database.as_deref(),
                    host.as_deref(),
                    port.as_deref(),
                );
                for sql in statements {
                    let mut with = vec![("connection".into(), Toml::String(conn.clone()))];
                    let what = match sql {
                        Sql::CreateUser { user, password } => {
                            with.insert(0, ("action".into(), Toml::String("create-user".into())));
                            with.push(("user".into(), s(&user)));
                            if let Some(pw) = password {
                                let pw = if pw.contains("${{") {
                                    pw
                                } else {
                                    let name = format!("{}_PASSWORD", env_name(&user));
                                    self.note(file, format!("{job}: `{}`", scrub(line)), format!("a literal password was not copied; set `{name}` in .env"));
                                    format!("${{{{secrets.{name}}}}}")
                                };
                                self.need_env(&pw, &format!("the password `{job}` sets"));
                                with.push(("password".into(), s(&pw)));
                            }
                            "`postgres` create-user"
                        }
                        Sql::CreateDb {
                            name,
                            owner,
                            encoding,
                            template,
                        } => {
                            with.insert(0, ("action".into(), Toml::String("create-db".into())));
                            with.push(("name".into(), s(&name)));
                            if let Some(o) = owner {
                                with.push(("owner".into(), s(&o)));
                            }
                            if let Some(e) = encoding {
                                with.push(("encoding".into(), s(&e)));
                            }
                            if let Some(t) = template {
                                with.push(("template".into(), s(&t)));
                            }
                            "`postgres` create-db"
                        }
                        Sql::Grant {
                            privileges,
                            role,
                            on,
                        } => {
                            with.insert(0, ("action".into(), Toml::String("grant".into())));
                            with.push(("role".into(), s(&role)));
                            with.push(("privileges".into(), strings(&privileges)));
                            match on {
                                GrantOn::Database(d) => with.push(("database".into(), s(&d))),
                                GrantOn::Schema(sc) => with.push(("schema".into(), s(&sc))),
                                GrantOn::TablesIn(sc) => {
                                    with.push(("schema".into(), s(&sc)));
                                    with.push(("tables".into(), Toml::Boolean(true)));
                                }
                            }
                            "`postgres` grant"
                        }
                        Sql::Other(sql) => {
                            with.insert(0, ("action".into(), Toml::String("sql".into())));
                            with.push(("sql".into(), s(&sql)));
                            self.note(file, format!("{job}: `{sql}`"), "runs as SQL through the connection, as written: make it idempotent (IF NOT EXISTS, ON CONFLICT) so a second run changes nothing");
                            "`postgres` sql"
                        }
                    };
                    out.push((step("postgres", vec![conn.clone()], with), what.into()));
                }
            }
            Action::CreateTopic {
                via,
                bootstrap,
                topic,
                partitions,
                replication,
                configs,
            } => {
                self.kafka_connection(connections, &via, bootstrap.as_deref());
                let mut with = vec![
                    ("action".into(), Toml::String("create-topic".into())),
                    ("connection".into(), Toml::String("kafka".into())),
                    ("topic".into(), s(&topic)),
                ];
                if let Some(p) = partitions {
                    with.push(("partitions".into(), number(&p)));
                }
                if let Some(r) = replication {
                    with.push(("replication_factor".into(), number(&r)));
                }
                if !configs.is_empty() {
                    let table = configs
                        .into_iter()
                        .map(|(k, v)| (k, Toml::String(v)))
                        .collect();
                    with.push(("configs".into(), Toml::Table(table)));
                }
                out.push((
                    step("kafka", vec!["kafka".into()], with),
                    "`kafka` create-topic".into(),
                ));
            }
            Action::InitConsumer {
                via,
                bootstrap,
                topic,
                group,
                start,
            } => {
                self.kafka_connection(connections, &via, bootstrap.as_deref());
                self.note(file, format!("{job}: `--reset-offsets --to-{start}`"), format!("`init-consumer` commits `{start}` offsets only on partitions the group has none for; a reset also moves offsets already committed"));
                let with = vec![
                    ("action".into(), Toml::String("init-consumer".into())),
                    ("connection".into(), Toml::String("kafka".into())),
                    ("topic".into(), s(&topic)),
                    ("group".into(), s(&group)),
                    ("start".into(), Toml::String(start.into())),
                ];
                out.push((
                    step("kafka", vec!["kafka".into()], with),
                    "`kafka` init-consumer".into(),
                ));
            }
            Action::OllamaPull { via, model } => {
                connections
                    .entry("ollama".into())
                    .or_insert_with(|| Connection {
                        kind: "http",
                        settings: vec![(
                            "url".into(),
                            Toml::String("${{ env.OLLAMA_URL }}".into()),
                        )],
                        ..Connection::default()
                    });
                let host = via.container.unwrap_or_else(|| "localhost".into());
                self.env
                    .entry("OLLAMA_URL".into())
                    .or_insert_with(|| EnvEntry {
                        name: "OLLAMA_URL".into(),
                        secret: false,
                        example: format!("http://{host}:11434"),
                        why: format!("the Ollama server (`ollama pull` ran in `{host}`)"),
                    });
                let with = vec![
                    ("action".into(), Toml::String("pull".into())),
                    ("connection".into(), Toml::String("ollama".into())),
                    ("model".into(), s(&model)),
                ];
                out.push((
                    step("ollama", vec!["ollama".into()], with),
                    "`ollama` pull".into(),
                ));
            }
            Action::Noise(_) => {}
        }
        out
    }

    pub(super) fn postgres_connection(
        &mut self,
        connections: &mut IndexMap<String, Connection>,
        via: &shell::Via,
        user: Option<&str>,
        database: Option<&str>,
        host: Option<&str>,
        port: Option<&str>,
    ) -> String {
        let base = match user {
            Some(u) if !u.contains('$') => format!("pg_{}", env_name(u).to_lowercase()),
            _ => "pg".to_string(),
        };
        let server = host
            .map(str::to_string)
            .or_else(|| via.container.clone())
            .unwrap_or_else(|| "localhost".into());
        let secret = format!("{}_URL", base.to_uppercase());
        let example = format!(
            "postgres://{}:PASSWORD@{server}:{}/{}",
            user.unwrap_or("postgres"),
            port.unwrap_or("5432"),
            database.unwrap_or("postgres")
        );
        let mut name = base.clone();
        let mut n = 2;
        while let Some(existing) = self.env.get(&format!("{}_URL", name.to_uppercase())) {
            if existing.example == example {
                break;
            }
            name = format!("{base}_{n}");
            n += 1;
        }
        let secret = if name == base {
            secret
        } else {
            format!("{}_URL", name.to_uppercase())
        };
        connections
            .entry(name.clone())
            .or_insert_with(|| Connection {
                kind: "postgres",
                settings: vec![(
                    "url".into(),
                    Toml::String(format!("${{{{ secrets.{secret} }}}}")),
                )],
                ..Connection::default()
            });
        let via_text = match &via.container {
            Some(c) => format!(" in container `{c}`"),
            None => String::new(),
        };
        self.env.entry(secret.clone()).or_insert_with(|| EnvEntry {
            name: secret,
            secret: true,
            example,
            why: format!(
                "the server `psql` reached{via_text}, as a URL orch can reach (with the password)"
            ),
        });
        name
    }

    pub(super) fn kafka_connection(
        &mut self,
        connections: &mut IndexMap<String, Connection>,
        via: &shell::Via,
        bootstrap: Option<&str>,
    ) {
        connections
            .entry("kafka".into())
            .or_insert_with(|| Connection {
                kind: "kafka",
                settings: vec![(
                    "bootstrap".into(),
                    Toml::String("${{ env.KAFKA_BOOTSTRAP }}".into()),
                )],
                ..Connection::default()
            });
        let example = match (&via.container, bootstrap) {
            (Some(c), Some(b)) => b.replace("localhost", c).replace("127.0.0.1", c),
            (_, Some(b)) => b.to_string(),
            (Some(c), None) => format!("{c}:9092"),
            (None, None) => "localhost:9092".into(),
        };
        let why = match &via.container {
            Some(c) => format!("the broker the Kafka tools reached in `{c}`"),
            None => "the broker the Kafka tools reached".into(),
        };
        self.env
            .entry("KAFKA_BOOTSTRAP".into())
            .or_insert_with(|| EnvEntry {
                name: "KAFKA_BOOTSTRAP".into(),
                secret: false,
                example,
                why,
            });
    }
}

/// `line` with each `${{inputs.x}}` as the shell variable `$INPUT_X` (recorded in `env`):
/// inputs reach the shell as values, never spliced into its text. Inside single quotes, where
/// a shell expands nothing, the quotes are closed around it: `'"${INPUT_X}"'`.
fn inputs_as_variables(line: &str, env: &mut IndexMap<String, String>) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if let Some(m) = INPUT_TEMPLATE
            .captures(rest)
            .filter(|m| m.get(0).is_some_and(|w| w.start() == 0))
        {
            let name = &m[1];
            let var = format!("INPUT_{}", name.to_uppercase());
            env.insert(var.clone(), format!("${{{{ inputs.{name} }}}}"));
            if quote == Some('\'') {
                out.push_str(&format!("'\"${{{var}}}\"'"));
            } else {
                out.push_str(&format!("${{{var}}}"));
            }
            rest = &rest[m[0].len()..];
            continue;
        }
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if q == c => quote = None,
            (None | Some('"'), '\\') => {
                out.push(c);
                rest = &rest[1..];
                if let Some(next) = rest.chars().next() {
                    out.push(next);
                    rest = &rest[next.len_utf8()..];
                }
                continue;
            }
            _ => {}
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Variables a shell or image sets itself, never asked of `.env`.
const WELL_KNOWN: &[&str] = &[
    "ORCH_OUTPUT",
    "HOME",
    "PATH",
    "PWD",
    "OLDPWD",
    "USER",
    "SHELL",
    "HOSTNAME",
    "TERM",
    "LANG",
    "IFS",
    "RANDOM",
    "SECONDS",
    "LINENO",
    "UID",
    "EUID",
    "PPID",
    "TMPDIR",
];

/// Names a script assigns (`X=`, `export X=`, `for X in`, `read X`): its own, not the pipeline's.
fn assigned_in(script: &[String]) -> BTreeSet<String> {
    static ASSIGNED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?:^|[\s;&|(])([A-Za-z_][A-Za-z0-9_]*)=|\bfor\s+([A-Za-z_][A-Za-z0-9_]*)\s+in\b|\bread\s+(?:-\S+\s+)*([A-Za-z_][A-Za-z0-9_]*)")
            .expect("valid regex")
    });
    script
        .iter()
        .flat_map(|line| ASSIGNED.captures_iter(line).collect::<Vec<_>>())
        .filter_map(|c| {
            c.get(1)
                .or(c.get(2))
                .or(c.get(3))
                .map(|m| m.as_str().to_string())
        })
        .collect()
}

/// `line` with literal passwords (in URLs, `PASSWORD '...'`) shown as `***`, for the report.
pub(super) fn scrub(line: &str) -> String {
    static PASSWORDS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"(?i)([A-Za-z][A-Za-z0-9+.-]*://[^/@\s:'"]+:|PASSWORD\s+')([^/@\s'"$]+)"#)
            .expect("valid regex")
    });
    PASSWORDS.replace_all(line, "${1}***").into_owned()
}

/// `${{inputs.x}}` as written in the workflow: `${{ inputs.x }}`.
pub(crate) fn pretty(text: &str) -> String {
    static TEMPLATE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\$\{\{\s*([^}]*?)\s*\}\}").expect("valid regex"));
    TEMPLATE.replace_all(text, "$${{ $1 }}").into_owned()
}

fn strings(items: &[String]) -> Toml {
    Toml::Array(items.iter().map(|i| Toml::String(pretty(i))).collect())
}

/// A count: a number if literal, else the template (an input).
fn number(text: &str) -> Toml {
    match text.parse::<i64>() {
        Ok(n) => Toml::Integer(n),
        Err(_) => Toml::String(pretty(text)),
    }
}

/// `name` as an environment variable name.
fn env_name(name: &str) -> String {
    let out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let out = out.trim_matches('_').to_string();
    if out.is_empty() { "DB".into() } else { out }
}

/// `.` and `..` removed without touching the disk.
fn normalize(path: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The images a compose file names (the default of `${VAR:-default}`), and its `name:`.
fn compose_facts(path: &Path) -> (Vec<String>, Option<String>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (Vec::new(), None);
    };
    let Ok(doc) = serde_norway::from_str::<Value>(&text) else {
        return (Vec::new(), None);
    };
    static DEFAULT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}").expect("valid regex")
    });
    let mut images = Vec::new();
    if let Some(Value::Mapping(services)) = doc.get("services") {
        for (_, svc) in services {
            if let Some(image) = svc.get("image").and_then(Value::as_str) {
                let image = DEFAULT.replace_all(image, "$1").into_owned();
                let image = if image.contains('$') {
                    "*".to_string()
                } else {
                    image
                };
                if !images.contains(&image) {
                    images.push(image);
                }
            }
        }
    }
    let name = doc.get("name").and_then(Value::as_str).map(str::to_string);
    (images, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_reach_the_shell_as_variables_whatever_the_quoting() {
        let mut env = IndexMap::new();
        let line = inputs_as_variables(
            r#"curl -d '{"n":"${{inputs.n}}"}' "$URL/${{inputs.path}}" x\'${{inputs.n}}"#,
            &mut env,
        );
        assert_eq!(
            line,
            r#"curl -d '{"n":"'"${INPUT_N}"'"}' "$URL/${INPUT_PATH}" x\'${INPUT_N}"#
        );
        assert_eq!(env["INPUT_N"], "${{ inputs.n }}");
        assert_eq!(env["INPUT_PATH"], "${{ inputs.path }}");
    }

    #[test]
    fn passwords_are_never_quoted_in_the_report() {
        assert_eq!(
            scrub(r#"psql "postgres://app:s3cr3t@db/x" -c "ALTER USER a PASSWORD 'hunter2'""#),
            r#"psql "postgres://app:***@db/x" -c "ALTER USER a PASSWORD '***'""#
        );
        assert_eq!(scrub("echo $PASSWORD"), "echo $PASSWORD");
    }
}
