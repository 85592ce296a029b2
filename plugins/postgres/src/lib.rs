//! Built-in `postgres`: idempotent roles, databases and grants, plus SQL, query (extract) and
//! load (bulk insert / upsert) for ETL. Every statement goes through the host's `postgres`
//! interface on a connection the step is granted; the plugin never sees the URL or password.
//!
//! Names are quoted by the server (`format('%I')`, `%L`), so any text is either created
//! literally or rejected by PostgreSQL, never executed.

use orch_sdk::postgres::{self, Connection, Value};
use orch_sdk::{Change, ChangeKind, Output, Plugin, StepContext, StepError};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};

/// `with` of a `postgres` step; `action` picks the variant.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
enum Config {
    /// A role with LOGIN. Password given (from a secret) or generated and returned as the secret
    /// output `password`. An existing role is kept unless `rotate = true`.
    CreateUser {
        connection: String,
        user: String,
        #[serde(default)]
        password: Option<String>,
        #[serde(default)]
        rotate: bool,
    },
    /// A database with an owner; an existing database gets its owner ensured.
    CreateDb {
        connection: String,
        name: String,
        #[serde(default)]
        owner: Option<String>,
        #[serde(default)]
        encoding: Option<String>,
        #[serde(default)]
        template: Option<String>,
    },
    /// Privileges to a role on a database, a schema, or all tables of a schema.
    Grant {
        connection: String,
        role: String,
        privileges: Vec<String>,
        #[serde(default)]
        database: Option<String>,
        #[serde(default)]
        schema: Option<String>,
        /// Grant on all tables of `schema` instead of the schema itself.
        #[serde(default)]
        tables: bool,
    },
    /// Run SQL (migrations, transforms). Without params several statements may be given.
    Sql {
        connection: String,
        sql: String,
        #[serde(default)]
        params: Vec<Json>,
        /// Run inside one transaction (default true).
        #[serde(default = "yes")]
        transaction: bool,
    },
    /// Return rows as the output `rows` (a list of objects), at most `limit`.
    Query {
        connection: String,
        sql: String,
        #[serde(default)]
        params: Vec<Json>,
        #[serde(default = "default_limit")]
        limit: u32,
    },
    /// Insert rows (objects keyed by column) into a table in one transaction, in batches;
    /// with `key`, rows whose key exists are updated instead (upsert).
    Load(#[allow(dead_code, reason = "schema only: parsed as LoadConfig")] LoadSchema),
}

/// The schema of `load` (parsed as [`LoadConfig`], which keeps rows as raw JSON).
#[derive(Deserialize, schemars::JsonSchema)]
#[allow(dead_code, reason = "only its schema is used")]
struct LoadSchema {
    connection: String,
    table: String,
    schema: Option<String>,
    rows: Vec<Map<String, Json>>,
    key: Option<Vec<String>>,
    batch_size: Option<usize>,
}

/// `load` as parsed: rows stay raw JSON and are passed through to the server unparsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadConfig {
    #[allow(dead_code, reason = "the tag, already matched")]
    action: String,
    connection: String,
    table: String,
    #[serde(default)]
    schema: Option<String>,
    rows: Vec<Box<RawValue>>,
    #[serde(default)]
    key: Vec<String>,
    #[serde(default = "default_batch")]
    batch_size: usize,
}

/// Parse `with`: `load` separately, because an internally tagged enum cannot hold raw JSON.
fn parse(config: &str) -> Result<Result<Config, LoadConfig>, StepError> {
    if orch_sdk::action(config)? == "load" {
        Ok(Err(orch_sdk::config(config)?))
    } else {
        Ok(Ok(orch_sdk::config(config)?))
    }
}

fn yes() -> bool {
    true
}
fn default_limit() -> u32 {
    1000
}
fn default_batch() -> usize {
    5000
}

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

/// PostgreSQL identifiers are at most 63 bytes and cannot hold NUL; anything else is quoted.
fn check_name(what: &str, name: &str) -> Result<(), StepError> {
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(StepError::InvalidConfig(format!(
            "{what} name `{}` must be 1 to 63 bytes without NUL",
            name.escape_debug()
        )));
    }
    Ok(())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn json_param(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Text(s.clone()),
        other => Value::Json(other.to_string()),
    }
}

