//! One session on a granted connection, with the few queries every action needs; names are
//! checked here and quoted by the server (`format()`), never by the plugin.

use orch_sdk::StepError;
use orch_sdk::postgres::{self, Connection, Value};

/// PostgreSQL identifiers are at most 63 bytes and cannot hold NUL; anything else is quoted.
pub fn check_name(what: &str, name: &str) -> Result<(), StepError> {
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(StepError::InvalidConfig(format!(
            "{what} name `{}` must be 1 to 63 bytes without NUL",
            name.escape_debug()
        )));
    }
    Ok(())
}

pub fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// Thin helpers over one session.
pub struct Db(Connection);

impl Db {
    pub fn open(name: &str) -> Result<Self, StepError> {
        Ok(Db(postgres::open(name)?))
    }

    pub fn rows(
        &self,
        sql: &str,
        params: &[Value],
        limit: Option<u32>,
    ) -> Result<postgres::Rows, StepError> {
        Ok(self.0.query(sql, params, limit)?)
    }

    /// The first column of the first row, if any.
    pub fn scalar(&self, sql: &str, params: &[Value]) -> Result<Option<Value>, StepError> {
        Ok(self
            .rows(sql, params, Some(1))?
            .rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next()))
    }

    pub fn exists(&self, sql: &str, params: &[Value]) -> Result<bool, StepError> {
        Ok(self.scalar(sql, params)?.is_some())
    }

    /// Build a statement on the server with `format()`, so every name is quoted by PostgreSQL.
    pub fn format(&self, template: &str, args: &[Value]) -> Result<String, StepError> {
        let placeholders: Vec<String> = (1..=args.len()).map(|i| format!("${i}::text")).collect();
        let template = template.replace('\'', "''");
        let sql = format!("SELECT format('{template}', {})", placeholders.join(", "));
        match self.scalar(&sql, args)? {
            Some(Value::Text(s)) => Ok(s),
            _ => Err(StepError::Failed("format() returned nothing".into())),
        }
    }

    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StepError> {
        Ok(self.0.execute(sql, params)?)
    }

    /// `COPY … FROM STDIN` of `rows`, a JSON array of objects keyed by `columns`.
    pub fn copy_json(&self, sql: &str, columns: &[String], rows: &str) -> Result<u64, StepError> {
        Ok(self.0.copy_json(sql, columns, rows)?)
    }

    /// Run `f` in a transaction: commit on success, roll back on error.
    pub fn transaction<T>(
        &self,
        f: impl FnOnce(&Db) -> Result<T, StepError>,
    ) -> Result<T, StepError> {
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

    pub fn role_exists(&self, role: &str) -> Result<bool, StepError> {
        self.exists("SELECT 1 FROM pg_roles WHERE rolname = $1", &[text(role)])
    }
}
