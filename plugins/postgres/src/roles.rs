//! Roles, databases and grants: each action reads what the server has and changes only what
//! differs, so running it again changes nothing.

use crate::db::{Db, check_name, text};
use orch_sdk::Cx;
use orch_sdk::postgres::Value;
use orch_sdk::{ChangeKind, StepError};

const PRIVILEGES: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
    "CREATE",
    "CONNECT",
    "TEMPORARY",
    "TEMP",
    "USAGE",
    "ALL",
    "ALL PRIVILEGES",
];

/// A strong random password: 32 characters of [A-Za-z0-9], from the host's CSPRNG.
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        for b in orch_sdk::wasi::random::random::get_random_bytes(64) {
            // 248 = 4 * 62: reject the tail so every character is equally likely.
            if b < 248 && out.len() < 32 {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    out
}

pub fn create_user(
    db: &Db,
    user: &str,
    password: Option<String>,
    rotate: bool,
    cx: &mut Cx,
) -> Result<(), StepError> {
    check_name("role", user)?;
    let exists = db.role_exists(user)?;
    cx.output("user", user);
    cx.output("created", !exists);
    let (verb, kind) = match (exists, rotate) {
        (false, _) => ("CREATE ROLE %I WITH LOGIN PASSWORD %L", ChangeKind::Create),
        (true, true) => ("ALTER ROLE %I WITH LOGIN PASSWORD %L", ChangeKind::Update),
        (true, false) => {
            let can_login = matches!(
                db.scalar(
                    "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
                    &[text(user)]
                )?,
                Some(Value::Boolean(true))
            );
            if !can_login {
                let sql = db.format("ALTER ROLE %I WITH LOGIN", &[text(user)])?;
                if cx.change(ChangeKind::Update, format!("role {user}"), &sql) {
                    db.execute(&sql, &[])?;
                }
            }
            return Ok(());
        }
    };
    let shown = db.format(&verb.replace("%L", "'***'"), &[text(user)])?;
    if cx.change(kind, format!("role {user}"), shown) {
        let password = password.unwrap_or_else(generate_password);
        let sql = db.format(verb, &[text(user), text(&password)])?;
        match db.execute(&sql, &[]) {
            // 42710: created concurrently by someone else; converge by setting the password.
            Err(StepError::Failed(m)) if m.contains("42710") => {
                let sql = db.format(
                    "ALTER ROLE %I WITH LOGIN PASSWORD %L",
                    &[text(user), text(&password)],
                )?;
                db.execute(&sql, &[])?;
            }
            other => {
                other?;
            }
        }
        cx.secret_output("password", &password);
        cx.output("rotated", exists);
    }
    Ok(())
}

pub fn create_db(
    db: &Db,
    name: &str,
    owner: Option<&str>,
    encoding: Option<&str>,
    template: Option<&str>,
    cx: &mut Cx,
) -> Result<(), StepError> {
    check_name("database", name)?;
    if let Some(owner) = owner {
        check_name("role", owner)?;
        if cx.applying() && !db.role_exists(owner)? {
            return Err(StepError::Failed(format!(
                "owner role `{owner}` does not exist: create it first (action = \"create-user\")"
            )));
        }
    }
    let current = db.rows(
        "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
        &[text(name)],
        Some(1),
    )?;
    cx.output("database", name);
    let sql = match current.rows.into_iter().next() {
        None => {
            let mut template_sql = String::from("CREATE DATABASE %I");
            let mut args = vec![text(name)];
            for (clause, value) in [
                (" OWNER %I", owner),
                (" ENCODING %L", encoding),
                (" TEMPLATE %I", template),
            ] {
                if let Some(v) = value {
                    template_sql.push_str(clause);
                    args.push(text(v));
                }
            }
            cx.output("created", true);
            Some((ChangeKind::Create, db.format(&template_sql, &args)?))
        }
        Some(row) => {
            cx.output("created", false);
            let current_owner = match row.into_iter().next() {
                Some(Value::Text(o)) => o,
                _ => String::new(),
            };
            match owner {
                Some(o) if o != current_owner => Some((
                    ChangeKind::Update,
                    db.format("ALTER DATABASE %I OWNER TO %I", &[text(name), text(o)])?,
                )),
                _ => None,
            }
        }
    };
    if let Some((kind, sql)) = sql
        && cx.change(kind, format!("database {name}"), &sql)
    {
        match db.execute(&sql, &[]) {
            // 42P04: created concurrently: the next run converges the owner.
            Err(StepError::Failed(m)) if m.contains("42P04") => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}

pub fn grant(
    db: &Db,
    role: &str,
    privileges: &[String],
    database: Option<&str>,
    schema: Option<&str>,
    tables: bool,
    cx: &mut Cx,
) -> Result<(), StepError> {
    check_name("role", role)?;
    let privileges: Vec<String> = privileges.iter().map(|p| p.trim().to_uppercase()).collect();
    if privileges.is_empty() {
        return Err(StepError::InvalidConfig("`privileges` is empty".into()));
    }
    if let Some(bad) = privileges
        .iter()
        .find(|p| !PRIVILEGES.contains(&p.as_str()))
    {
        return Err(StepError::InvalidConfig(format!(
            "unknown privilege `{bad}`; use one of {}",
            PRIVILEGES.join(", ")
        )));
    }
    let list = privileges.join(", ");
    let (resource, template, object, missing_sql) = match (database, schema, tables) {
        (Some(d), None, false) => (
            format!("database {d}"),
            format!("GRANT {list} ON DATABASE %I TO %I"),
            d,
            "SELECT p FROM json_array_elements_text($3::text::json) p WHERE NOT has_database_privilege($1, $2, replace(p, 'ALL PRIVILEGES', 'CREATE, CONNECT, TEMPORARY'))",
        ),
        (None, Some(s), false) => (
            format!("schema {s}"),
            format!("GRANT {list} ON SCHEMA %I TO %I"),
            s,
            "SELECT p FROM json_array_elements_text($3::text::json) p WHERE NOT has_schema_privilege($1, $2, replace(p, 'ALL PRIVILEGES', 'CREATE, USAGE'))",
        ),
        (None, Some(s), true) => (
            format!("all tables in schema {s}"),
            format!("GRANT {list} ON ALL TABLES IN SCHEMA %I TO %I"),
            s,
            "SELECT t.tablename FROM pg_tables t, json_array_elements_text($3::text::json) p \
             WHERE t.schemaname = $2 AND NOT has_table_privilege($1, format('%I.%I', t.schemaname, t.tablename), \
             replace(p, 'ALL PRIVILEGES', 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'))",
        ),
        _ => {
            return Err(StepError::InvalidConfig(
                "set `database`, or `schema` (with `tables = true` for all its tables)".into(),
            ));
        }
    };
    check_name("object", object)?;
    let privileges_json = serde_json::to_string(&privileges).unwrap_or_default();
    let missing = db.rows(
        missing_sql,
        &[text(role), text(object), text(&privileges_json)],
        Some(1),
    )?;
    let granted = !missing.rows.is_empty();
    if granted {
        let sql = db.format(&template, &[text(object), text(role)])?;
        if cx.change(ChangeKind::Update, resource, &sql) {
            db.execute(&sql, &[])?;
        }
    }
    cx.output("granted", granted);
    Ok(())
}