fn cell_json(v: Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(b),
        Value::Int(i) => Json::from(i),
        Value::Float(f) => Json::from(f),
        Value::Text(t) => Json::String(t),
        Value::Bytes(b) => Json::String(format!(
            "\\x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )),
        Value::Json(j) => serde_json::from_str(&j).unwrap_or(Json::String(j)),
    }
}

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

/// Thin helpers over one session.
struct Db(Connection);

impl Db {
    fn open(name: &str) -> Result<Self, StepError> {
        Ok(Db(postgres::open(name)?))
    }

    fn rows(
        &self,
        sql: &str,
        params: &[Value],
        limit: Option<u32>,
    ) -> Result<postgres::Rows, StepError> {
        Ok(self.0.query(sql, params, limit)?)
    }

    /// The first column of the first row, if any.
    fn scalar(&self, sql: &str, params: &[Value]) -> Result<Option<Value>, StepError> {
        Ok(self
            .rows(sql, params, Some(1))?
            .rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next()))
    }

    fn exists(&self, sql: &str, params: &[Value]) -> Result<bool, StepError> {
        Ok(self.scalar(sql, params)?.is_some())
    }

    /// Build a statement on the server with `format()`, so every name is quoted by PostgreSQL.
    fn format(&self, template: &str, args: &[Value]) -> Result<String, StepError> {
        let placeholders: Vec<String> = (1..=args.len()).map(|i| format!("${i}::text")).collect();
        let template = template.replace('\'', "''");
        let sql = format!("SELECT format('{template}', {})", placeholders.join(", "));
        match self.scalar(&sql, args)? {
            Some(Value::Text(s)) => Ok(s),
            _ => Err(StepError::Failed("format() returned nothing".into())),
        }
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StepError> {
        Ok(self.0.execute(sql, params)?)
    }

    /// Run `f` in a transaction: commit on success, roll back on error.
    fn transaction<T>(&self, f: impl FnOnce(&Db) -> Result<T, StepError>) -> Result<T, StepError> {
        self.0.begin()?;
        match f(self) {
            Ok(v) => {
                self.0.commit()?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.0.rollback();
                Err(e)
            }
        }
    }

    fn role_exists(&self, role: &str) -> Result<bool, StepError> {
        self.exists("SELECT 1 FROM pg_roles WHERE rolname = $1", &[text(role)])
    }
}

/// What one action will do: the changes for `plan`, the work for `run`.
struct Step {
    changes: Vec<Change>,
    outputs: Vec<Output>,
}

fn change(kind: ChangeKind, resource: String, detail: String) -> Change {
    orch_sdk::change(kind, resource, detail)
}

fn create_user(
    db: &Db,
    user: &str,
    password: Option<String>,
    rotate: bool,
    apply: bool,
) -> Result<Step, StepError> {
    check_name("role", user)?;
    let exists = db.role_exists(user)?;
    let mut changes = Vec::new();
    let mut outputs = vec![
        orch_sdk::output("user", user),
        orch_sdk::output("created", !exists),
    ];
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
                changes.push(change(
                    ChangeKind::Update,
                    format!("role {user}"),
                    sql.clone(),
                ));
                if apply {
                    db.execute(&sql, &[])?;
                }
            }
            return Ok(Step { changes, outputs });
        }
    };
    let shown = db.format(&verb.replace("%L", "'***'"), &[text(user)])?;
    changes.push(change(kind, format!("role {user}"), shown));
    if apply {
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
        outputs.push(orch_sdk::secret_output("password", &password));
        outputs.push(orch_sdk::output("rotated", exists));
    }
    Ok(Step { changes, outputs })
}

