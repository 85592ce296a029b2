//! API tokens, stored by their SHA-256 hash only, and the web page's sessions opened with them.

use super::{Store, StoreError, now_ms};
use serde::Serialize;
use sqlx::Row;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Trigger and cancel runs, and see everything.
    Run,
    /// See runs, workflows and logs; never change anything.
    Read,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Run => "run",
            Scope::Read => "read",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "run" => Ok(Scope::Run),
            "read" => Ok(Scope::Read),
            other => Err(StoreError::Query(format!("unknown token scope `{other}`"))),
        }
    }
}

/// An API token as listed (never its value).
#[derive(Debug, Clone, Serialize)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Who a live token or session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    pub scope: Scope,
}

/// A live web session.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    /// The CSRF token every POST of the session must carry.
    pub csrf: String,
}

/// How precisely `last_used_at` follows a token's use.
const TOKEN_USE_RESOLUTION_MS: i64 = 60_000;

impl Store {
    /// Store a new API token by its hash.
    pub async fn insert_token(
        &self,
        id: &str,
        name: &str,
        hash: &str,
        scope: Scope,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (id, name, hash, scope, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(name)
        .bind(hash)
        .bind(scope.as_str())
        .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The live (not revoked) token with this hash; records its use at most once a minute. A
    /// read first: a flood of bad tokens takes no write lock.
    pub async fn use_token(&self, hash: &str) -> Result<Option<Caller>, StoreError> {
        let row = sqlx::query(
            "SELECT name, scope, last_used_at FROM api_tokens WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let caller = Caller {
            name: row.try_get("name")?,
            scope: Scope::parse(&row.try_get::<String, _>("scope")?)?,
        };
        let last: Option<i64> = row.try_get("last_used_at")?;
        let now = now_ms();
        if last.is_none_or(|t| now - t >= TOKEN_USE_RESOLUTION_MS) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE hash = $2")
                .bind(now)
                .bind(hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(caller))
    }

    /// Every token ever created, newest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, scope, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY created_at DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenRow {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    scope: Scope::parse(&r.try_get::<String, _>("scope")?)?,
                    created_at: r.try_get("created_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    /// Revoke live tokens by id or name; how many were revoked.
    pub async fn revoke_token(&self, id_or_name: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE (id = $2 OR name = $2) AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id_or_name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Open a web session for the live token `token_hash` (expired sessions are dropped on
    /// the way); `None` if the token is unknown or revoked.
    pub async fn open_session(
        &self,
        id_hash: &str,
        token_hash: &str,
        csrf: &str,
        ttl_ms: i64,
    ) -> Result<Option<Caller>, StoreError> {
        let Some(caller) = self.use_token(token_hash).await? else {
            return Ok(None);
        };
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM web_sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO web_sessions (id_hash, token_hash, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_hash)
        .bind(token_hash)
        .bind(csrf)
        .bind(now)
        .bind(now + ttl_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(caller))
    }

    /// The live session with this id hash: not expired, its token not revoked.
    pub async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError> {
        let row = sqlx::query(
            "SELECT t.name, t.scope, s.csrf FROM web_sessions s JOIN api_tokens t ON t.hash = s.token_hash \
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND t.revoked_at IS NULL",
        )
        .bind(id_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Session {
                caller: Caller {
                    name: r.try_get("name")?,
                    scope: Scope::parse(&r.try_get::<String, _>("scope")?)?,
                },
                csrf: r.try_get("csrf")?,
            })
        })
        .transpose()
    }

    /// End a session (sign out).
    pub async fn close_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
