//! What one `script` line does, when it is one of the commands a built-in plugin does better:
//! `docker compose up -d`, `psql -c` with role, database and grant statements,
//! `kafka-topics.sh --create`, `kafka-consumer-groups.sh --reset-offsets`, `ollama pull`,
//! directly or through `docker exec CONTAINER`. Anything else (pipes, `&&`, substitutions,
//! other programs) is left for a `container` step.

use regex::Regex;
use std::sync::LazyLock;

/// Where a command ran: the `docker exec` container (or compose service), if any.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Via {
    pub container: Option<String>,
}

/// A recognised line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    Deploy {
        project: Option<String>,
        file: Option<String>,
        profiles: Vec<String>,
        remove_orphans: bool,
        pull: Option<String>,
        /// Services named on the command line (deploy converges them all).
        services: Vec<String>,
    },
    Psql {
        via: Via,
        user: Option<String>,
        database: Option<String>,
        host: Option<String>,
        port: Option<String>,
        statements: Vec<Sql>,
    },
    CreateTopic {
        via: Via,
        bootstrap: Option<String>,
        topic: String,
        partitions: Option<String>,
        replication: Option<String>,
        configs: Vec<(String, String)>,
    },
    InitConsumer {
        via: Via,
        bootstrap: Option<String>,
        topic: String,
        group: String,
        start: &'static str,
    },
    OllamaPull {
        via: Via,
        model: String,
    },
    /// A line that only prints or checks (`echo`, `docker info`): dropped when the job's
    /// other lines became built-in steps. The reason.
    Noise(&'static str),
}

/// One SQL statement of a `psql -c`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Sql {
    CreateUser {
        user: String,
        password: Option<String>,
    },
    CreateDb {
        name: String,
        owner: Option<String>,
        encoding: Option<String>,
        template: Option<String>,
    },
    Grant {
        privileges: Vec<String>,
        role: String,
        on: GrantOn,
    },
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GrantOn {
    Database(String),
    Schema(String),
    TablesIn(String),
}

/// The words of `line` if it is one simple command (redirections to /dev/null allowed), with
/// `$VAR` / `${VAR}` outside single quotes replaced by `expand(VAR)`; `None` for anything a
/// shell would do more with (pipes, lists, substitutions, globs, other redirections).
pub(crate) fn words(line: &str, expand: &dyn Fn(&str) -> Option<String>) -> Option<Vec<String>> {
    let chars: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('\''), _) => word.push(c),
            (Some('"'), '\\') if matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`')) => {
                word.push(chars[i + 1]);
                i += 1;
            }
            (_, '$') => {
                let (text, used) = variable(&chars[i..], expand)?;
                // Unquoted, a shell splits the value into words: not a simple command any more.
                if quote.is_none()
                    && !text.starts_with("${{")
                    && text.contains([' ', '\t', '\n', '*', '?'])
                {
                    return None;
                }
                word.push_str(&text);
                in_word = true;
                i += used;
                continue;
            }
            (Some(_), '`') => return None,
            (Some(_), _) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                word.push(*chars.get(i + 1)?);
                in_word = true;
                i += 1;
            }
            (None, ' ' | '\t') => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '|' | '&' | ';' | '<' | '>' | '`' | '(' | ')' | '*' | '?' | '[' | '#' | '~') => {
                if c == '>' || c == '&' {
                    // `>/dev/null`, `2>&1`, `2>/dev/null`, `&>/dev/null`: output only.
                    let rest: String = chars[i..].iter().collect();
                    let taken = ["&>/dev/null", ">/dev/null", "> /dev/null", ">&1", ">&2"]
                        .into_iter()
                        .find(|r| rest.starts_with(r))?;
                    if in_word && (word == "2" || word == "1") {
                        word.clear();
                        in_word = false;
                    }
                    i += taken.chars().count();
                    continue;
                }
                return None;
            }
            (None, _) => {
                word.push(c);
                in_word = true;
            }
        }
        i += 1;
    }
    if quote.is_some() {
        return None;
    }
    if in_word {
        words.push(word);
    }
    (!words.is_empty()).then_some(words)
}