fn create_db(
    db: &Db,
    name: &str,
    owner: Option<&str>,
    encoding: Option<&str>,
    template: Option<&str>,
    apply: bool,
) -> Result<Step, StepError> {
    check_name("database", name)?;
    if let Some(owner) = owner {
        check_name("role", owner)?;
        if apply && !db.role_exists(owner)? {
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
    let mut outputs = vec![orch_sdk::output("database", name)];
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
            outputs.push(orch_sdk::output("created", true));
            Some((ChangeKind::Create, db.format(&template_sql, &args)?))
        }
        Some(row) => {
            outputs.push(orch_sdk::output("created", false));
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
    let changes = sql
        .iter()
        .map(|(kind, sql)| change(*kind, format!("database {name}"), sql.clone()))
        .collect();
    if apply && let Some((_, sql)) = sql {
        match db.execute(&sql, &[]) {
            // 42P04: created concurrently: the next run converges the owner.
            Err(StepError::Failed(m)) if m.contains("42P04") => {}
            other => {
                other?;
            }
        }
    }
    Ok(Step { changes, outputs })
}

fn grant(
    db: &Db,
    role: &str,
    privileges: &[String],
    database: Option<&str>,
    schema: Option<&str>,
    tables: bool,
    apply: bool,
) -> Result<Step, StepError> {
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
    let mut changes = Vec::new();
    if !missing.rows.is_empty() {
        let sql = db.format(&template, &[text(object), text(role)])?;
        changes.push(change(ChangeKind::Update, resource, sql.clone()));
        if apply {
            db.execute(&sql, &[])?;
        }
    }
    let granted = !changes.is_empty();
    Ok(Step {
        changes,
        outputs: vec![orch_sdk::output("granted", granted)],
    })
}

fn run_sql(
    db: &Db,
    sql: &str,
    params: &[Json],
    transaction: bool,
) -> Result<Vec<Output>, StepError> {
    let params: Vec<Value> = params.iter().map(json_param).collect();
    let work = |db: &Db| db.execute(sql, &params);
    let affected = if transaction {
        db.transaction(work)?
    } else {
        work(db)?
    };
    Ok(vec![orch_sdk::output("rows_affected", affected)])
}

fn query(db: &Db, sql: &str, params: &[Json], limit: u32) -> Result<Vec<Output>, StepError> {
    let params: Vec<Value> = params.iter().map(json_param).collect();
    let result = db.rows(sql, &params, Some(limit))?;
    let rows: Vec<Json> = result
        .rows
        .into_iter()
        .map(|row| {
            Json::Object(
                result
                    .columns
                    .iter()
                    .cloned()
                    .zip(row.into_iter().map(cell_json))
                    .collect::<Map<String, Json>>(),
            )
        })
        .collect();
    Ok(vec![
        orch_sdk::output("count", rows.len()),
        orch_sdk::output("columns", &result.columns),
        orch_sdk::output("rows", rows),
    ])
}

/// The statements of a load, built by the server with quoted names:
/// (`COPY target (cols) FROM STDIN`, and with a key the staging table and the upsert).
struct LoadSql {
    copy: String,
    stage: Option<(String, String)>,
}

fn load_sql(
    db: &Db,
    schema: &str,
    table: &str,
    columns: &[String],
    key: &[String],
) -> Result<LoadSql, StepError> {
    let names = |list: &[String]| serde_json::to_string(list).unwrap_or_default();
    let non_key: Vec<String> = columns
        .iter()
        .filter(|c| !key.contains(c))
        .cloned()
        .collect();
    let sql = "SELECT format('%I.%I', $1::text, $2::text), cols, \
               CASE WHEN $4::text::json->>0 IS NULL THEN '' \
                    WHEN json_array_length($5::text::json) = 0 THEN format(' ON CONFLICT (%s) DO NOTHING', keys) \
                    ELSE format(' ON CONFLICT (%s) DO UPDATE SET %s', keys, sets) END \
               FROM (SELECT (SELECT string_agg(format('%I', c), ', ') FROM json_array_elements_text($3::text::json) c) AS cols, \
                            (SELECT string_agg(format('%I', c), ', ') FROM json_array_elements_text($4::text::json) c) AS keys, \
                            (SELECT string_agg(format('%I = EXCLUDED.%I', c, c), ', ') FROM json_array_elements_text($5::text::json) c) AS sets) n";
    let args = [
        text(schema),
        text(table),
        text(&names(columns)),
        text(&names(key)),
        text(&names(&non_key)),
    ];
    let row = db.rows(sql, &args, Some(1))?.rows.into_iter().next();
    let Some(
        [
            Value::Text(target),
            Value::Text(cols),
            Value::Text(conflict),
        ],
    ) = row.as_deref()
    else {
        return Err(StepError::Failed(
            "could not build the load statements".into(),
        ));
    };
    if key.is_empty() {
        return Ok(LoadSql {
            copy: format!("COPY {target} ({cols}) FROM STDIN"),
            stage: None,
        });
    }
    Ok(LoadSql {
        copy: format!("COPY orch_load ({cols}) FROM STDIN"),
        stage: Some((
            format!(
                "CREATE TEMP TABLE orch_load ON COMMIT DROP AS SELECT {cols} FROM {target} WITH NO DATA"
            ),
            format!("INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM orch_load{conflict}"),
        )),
    })
}

/// Rows as COPY text format: tab-separated, `\N` for null, backslash escapes.
fn copy_text(
    rows: &[Box<RawValue>],
    columns: &[String],
    first_row: usize,
) -> Result<Vec<u8>, StepError> {
    fn escaped(out: &mut Vec<u8>, s: &str) {
        for b in s.bytes() {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                _ => out.push(b),
            }
        }
    }
    let mut out = Vec::with_capacity(rows.iter().map(|r| r.get().len()).sum());
    for (i, raw) in rows.iter().enumerate() {
        // Borrow each cell's JSON text instead of building values: this is the hot loop.
        let row: std::collections::BTreeMap<std::borrow::Cow<'_, str>, &RawValue> =
            serde_json::from_str(raw.get()).map_err(|e| {
                StepError::InvalidConfig(format!(
                    "row {}: rows must be objects keyed by column: {e}",
                    first_row + i
                ))
            })?;
        if let Some(extra) = row
            .keys()
            .find(|k| !columns.iter().any(|c| c == k.as_ref()))
        {
            return Err(StepError::InvalidConfig(format!(
                "row {} has column `{extra}`, which the first row does not have",
                first_row + i
            )));
        }
        for (j, column) in columns.iter().enumerate() {
            if j > 0 {
                out.push(b'\t');
            }
            let cell = row.get(column.as_str()).map(|v| v.get()).unwrap_or("null");
            match cell.as_bytes().first() {
                Some(b'n') => out.extend_from_slice(b"\\N"),
                Some(b't') => out.push(b't'),
                Some(b'f') => out.push(b'f'),
                Some(b'"') => {
                    let s: std::borrow::Cow<'_, str> = serde_json::from_str(cell).map_err(|e| {
                        StepError::InvalidConfig(format!("row {}: {e}", first_row + i))
                    })?;
                    escaped(&mut out, &s);
                }
                // Numbers as written; objects and arrays as JSON text (for json/jsonb columns).
                Some(b'{' | b'[') => escaped(&mut out, cell),
                _ => out.extend_from_slice(cell.as_bytes()),
            }
        }
        out.push(b'\n');
    }
    Ok(out)
}

