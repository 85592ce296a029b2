//! Host side of `orch:plugin/postgres`: opens granted connections with sqlx and runs statements
//! for the guest. The URL and password never cross into the sandbox.

mod copy_json;

use super::connections::{
    ConnectionData, ConnectionGate, ConnectionView, OpenError, connection_view,
};
use crate::capability::bindings::orch::plugin::postgres::{
    DbError, Error, Host, HostConnection, Rows, Value,
};
use crate::workflow::ConnectionKind;
use futures::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{Column, ConnectOptions, Connection, PgConnection, Row, TypeInfo};
use std::str::FromStr;
use std::time::Duration;
use wasmtime::component::{Linker, Resource};

/// Rows one `query` call may return.
const MAX_QUERY_ROWS: usize = 1_000_000;
/// Bytes (roughly, the cells' text and blobs) one `query` call may hold in host memory.
const MAX_QUERY_BYTES: usize = 256 << 20;

/// What a cell costs in host memory, roughly.
fn cell_size(value: &Value) -> usize {
    match value {
        Value::Text(s) | Value::Json(s) => s.len() + 24,
        Value::Bytes(b) => b.len() + 24,
        _ => 24,
    }
}

/// How long opening a connection may take before it counts as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One open session, owned by the guest through a resource handle.
#[allow(
    unreachable_pub,
    reason = "bindgen! re-exports its `with` types with `pub use`"
)]
pub struct PgSession {
    conn: PgConnection,
    /// Opened during a `plan`: every statement runs alone (extended protocol, one statement)
    /// in a `READ ONLY` transaction the host rolls back, so nothing it does can last.
    read_only: bool,
}

/// SQLSTATEs that mean "try again later": connection exceptions (08), shutdown and restart
/// (57P01-57P03), too many connections, serialization failures and deadlocks.
fn transient(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
        )
}

/// Map a driver error: unreachable is retryable, an answer from the server is not.
fn classify(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if transient(&code) {
                Error::Unavailable(format!("{code}: {}", db.message()))
            } else {
                Error::Database(DbError {
                    code,
                    message: db.message().to_string(),
                })
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => Error::Unavailable(e.to_string()),
        other => Error::Other(other.to_string()),
    }
}

/// A connection that is not granted is denied; one not defined, or of another kind, is `other`.
impl OpenError for Error {
    fn denied(message: String) -> Self {
        Error::Denied(message)
    }
    fn invalid(message: String) -> Self {
        Error::Other(message)
    }
}

async fn connect(gate: &ConnectionGate, name: &str) -> Result<PgConnection, Error> {
    let connection = gate.open::<Error>(name, ConnectionKind::Postgres)?;
    let url = connection.setting("url").unwrap_or_default();
    let mut options = PgConnectOptions::from_str(url)
        .map_err(|_| {
            Error::Other(format!(
                "connection `{name}`: `url` is not a valid postgres URL"
            ))
        })?
        .application_name("orch")
        .disable_statement_logging();
    if let Some(database) = connection.setting("database") {
        options = options.database(database);
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(classify(e)),
        Err(_) => Err(Error::Unavailable(format!(
            "connection `{name}`: no answer within {CONNECT_TIMEOUT:?}"
        ))),
    }
}

fn bind<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    params: Vec<Value>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for p in params {
        query = match p {
            Value::Null => query.bind(None::<String>),
            Value::Boolean(b) => query.bind(b),
            Value::Int(i) => query.bind(i),
            Value::Float(f) => query.bind(f),
            Value::Text(t) => query.bind(t),
            Value::Bytes(b) => query.bind(b),
            Value::Json(j) => query.bind(sqlx::types::Json(
                serde_json::from_str::<serde_json::Value>(&j)
                    .unwrap_or(serde_json::Value::String(j)),
            )),
        };
    }
    query
}