/// `$NAME`, `${NAME}` or an orch template `${{ … }}` at the start of `chars`: its text and
/// length. `$(` (a substitution) is refused.
fn variable(chars: &[char], expand: &dyn Fn(&str) -> Option<String>) -> Option<(String, usize)> {
    if chars.get(1) == Some(&'{') && chars.get(2) == Some(&'{') {
        let text: String = chars.iter().collect();
        let end = text.find("}}")? + 2;
        return Some((text[..end].to_string(), text[..end].chars().count()));
    }
    let braced = chars.get(1) == Some(&'{');
    let start = if braced { 2 } else { 1 };
    let mut end = start;
    while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
        end += 1;
    }
    if end == start {
        // A lone `$` is literal; `$(`, `$?`, `$1`... are not for us.
        return match chars.get(1) {
            None | Some(' ' | '"' | '\'') => Some(("$".into(), 1)),
            _ => None,
        };
    }
    let name: String = chars[start..end].iter().collect();
    if braced {
        if chars.get(end) != Some(&'}') {
            return None; // ${VAR:-default} and friends
        }
        end += 1;
    }
    Some((expand(&name)?, end))
}

/// What `words` does, if a built-in plugin does it.
pub(crate) fn recognise(words: &[String]) -> Option<Action> {
    let (via, command) = unwrap_exec(words)?;
    let program = command.first()?.rsplit('/').next()?.to_string();
    let args = &command[1..];
    match program.as_str() {
        "docker"
            if args.first().map(String::as_str) == Some("compose") && via.container.is_none() =>
        {
            compose_up(&args[1..])
        }
        "docker-compose" if via.container.is_none() => compose_up(args),
        "docker" if via.container.is_none() => match args.first().map(String::as_str) {
            Some("info" | "version" | "ps") if args.len() == 1 => Some(Action::Noise(
                "checks the engine; orch's docker connection does that",
            )),
            _ => None,
        },
        "psql" => psql(via, args),
        "kafka-topics.sh" | "kafka-topics" => kafka_topics(via, args),
        "kafka-consumer-groups.sh" | "kafka-consumer-groups" => consumer_groups(via, args),
        "ollama" if args.len() == 2 && args[0] == "pull" => Some(Action::OllamaPull {
            via,
            model: args[1].clone(),
        }),
        "echo" | "printf" | "true" | ":" | "env" | "printenv" | "pwd" | "date" | "whoami" => {
            Some(Action::Noise("only prints"))
        }
        _ => None,
    }
}

/// `docker exec [flags] CONTAINER CMD...` or `docker compose [-p P] exec [-T] SERVICE CMD...`:
/// the container and the command; other lines as they are.
fn unwrap_exec(words: &[String]) -> Option<(Via, Vec<String>)> {
    let is = |i: usize, w: &str| words.get(i).map(String::as_str) == Some(w);
    let (mut i, takes_value): (usize, &[&str]) = if is(0, "docker") && is(1, "exec") {
        (
            2,
            &[
                "-u",
                "--user",
                "-e",
                "--env",
                "-w",
                "--workdir",
                "--env-file",
            ],
        )
    } else if is(0, "docker") && is(1, "compose") || is(0, "docker-compose") {
        let mut i = if is(0, "docker") { 2 } else { 1 };
        while words.get(i).is_some_and(|w| w.starts_with('-')) {
            i += if ["-p", "--project-name", "-f", "--file"].contains(&words[i].as_str()) {
                2
            } else {
                1
            };
        }
        if !is(i, "exec") {
            return Some((Via::default(), words.to_vec()));
        }
        (
            i + 1,
            &["-u", "--user", "-e", "--env", "-w", "--workdir", "--index"],
        )
    } else {
        return Some((Via::default(), words.to_vec()));
    };
    while let Some(flag) = words.get(i).filter(|w| w.starts_with('-')) {
        i += if takes_value.contains(&flag.as_str()) {
            2
        } else {
            1
        };
    }
    let container = words.get(i)?.clone();
    let command = words.get(i + 1..)?.to_vec();
    if command.is_empty() {
        return None;
    }
    Some((
        Via {
            container: Some(container),
        },
        command,
    ))
}

/// Flags as given, in order: (flag, value).
type Flags = Vec<(String, Option<String>)>;

