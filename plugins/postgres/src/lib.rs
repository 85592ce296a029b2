//! Built-in `postgres`: the step's config and its plan/run dispatch to [`roles`] (users,
//! databases, grants), [`sql`] (sql, query) and [`load`] (bulk insert / upsert for ETL).
//!
//! Every statement goes through the host's `postgres` interface on a connection the step is
//! granted; the plugin never sees the URL or password. Names are quoted by the server
//! (`format('%I')`, `%L`), so any text is either created literally or rejected by PostgreSQL,
//! never executed.

mod db;
mod load;
mod roles;
mod sql;

use db::Db;
use load::{LoadConfig, LoadSchema};
use orch_sdk::{Change, ChangeKind, Output, Plugin, StepContext, StepError};
use serde::Deserialize;
use serde_json::Value as Json;

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

/// What one action will do: the changes for `plan`, the work for `run`.
pub struct Step {
    pub changes: Vec<Change>,
    pub outputs: Vec<Output>,
}

pub fn change(kind: ChangeKind, resource: String, detail: String) -> Change {
    orch_sdk::change(kind, resource, detail)
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
        Err(load) => return load::act_load(load, apply),
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
        } => roles::create_user(&db, &user, password, rotate, apply),
        Config::CreateDb {
            name,
            owner,
            encoding,
            template,
            ..
        } => roles::create_db(
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
        } => roles::grant(
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
                Ok(none(sql::run_sql(&db, &sql, &params, transaction)?))
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
                Ok(none(sql::query(&db, &sql, &params, limit)?))
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
