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
use orch_sdk::{ChangeKind, Cx, Step, StepError};
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
    /// Insert rows (objects keyed by column) into a table in one transaction and one `COPY`;
    /// with `key`, rows whose key exists are updated instead (upsert).
    Load(#[allow(dead_code, reason = "schema only: parsed as LoadConfig")] LoadSchema),
}

/// A parsed `with`: `load` separately, because an internally tagged enum cannot hold raw JSON;
/// its schema is [`Config`]'s.
enum Parsed {
    Load(LoadConfig),
    Other(Config),
}

impl Parsed {
    fn pick(action: &str, text: &str) -> Result<Self, serde_json::Error> {
        if action == "load" {
            serde_json::from_str(text).map(Parsed::Load)
        } else {
            serde_json::from_str(text).map(Parsed::Other)
        }
    }
}

impl<'de> Deserialize<'de> for Parsed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        orch_sdk::by_action(d, Parsed::pick)
    }
}

impl schemars::JsonSchema for Parsed {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        Config::schema_name()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        Config::json_schema(generator)
    }
}

fn yes() -> bool {
    true
}
fn default_limit() -> u32 {
    1000
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

struct Postgres;

impl Step for Postgres {
    type Config<'a> = Parsed;
    const DESCRIPTION: &'static str = "PostgreSQL roles, databases, grants, SQL, query and load";

    fn parse(config: &str) -> Result<Parsed, StepError> {
        orch_sdk::config_by_action(config, Parsed::pick)
    }

    fn step(cx: &mut Cx, config: Parsed) -> Result<(), StepError> {
        let config = match config {
            Parsed::Other(config) => config,
            Parsed::Load(load) => return load::act_load(load, cx),
        };
        let db = Db::open(connection_of(&config))?;
        match config {
            Config::CreateUser {
                user,
                password,
                rotate,
                ..
            } => roles::create_user(&db, &user, password, rotate, cx)?,
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
                cx,
            )?,
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
                cx,
            )?,
            Config::Sql {
                sql,
                params,
                transaction,
                ..
            } => {
                if cx.change(ChangeKind::Run, "sql", &sql) {
                    for output in sql::run_sql(&db, &sql, &params, transaction)? {
                        cx.publish(output);
                    }
                }
            }
            Config::Query {
                sql, params, limit, ..
            } => {
                if cx.change(ChangeKind::Run, "query", &sql) {
                    for output in sql::query(&db, &sql, &params, limit)? {
                        cx.publish(output);
                    }
                }
            }
            Config::Load(_) => {
                return Err(StepError::Failed("load is parsed as LoadConfig".into()));
            }
        }
        if cx.applying() && cx.changes().is_empty() {
            orch_sdk::log::info("no change");
        }
        Ok(())
    }
}

orch_sdk::export!(Postgres);