/// Parse `args` with `with_value` flags taking the next word (or `--flag=value`); the flags in
/// order and the other words. `None` if a flag is not in `known`.
fn flags(args: &[String], with_value: &[&str], known: &[&str]) -> Option<(Flags, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if let Some((flag, value)) = arg.split_once('=').filter(|(f, _)| f.starts_with("--")) {
            if !with_value.contains(&flag) {
                return None;
            }
            out.push((flag.to_string(), Some(value.to_string())));
        } else if arg.starts_with("--") || (arg.starts_with('-') && arg.len() == 2) {
            if with_value.contains(&arg.as_str()) {
                out.push((arg.clone(), Some(args.get(i + 1)?.clone())));
                i += 1;
            } else if known.contains(&arg.as_str()) {
                out.push((arg.clone(), None));
            } else {
                return None;
            }
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            // Bundled short flags, the last of which may take a value: `-tAc "SQL"`.
            let chars: Vec<char> = short.chars().collect();
            for (n, c) in chars.iter().enumerate() {
                let flag = format!("-{c}");
                if with_value.contains(&flag.as_str()) {
                    let inline: String = chars[n + 1..].iter().collect();
                    let value = if inline.is_empty() {
                        i += 1;
                        args.get(i)?.clone()
                    } else {
                        inline
                    };
                    out.push((flag, Some(value)));
                    break;
                } else if known.contains(&flag.as_str()) {
                    out.push((flag, None));
                } else {
                    return None;
                }
            }
        } else {
            rest.push(arg.clone());
        }
        i += 1;
    }
    Some((out, rest))
}

fn last(flags: &Flags, names: &[&str]) -> Option<String> {
    flags
        .iter()
        .rev()
        .find(|(f, _)| names.contains(&f.as_str()))
        .and_then(|(_, v)| v.clone())
}

fn has(flags: &Flags, names: &[&str]) -> bool {
    flags.iter().any(|(f, _)| names.contains(&f.as_str()))
}

fn compose_up(args: &[String]) -> Option<Action> {
    let globals = [
        "-p",
        "--project-name",
        "-f",
        "--file",
        "--profile",
        "--env-file",
        "--project-directory",
    ];
    let up = args.iter().position(|a| a == "up")?;
    let (before, _) = flags(&args[..up], &globals, &[])?;
    let (after, services) = flags(
        &args[up + 1..],
        &["--pull"],
        &[
            "-d",
            "--detach",
            "--wait",
            "--remove-orphans",
            "--quiet-pull",
            "--no-color",
        ],
    )?;
    if !has(&after, &["-d", "--detach", "--wait"]) {
        return None; // a foreground `up` never ends
    }
    let files: Vec<String> = before
        .iter()
        .filter(|(f, _)| f == "-f" || f == "--file")
        .filter_map(|(_, v)| v.clone())
        .collect();
    if files.len() > 1 || has(&before, &["--env-file", "--project-directory"]) {
        return None;
    }
    Some(Action::Deploy {
        project: last(&before, &["-p", "--project-name"]),
        file: files.into_iter().next(),
        profiles: before
            .iter()
            .filter(|(f, _)| f == "--profile")
            .filter_map(|(_, v)| v.clone())
            .collect(),
        remove_orphans: has(&after, &["--remove-orphans"]),
        pull: last(&after, &["--pull"]),
        services,
    })
}

fn psql(via: Via, args: &[String]) -> Option<Action> {
    let (flags, rest) = flags(
        args,
        &[
            "-U",
            "--username",
            "-d",
            "--dbname",
            "-h",
            "--host",
            "-p",
            "--port",
            "-c",
            "--command",
            "-v",
            "--set",
            "--variable",
        ],
        &[
            "-X",
            "--no-psqlrc",
            "-q",
            "--quiet",
            "-t",
            "-A",
            "-w",
            "--no-password",
            "-e",
            "-a",
        ],
    )?;
    let sql: Vec<String> = flags
        .iter()
        .filter(|(f, _)| f == "-c" || f == "--command")
        .filter_map(|(_, v)| v.clone())
        .collect();
    // A URL or `key=value` connection string as the database: its password would be copied.
    if sql.is_empty() || rest.len() > 1 || rest.iter().any(|r| r.contains("://") || r.contains('='))
    {
        return None;
    }
    // Dollar quoting and comments need a real SQL lexer to split: leave them to psql.
    if sql
        .iter()
        .any(|s| s.contains("$$") || s.contains("--") || s.contains("/*"))
    {
        return None;
    }
    let statements: Vec<Sql> = sql
        .iter()
        .flat_map(|s| split_sql(s))
        .map(|s| statement(&s))
        .collect();
    // Other SQL runs as written through the `sql` action: no inputs spliced into its text (an
    // injection), no password copied into the workflow.
    let unsafe_other = |s: &Sql| match s {
        Sql::Other(sql) => sql.contains("${{") || sql.to_ascii_uppercase().contains("PASSWORD"),
        _ => false,
    };
    if statements.is_empty() || statements.iter().any(unsafe_other) {
        return None;
    }
    Some(Action::Psql {
        via,
        user: last(&flags, &["-U", "--username"]),
        database: last(&flags, &["-d", "--dbname"]).or_else(|| rest.first().cloned()),
        host: last(&flags, &["-h", "--host"]),
        port: last(&flags, &["-p", "--port"]),
        statements,
    })
}