/// A result cell as a typed value; unknown types ask for a cast.
fn cell(row: &PgRow, i: usize) -> Result<Value, Error> {
    let column = &row.columns()[i];
    let type_name = column.type_info().name().to_string();
    let fail = |e: sqlx::Error| Error::Other(format!("column `{}`: {e}", column.name()));
    macro_rules! get {
        ($t:ty, $wrap:expr) => {
            row.try_get::<Option<$t>, _>(i)
                .map_err(fail)?
                .map($wrap)
                .unwrap_or(Value::Null)
        };
    }
    Ok(match type_name.as_str() {
        "BOOL" => get!(bool, Value::Boolean),
        "INT2" => get!(i16, |v| Value::Int(v.into())),
        "INT4" => get!(i32, |v| Value::Int(v.into())),
        "INT8" => get!(i64, Value::Int),
        "FLOAT4" => get!(f32, |v| Value::Float(v.into())),
        "FLOAT8" => get!(f64, Value::Float),
        "NUMERIC" => get!(sqlx::types::Decimal, |v| Value::Text(v.to_string())),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" => get!(String, Value::Text),
        "JSON" | "JSONB" => get!(serde_json::Value, |v| Value::Json(v.to_string())),
        "BYTEA" => get!(Vec<u8>, Value::Bytes),
        "UUID" => get!(sqlx::types::Uuid, |v| Value::Text(v.to_string())),
        "TIMESTAMPTZ" => get!(chrono::DateTime<chrono::Utc>, |v| Value::Text(
            v.to_rfc3339()
        )),
        "TIMESTAMP" => get!(chrono::NaiveDateTime, |v| Value::Text(v.to_string())),
        "DATE" => get!(chrono::NaiveDate, |v| Value::Text(v.to_string())),
        "TIME" => get!(chrono::NaiveTime, |v| Value::Text(v.to_string())),
        "OID" => get!(sqlx::postgres::types::Oid, |v| Value::Int(v.0.into())),
        other => {
            return Err(Error::Other(format!(
                "column `{}` has type {other}: cast it in the query, e.g. `{}::text`",
                column.name(),
                column.name()
            )));
        }
    })
}

/// Run `sql` and collect its rows, bounded whatever the query (a table scan without `limit`,
/// huge cells): they are held in host memory until the guest takes them.
async fn fetch(
    conn: &mut PgConnection,
    sql: String,
    params: Vec<Value>,
    limit: Option<u32>,
) -> Result<Rows, Error> {
    let query = bind(sqlx::query(sqlx::AssertSqlSafe(sql)), params);
    let mut stream = query.fetch(&mut *conn);
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    loop {
        if limit.is_some_and(|l| rows.len() >= l as usize) {
            break;
        }
        if rows.len() >= MAX_QUERY_ROWS || bytes > MAX_QUERY_BYTES {
            return Err(Error::Other(format!(
                "the query returns more than {} rows or {} MiB: give it a `limit` (or use `copy`)",
                MAX_QUERY_ROWS,
                MAX_QUERY_BYTES >> 20
            )));
        }
        let Some(row) = stream.try_next().await.map_err(classify)? else {
            break;
        };
        if columns.is_empty() {
            columns = row.columns().iter().map(|c| c.name().to_string()).collect();
        }
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..row.columns().len() {
            let v = cell(&row, i)?;
            bytes += cell_size(&v);
            values.push(v);
        }
        rows.push(values);
    }
    Ok(Rows { columns, rows })
}

/// Chunks of COPY text in flight between the thread that reads the rows and the connection.
const CHUNKS_IN_FLIGHT: usize = 4;

/// `COPY … FROM STDIN` of JSON rows: a blocking thread reads and encodes them while this task
/// sends each chunk as it comes, and the server loads it meanwhile. What waits between the two
/// is bounded ([`CHUNKS_IN_FLIGHT`] chunks); if this future is dropped (timeout, cancel), the
/// channel closes and the reading stops.
async fn copy_rows(
    conn: &mut PgConnection,
    sql: &str,
    columns: Vec<String>,
    rows: String,
) -> Result<u64, Error> {
    let mut copy = conn.copy_in_raw(sql).await.map_err(classify)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let encoder = tokio::task::spawn_blocking(move || {
        copy_json::encode_rows(&rows, &columns, |chunk| tx.blocking_send(chunk).is_ok())
    });
    let mut sent = Ok(());
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = copy.send(chunk).await {
            sent = Err(e);
            break;
        }
    }
    drop(rx);
    let encoded = encoder.await.unwrap_or_else(|e| {
        Err(copy_json::EncodeError::Rows(format!(
            "reading rows failed: {e}"
        )))
    });
    let failed = match (encoded, sent) {
        (_, Err(e)) => classify(e),
        (Err(copy_json::EncodeError::Rows(why)), Ok(())) => Error::Other(why),
        (Err(copy_json::EncodeError::Stopped), Ok(())) => {
            Error::Other("the copy stopped before every row was sent".into())
        }
        (Ok(_), Ok(())) => return copy.finish().await.map_err(classify),
    };
    // Nothing of a failed copy is kept: the server drops the rows it took.
    let _ = copy.abort("orch: the rows could not be copied").await;
    Err(failed)
}