fn load_plan(
    db: &Db,
    schema: &str,
    table: &str,
    rows: &[Box<RawValue>],
    key: &[String],
) -> Result<(Vec<String>, Change), StepError> {
    check_name("schema", schema)?;
    check_name("table", table)?;
    let Some(first) = rows.first() else {
        return Ok((
            vec![],
            change(
                ChangeKind::None,
                format!("table {schema}.{table}"),
                "no rows".into(),
            ),
        ));
    };
    let first: Map<String, Json> = serde_json::from_str(first.get()).map_err(|e| {
        StepError::InvalidConfig(format!("rows must be objects keyed by column: {e}"))
    })?;
    let columns: Vec<String> = first.keys().cloned().collect();
    for c in columns.iter().chain(key) {
        check_name("column", c)?;
    }
    if let Some(k) = key.iter().find(|k| !columns.contains(k)) {
        return Err(StepError::InvalidConfig(format!(
            "key column `{k}` is not in the rows"
        )));
    }
    if !db.exists(
        "SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = $2",
        &[text(schema), text(table)],
    )? {
        return Err(StepError::Failed(format!(
            "table {schema}.{table} does not exist: create it first (action = \"sql\")"
        )));
    }
    let how = if key.is_empty() {
        "insert (no key: running again inserts them again)".to_string()
    } else {
        format!("upsert on ({})", key.join(", "))
    };
    let detail = format!("{} rows, {how}", rows.len());
    Ok((
        columns,
        change(
            ChangeKind::Update,
            format!("table {schema}.{table}"),
            detail,
        ),
    ))
}