/// Statements of a `-c` text, split at `;` outside quotes.
fn split_sql(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (None, ';') => out.push(std::mem::take(&mut current)),
            (None, '\'' | '"') => {
                quote = Some(c);
                current.push(c);
            }
            (Some(q), _) if q == c => {
                quote = None;
                current.push(c);
            }
            _ => current.push(c),
        }
    }
    out.push(current);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// An identifier: `"quoted"`, a plain name (folded to lower case, as PostgreSQL does), or an
/// orch template (an input).
const IDENT: &str = r#"("(?:[^"]|"")+"|\$\{\{[^}]*\}\}|[A-Za-z_][A-Za-z0-9_$]*)"#;

static CREATE_ROLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?is)^CREATE\s+(USER|ROLE)\s+{IDENT}(?:\s+WITH)?((?:\s+\S+(?:\s+'(?:[^']|'')*')?)*)$"
    ))
    .expect("valid regex")
});
static ROLE_OPTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?is)^\s*(LOGIN\b|PASSWORD\s+'((?:[^']|'')*)'|PASSWORD\s+(\$\{\{[^}]*\}\}))")
        .expect("valid regex")
});
static CREATE_DB: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?is)^CREATE\s+DATABASE\s+{IDENT}(?:\s+WITH)?(.*)$"
    ))
    .expect("valid regex")
});
static DB_OPTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?is)^\s*(OWNER|TEMPLATE|ENCODING)\s*=?\s*(?:'([^']*)'|{IDENT})"
    ))
    .expect("valid regex")
});
static GRANT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?is)^GRANT\s+(.+?)\s+ON\s+(DATABASE|SCHEMA|ALL\s+TABLES\s+IN\s+SCHEMA)\s+{IDENT}\s+TO\s+{IDENT}$"
    ))
    .expect("valid regex")
});

/// A name as PostgreSQL reads it.
fn ident(text: &str) -> String {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None if text.starts_with("${{") => text.to_string(),
        None => text.to_lowercase(),
    }
}

fn statement(sql: &str) -> Sql {
    let other = || Sql::Other(sql.to_string());
    if let Some(c) = CREATE_ROLE.captures(sql) {
        let mut rest = c[3].to_string();
        let mut login = c[1].eq_ignore_ascii_case("user");
        let mut password = None;
        while !rest.trim().is_empty() {
            let Some(o) = ROLE_OPTION.captures(&rest) else {
                return other(); // CREATEDB, SUPERUSER, IN ROLE...: not what create-user does
            };
            if o[1].eq_ignore_ascii_case("login") {
                login = true;
            } else {
                password = o.get(2).or(o.get(3)).map(|p| p.as_str().replace("''", "'"));
            }
            rest = rest[o.get(0).map_or(0, |m| m.end())..].to_string();
        }
        if !login {
            return other();
        }
        return Sql::CreateUser {
            user: ident(&c[2]),
            password,
        };
    }
    if let Some(c) = CREATE_DB.captures(sql) {
        let (mut owner, mut encoding, mut template) = (None, None, None);
        let mut rest = c[2].to_string();
        while !rest.trim().is_empty() {
            let Some(o) = DB_OPTION.captures(&rest) else {
                return other();
            };
            let value = o
                .get(2)
                .map(|v| v.as_str().to_string())
                .or_else(|| o.get(3).map(|v| ident(v.as_str())));
            match o[1].to_ascii_uppercase().as_str() {
                "OWNER" => owner = value,
                "TEMPLATE" => template = value,
                _ => encoding = value,
            }
            rest = rest[o.get(0).map_or(0, |m| m.end())..].to_string();
        }
        return Sql::CreateDb {
            name: ident(&c[1]),
            owner,
            encoding,
            template,
        };
    }
    if let Some(c) = GRANT.captures(sql) {
        let privileges: Vec<String> = c[1]
            .split(',')
            .map(|p| {
                let p = p
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_uppercase();
                if p == "ALL" {
                    "ALL PRIVILEGES".into()
                } else {
                    p
                }
            })
            .collect();
        let object = ident(&c[3]);
        let on = match c[2]
            .split_whitespace()
            .next()
            .map(str::to_uppercase)
            .as_deref()
        {
            Some("DATABASE") => GrantOn::Database(object),
            Some("SCHEMA") => GrantOn::Schema(object),
            _ => GrantOn::TablesIn(object),
        };
        return Sql::Grant {
            privileges,
            role: ident(&c[4]),
            on,
        };
    }
    other()
}

