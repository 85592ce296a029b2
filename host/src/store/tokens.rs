//! API tokens, stored by their SHA-256 hash only.

use super::{Store, StoreError, now_ms};
use serde::Serialize;
use sqlx::Row;

/// An API token as listed (never its value).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// How precisely `last_used_at` follows a token's use.
const TOKEN_USE_RESOLUTION_MS: i64 = 60_000;

impl Store {
    /// Store a new API token by its hash.
    pub async fn insert_token(&self, id: &str, name: &str, hash: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_tokens (id, name, hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(name)
            .bind(hash)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The name of the live (not revoked) token with this hash; records its use at most once
    /// a minute. A read first: a flood of bad tokens takes no write lock.
    pub async fn use_token(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT name, last_used_at FROM api_tokens WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let name: String = row.try_get("name")?;
        let last: Option<i64> = row.try_get("last_used_at")?;
        let now = now_ms();
        if last.is_none_or(|t| now - t >= TOKEN_USE_RESOLUTION_MS) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE hash = $2")
                .bind(now)
                .bind(hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(name))
    }

    /// Every token ever created, newest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, name, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY created_at DESC",
        )
        .fetch_all(&self.pool)
        .await?)
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
}