/// `work` inside a `READ ONLY` transaction that is always rolled back.
async fn in_read_only<T>(
    conn: &mut PgConnection,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, Error>,
) -> Result<T, Error> {
    sqlx::raw_sql("BEGIN READ ONLY")
        .execute(&mut *conn)
        .await
        .map_err(classify)?;
    let result = work(&mut *conn).await;
    // Also after a `COMMIT` of the guest's (then there is no transaction: a warning only).
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
    result
}

impl Host for ConnectionView<'_> {
    async fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<PgSession>, Error>> {
        match connect(self.gate, &name).await {
            Ok(conn) => {
                let read_only = self.gate.granter.planning();
                Ok(Ok(self.table.push(PgSession { conn, read_only })?))
            }
            Err(e) => Ok(Err(e)),
        }
    }
}

impl HostConnection for ConnectionView<'_> {
    async fn execute(
        &mut self,
        session: Resource<PgSession>,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let PgSession { conn, read_only } = self.table.get_mut(&session)?;
        if *read_only {
            return Ok(in_read_only(conn, async |conn| {
                bind(sqlx::query(sqlx::AssertSqlSafe(sql)), params)
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(classify)
            })
            .await);
        }
        let result = if params.is_empty() {
            // Simple protocol: several statements at once (migrations).
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await
        } else {
            bind(sqlx::query(sqlx::AssertSqlSafe(sql)), params)
                .execute(&mut *conn)
                .await
        };
        Ok(result.map(|r| r.rows_affected()).map_err(classify))
    }

    async fn query(
        &mut self,
        session: Resource<PgSession>,
        sql: String,
        params: Vec<Value>,
        limit: Option<u32>,
    ) -> wasmtime::Result<Result<Rows, Error>> {
        let PgSession { conn, read_only } = self.table.get_mut(&session)?;
        if *read_only {
            return Ok(
                in_read_only(conn, async |conn| fetch(conn, sql, params, limit).await).await,
            );
        }
        Ok(fetch(conn, sql, params, limit).await)
    }

    async fn copy_in(
        &mut self,
        session: Resource<PgSession>,
        sql: String,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        if let Err(denied) = self.gate.write::<Error>(|| "run COPY … FROM STDIN".into()) {
            return Ok(Err(denied));
        }
        let conn = &mut self.table.get_mut(&session)?.conn;
        let copied = async {
            let mut copy = conn.copy_in_raw(&sql).await?;
            if let Err(e) = copy.send(data).await {
                let _ = copy.abort("orch: sending COPY data failed").await;
                return Err(e);
            }
            copy.finish().await
        };
        Ok(copied.await.map_err(classify))
    }

    async fn copy_json(
        &mut self,
        session: Resource<PgSession>,
        sql: String,
        columns: Vec<String>,
        rows: String,
    ) -> wasmtime::Result<Result<u64, Error>> {
        if let Err(denied) = self.gate.write::<Error>(|| "run COPY … FROM STDIN".into()) {
            return Ok(Err(denied));
        }
        let conn = &mut self.table.get_mut(&session)?.conn;
        Ok(copy_rows(conn, &sql, columns, rows).await)
    }

    async fn begin(&mut self, session: Resource<PgSession>) -> wasmtime::Result<Result<(), Error>> {
        self.simple(session, "BEGIN").await
    }

    async fn commit(
        &mut self,
        session: Resource<PgSession>,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.simple(session, "COMMIT").await
    }

    async fn rollback(
        &mut self,
        session: Resource<PgSession>,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.simple(session, "ROLLBACK").await
    }

    async fn drop(&mut self, session: Resource<PgSession>) -> wasmtime::Result<()> {
        let session = self.table.delete(session)?;
        let _ = session.conn.close().await;
        Ok(())
    }
}

impl ConnectionView<'_> {
    async fn simple(
        &mut self,
        session: Resource<PgSession>,
        sql: &'static str,
    ) -> wasmtime::Result<Result<(), Error>> {
        let PgSession { conn, read_only } = self.table.get_mut(&session)?;
        if *read_only {
            // Every statement already runs in a transaction of its own that is rolled back.
            return Ok(Ok(()));
        }
        Ok(sqlx::raw_sql(sql)
            .execute(&mut *conn)
            .await
            .map(|_| ())
            .map_err(classify))
    }
}

/// Link `orch:plugin/postgres` into the plugin linker.
pub(crate) fn add_to_linker(linker: &mut Linker<super::StepState>) -> wasmtime::Result<()> {
    crate::capability::bindings::orch::plugin::postgres::add_to_linker::<_, ConnectionData>(
        linker,
        connection_view,
    )
}
