//! A run's hot writes (its attempts and log lines) on SQLite, done on the caller's thread.
//!
//! sqlx runs each SQLite connection on a thread of its own, so a write there is two thread
//! hops, there and back: in a chain of short steps they cost more than the commit itself
//! (BENCHMARKS.md, "The engine at the floor"). This connection of the store's own writes
//! inline instead, and never waits: when another connection holds the write lock, or another
//! task this connection, it answers [`Written::Busy`] and the caller goes through the pool,
//! which waits (the busy timeout) on its own thread. Durability is the pool's: every write is
//! committed before it returns, with the same `synchronous` setting.

use super::StoreError;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use std::borrow::Cow;
use std::path::Path;
use std::sync::Mutex;

/// A value bound to a hot write, the same for both paths. Nulls carry their column's type:
/// PostgreSQL refuses a text null for a `BIGINT`.
#[derive(Debug, Clone)]
pub(super) enum Param<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    Int32(i32),
    NullText,
    NullInt,
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Param::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            Param::Int32(i) => ToSqlOutput::Owned(Value::Integer(i64::from(*i))),
            Param::NullText | Param::NullInt => ToSqlOutput::Owned(Value::Null),
        })
    }
}

/// One statement of a hot write: SQL with `$N` placeholders and its values in order.
pub(super) struct Statement<'a> {
    pub(super) sql: String,
    pub(super) params: Vec<Param<'a>>,
}

/// What an inline write did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Written {
    /// Committed.
    Done,
    /// Nothing written: the write lock (or this connection) is taken; write through the pool.
    Busy,
}

/// The store's own SQLite connection for hot writes.
pub(super) struct InlineWriter {
    conn: Mutex<rusqlite::Connection>,
}

impl InlineWriter {
    /// Open the store's file (created and migrated by the pool already).
    pub(super) fn open(path: &Path) -> Result<Self, rusqlite::Error> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // WAL is the file's own mode (the pool set it). No busy timeout: this never waits.
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 0;",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Run `statements` and commit them as one: one statement on its own, more in a
    /// transaction. On [`Written::Busy`] nothing was written.
    pub(super) fn write(&self, statements: &[Statement<'_>]) -> Result<Written, StoreError> {
        let Ok(conn) = self.conn.try_lock() else {
            return Ok(Written::Busy);
        };
        let run = |s: &Statement<'_>| -> rusqlite::Result<()> {
            conn.prepare_cached(&s.sql)?
                .execute(rusqlite::params_from_iter(s.params.iter()))?;
            Ok(())
        };
        if let [only] = statements {
            return match run(only) {
                Ok(()) => Ok(Written::Done),
                Err(e) if is_busy(&e) => Ok(Written::Busy),
                Err(e) => Err(query_error(e)),
            };
        }
        // IMMEDIATE: the write lock is taken here or not at all, so a busy store is known
        // before anything is written.
        match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {}
            Err(e) if is_busy(&e) => return Ok(Written::Busy),
            Err(e) => return Err(query_error(e)),
        }
        let written = statements
            .iter()
            .try_for_each(run)
            .and_then(|()| conn.execute_batch("COMMIT"));
        if let Err(e) = written {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(query_error(e));
        }
        Ok(Written::Done)
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn query_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error() {
        Some(f)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            StoreError::Duplicate(e.to_string())
        }
        _ => StoreError::Query(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT, note TEXT);",
        )
        .unwrap();
        (dir, path)
    }

    fn insert(k: &str, n: i64) -> Statement<'_> {
        Statement {
            sql: "INSERT INTO t (k, n, note) VALUES ($1, $2, $3)".into(),
            params: vec![Param::Text(k.into()), Param::Int(n), Param::NullText],
        }
    }

    fn count(path: &Path) -> i64 {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_locked_store_is_busy_at_once_and_nothing_is_written() {
        let (_dir, path) = store_file();
        let writer = InlineWriter::open(&path).unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let t = std::time::Instant::now();
        assert_eq!(writer.write(&[insert("a", 1)]).unwrap(), Written::Busy);
        assert_eq!(
            writer.write(&[insert("a", 1), insert("b", 2)]).unwrap(),
            Written::Busy
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(1), "it waited");
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(count(&path), 0);
        assert_eq!(
            writer.write(&[insert("a", 1), insert("b", 2)]).unwrap(),
            Written::Done
        );
        assert_eq!(count(&path), 2);
    }

    #[test]
    fn a_failed_statement_rolls_back_the_whole_write_and_says_why() {
        let (_dir, path) = store_file();
        let writer = InlineWriter::open(&path).unwrap();
        assert_eq!(writer.write(&[insert("a", 1)]).unwrap(), Written::Done);
        // The second statement repeats the first one's key: neither may stay.
        let err = writer.write(&[insert("b", 2), insert("a", 3)]).unwrap_err();
        assert!(matches!(err, StoreError::Duplicate(_)), "{err}");
        assert_eq!(count(&path), 1);
        // The connection is usable again (no transaction left open).
        assert_eq!(writer.write(&[insert("c", 4)]).unwrap(), Written::Done);
        assert_eq!(count(&path), 2);
    }
}