fn kafka_topics(via: Via, args: &[String]) -> Option<Action> {
    let (flags, rest) = flags(
        args,
        &[
            "--bootstrap-server",
            "--topic",
            "--partitions",
            "--replication-factor",
            "--config",
        ],
        &["--create", "--if-not-exists", "--alter"],
    )?;
    let creates =
        has(&flags, &["--create"]) || (has(&flags, &["--alter"]) && has(&flags, &["--partitions"]));
    if !creates || !rest.is_empty() {
        return None;
    }
    let mut configs = Vec::new();
    for (flag, value) in &flags {
        if flag == "--config" {
            let (k, v) = value.as_deref()?.split_once('=')?;
            configs.push((k.to_string(), v.to_string()));
        }
    }
    Some(Action::CreateTopic {
        via,
        bootstrap: last(&flags, &["--bootstrap-server"]),
        topic: last(&flags, &["--topic"])?,
        partitions: last(&flags, &["--partitions"]),
        replication: last(&flags, &["--replication-factor"]),
        configs,
    })
}

fn consumer_groups(via: Via, args: &[String]) -> Option<Action> {
    let (flags, rest) = flags(
        args,
        &["--bootstrap-server", "--group", "--topic"],
        &[
            "--reset-offsets",
            "--to-earliest",
            "--to-latest",
            "--execute",
        ],
    )?;
    if !rest.is_empty() || !has(&flags, &["--reset-offsets"]) || !has(&flags, &["--execute"]) {
        return None;
    }
    let start = match (
        has(&flags, &["--to-earliest"]),
        has(&flags, &["--to-latest"]),
    ) {
        (true, false) => "earliest",
        (false, true) => "latest",
        _ => return None,
    };
    Some(Action::InitConsumer {
        via,
        bootstrap: last(&flags, &["--bootstrap-server"]),
        topic: last(&flags, &["--topic"])?,
        group: last(&flags, &["--group"])?,
        start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Option<Vec<String>> {
        words(line, &|name| match name {
            "PW" => Some("${{secrets.PW}}".into()),
            "CI_COMMIT_SHA" => None,
            "ARGS" => Some("-U a -d b".into()),
            other => Some(format!("<{other}>")),
        })
    }

    fn action(line: &str) -> Option<Action> {
        recognise(&split(line)?)
    }

    #[test]
    fn words_follow_the_shell_quoting_and_refuse_what_a_shell_would_do_more_with() {
        assert_eq!(
            split(r#"psql -c "CREATE USER ${{inputs.u}} PASSWORD '$PW'" 'no $PW' a\ b"#).unwrap(),
            [
                "psql",
                "-c",
                "CREATE USER ${{inputs.u}} PASSWORD '${{secrets.PW}}'",
                "no $PW",
                "a b"
            ]
        );
        assert_eq!(
            split("docker info > /dev/null 2>&1").unwrap(),
            ["docker", "info"]
        );
        for line in [
            "echo $CI_COMMIT_SHA",
            "a | b",
            "a && b",
            "a; b",
            "echo $(id)",
            "ls *.sql",
            "x > out.txt",
            "echo ${A:-b}",
            "echo 'open",
        ] {
            assert_eq!(split(line), None, "{line}");
        }
    }

    #[test]
    fn the_seed_lines_are_recognised_through_docker_exec() {
        let Some(Action::Psql {
            via,
            user,
            statements,
            ..
        }) = action(
            r#"docker exec datalab-postgres-1 psql -U admin -d postgres -v ON_ERROR_STOP=1 -c "CREATE USER ${{inputs.u}} WITH LOGIN PASSWORD '$PW';""#,
        )
        else {
            panic!("not psql")
        };
        assert_eq!(via.container.as_deref(), Some("datalab-postgres-1"));
        assert_eq!(user.as_deref(), Some("admin"));
        assert_eq!(
            statements,
            [Sql::CreateUser {
                user: "${{inputs.u}}".into(),
                password: Some("${{secrets.PW}}".into())
            }]
        );
        assert_eq!(
            action(r#"docker exec pg psql -c "CREATE DATABASE Sales OWNER = ${{inputs.u}} ENCODING 'UTF8'; GRANT ALL ON DATABASE sales TO ${{inputs.u}}""#)
                .map(|a| match a { Action::Psql { statements, .. } => statements, _ => vec![] }),
            Some(vec![
                Sql::CreateDb { name: "sales".into(), owner: Some("${{inputs.u}}".into()), encoding: Some("UTF8".into()), template: None },
                Sql::Grant { privileges: vec!["ALL PRIVILEGES".into()], role: "${{inputs.u}}".into(), on: GrantOn::Database("sales".into()) },
            ])
        );
        assert!(matches!(
            action("docker exec k /opt/kafka/bin/kafka-topics.sh --bootstrap-server localhost:9092 --create --if-not-exists --topic t --partitions 3 --replication-factor 1 --config retention.ms=1000"),
            Some(Action::CreateTopic { topic, partitions: Some(p), configs, .. }) if topic == "t" && p == "3" && configs == [("retention.ms".into(), "1000".into())]
        ));
        assert!(matches!(
            action("docker exec k kafka-consumer-groups.sh --bootstrap-server localhost:9092 --group g --topic t --reset-offsets --to-earliest --execute"),
            Some(Action::InitConsumer { group, start: "earliest", .. }) if group == "g"
        ));
        assert!(matches!(
            action("docker exec datalab-ollama-1 ollama pull llama3.2"),
            Some(Action::OllamaPull { via: Via { container: Some(c) }, model }) if c == "datalab-ollama-1" && model == "llama3.2"
        ));
        assert_eq!(
            action("docker compose -p datalab -f infra/compose.yml up -d --remove-orphans"),
            Some(Action::Deploy {
                project: Some("datalab".into()),
                file: Some("infra/compose.yml".into()),
                profiles: vec![],
                remove_orphans: true,
                pull: None,
                services: vec![],
            })
        );
    }

    #[test]
    fn near_misses_stay_shell() {
        for line in [
            "docker compose up",                      // foreground
            "docker compose -f a.yml -f b.yml up -d", // two files
            "psql -f schema.sql",                     // a file
            "kafka-topics.sh --list --bootstrap-server k:9092",
            "kafka-consumer-groups.sh --group g --topic t --reset-offsets --to-earliest", // dry run
            "kafka-consumer-groups.sh --group g --topic t --reset-offsets --shift-by 2 --execute",
            "docker exec c ls",
            "mc mb local/raw",
        ] {
            assert_eq!(action(line), None, "{line}");
        }
        assert!(
            matches!(
                action(r#"psql -c "CREATE ROLE readers""#),
                Some(Action::Psql { statements, .. }) if matches!(&statements[0], Sql::Other(_))
            ),
            "a role without LOGIN is plain SQL"
        );
        assert!(matches!(action("docker info"), Some(Action::Noise(_))));
        for line in [
            r#"psql "postgres://u:pw@h/db" -c "CREATE DATABASE x""#, // a URL as the database
            r#"psql -c "ALTER USER x PASSWORD 'pw'""#,               // a password in other SQL
            r#"psql -c "DELETE FROM t WHERE id = ${{inputs.id}}""#,  // an input in other SQL
            r#"psql -c "DO $$ BEGIN PERFORM 1; END $$""#,
            "psql $ARGS -c \"CREATE DATABASE x\"", // `$ARGS` splits into words
        ] {
            assert_eq!(action(line), None, "{line}");
        }
        assert!(
            action(r#"psql -c "CREATE ROLE r NOLOGIN PASSWORD 'x'""#).is_none(),
            "NOLOGIN is not LOGIN"
        );
        assert!(matches!(action("echo hi"), Some(Action::Noise(_))));
    }
}