fn load(
    db: &Db,
    schema: &str,
    table: &str,
    rows: &[Box<RawValue>],
    key: &[String],
    batch_size: usize,
    columns: &[String],
) -> Result<Vec<Output>, StepError> {
    if rows.is_empty() {
        return Ok(vec![orch_sdk::output("rows", 0)]);
    }
    let sql = load_sql(db, schema, table, columns, key)?;
    let total = rows.len() as u64;
    db.transaction(|db| {
        if let Some((create, _)) = &sql.stage {
            db.execute(create, &[])?;
        }
        let mut done = 0usize;
        for batch in rows.chunks(batch_size.max(1)) {
            let data = copy_text(batch, columns, done)?;
            db.0.copy_in(&sql.copy, &data)?;
            done += batch.len();
            orch_sdk::log::progress(done as u64, Some(total), "rows loaded");
        }
        if let Some((_, upsert)) = &sql.stage {
            db.execute(upsert, &[])?;
        }
        Ok(())
    })?;
    Ok(vec![
        orch_sdk::output("rows", total),
        orch_sdk::output("table", format!("{schema}.{table}")),
    ])
}

fn connection_of(config: &Config) -> &str {
    match config {
        Config::CreateUser { connection, .. }
        | Config::CreateDb { connection, .. }
        | Config::Grant { connection, .. }
        | Config::Sql { connection, .. }
        | Config::Query { connection, .. } => connection,
        Config::Load(_) => "",
    }
}

/// Plan (`apply = false`) or run one action.
fn act(config: &str, apply: bool) -> Result<Step, StepError> {
    let config = match parse(config)? {
        Ok(config) => config,
        Err(load) => return act_load(load, apply),
    };
    let db = Db::open(connection_of(&config))?;
    let none = |outputs| Step {
        changes: vec![],
        outputs,
    };
    match config {
        Config::CreateUser {
            user,
            password,
            rotate,
            ..
        } => create_user(&db, &user, password, rotate, apply),
        Config::CreateDb {
            name,
            owner,
            encoding,
            template,
            ..
        } => create_db(
            &db,
            &name,
            // An empty owner (an empty input) means the connecting role.
            owner.as_deref().filter(|o| !o.is_empty()),
            encoding.as_deref(),
            template.as_deref(),
            apply,
        ),
        Config::Grant {
            role,
            privileges,
            database,
            schema,
            tables,
            ..
        } => grant(
            &db,
            &role,
            &privileges,
            database.as_deref(),
            schema.as_deref(),
            tables,
            apply,
        ),
        Config::Sql {
            sql,
            params,
            transaction,
            ..
        } => {
            if apply {
                Ok(none(run_sql(&db, &sql, &params, transaction)?))
            } else {
                Ok(Step {
                    changes: vec![change(ChangeKind::Run, "sql".into(), sql)],
                    outputs: vec![],
                })
            }
        }
        Config::Query {
            sql, params, limit, ..
        } => {
            if apply {
                Ok(none(query(&db, &sql, &params, limit)?))
            } else {
                Ok(Step {
                    changes: vec![change(ChangeKind::Run, "query".into(), sql)],
                    outputs: vec![],
                })
            }
        }
        Config::Load(_) => Err(StepError::Failed("load is parsed as LoadConfig".into())),
    }
}

fn act_load(config: LoadConfig, apply: bool) -> Result<Step, StepError> {
    let db = Db::open(&config.connection)?;
    let schema = config.schema.unwrap_or_else(|| "public".into());
    let (table, rows, key) = (&config.table, &config.rows, &config.key);
    let (columns, change) = load_plan(&db, &schema, table, rows, key)?;
    let outputs = if apply {
        load(&db, &schema, table, rows, key, config.batch_size, &columns)?
    } else {
        vec![]
    };
    Ok(Step {
        changes: vec![change],
        outputs,
    })
}

struct Postgres;

impl Plugin for Postgres {
    fn describe() -> orch_sdk::PluginInfo {
        orch_sdk::info::<Config>(
            "postgres",
            env!("CARGO_PKG_VERSION"),
            "PostgreSQL roles, databases, grants, SQL, query and load",
            &["log", "postgres"],
        )
    }

    fn plan(_: StepContext, config: String) -> Result<Vec<Change>, StepError> {
        Ok(act(&config, false)?.changes)
    }

    fn run(_: StepContext, config: String) -> Result<Vec<Output>, StepError> {
        let step = act(&config, true)?;
        for c in &step.changes {
            orch_sdk::log::info(&c.detail);
        }
        if step.changes.is_empty() {
            orch_sdk::log::info("no change");
        }
        Ok(step.outputs)
    }
}

orch_sdk::export!(Postgres);
