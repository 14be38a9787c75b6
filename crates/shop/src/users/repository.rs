//! SQL for the `users` table.

use super::{normalize_email, User};
use crate::auth::Role;
use loadstar_core::{Id, Timestamp};
use loadstar_store::sql::{query, AnyRow, AssertSqlSafe, Error, Row};
use loadstar_store::{Database, StoreError};

const COLUMNS: &str = "id, email, name, role, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<User, Error> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: Id::from_i64(row.try_get("id")?),
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: Role::from_stored(&role),
        created_at: Timestamp::from_unix_micros(row.try_get("created_at")?),
        updated_at: Timestamp::from_unix_micros(row.try_get("updated_at")?),
    })
}

pub async fn insert(db: &Database, user: &User, password_hash: &str) -> Result<(), StoreError> {
    query(
        "INSERT INTO users (id, email, email_normalized, name, password_hash, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(user.id.as_i64())
    .bind(&user.email)
    .bind(normalize_email(&user.email))
    .bind(&user.name)
    .bind(password_hash)
    .bind(user.role.as_str())
    .bind(user.created_at.unix_micros())
    .bind(user.updated_at.unix_micros())
    .execute(db.writer())
    .await?;
    Ok(())
}

pub async fn find(db: &Database, id: Id) -> Result<Option<User>, StoreError> {
    let row = query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE id = $1"
    )))
    .bind(id.as_i64())
    .fetch_optional(db.consistent_reader())
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The user with this email (any case) and their password hash, for logins.
pub async fn find_credentials(
    db: &Database,
    email: &str,
) -> Result<Option<(User, String)>, StoreError> {
    let row = query(AssertSqlSafe(format!(
        "SELECT {COLUMNS}, password_hash FROM users WHERE email_normalized = $1"
    )))
    .bind(normalize_email(email))
    .fetch_optional(db.consistent_reader())
    .await?;
    match row {
        Some(row) => Ok(Some((from_row(&row)?, row.try_get("password_hash")?))),
        None => Ok(None),
    }
}

/// Writes the mutable fields of `user` (and a new password hash, if given).
pub async fn update(
    db: &Database,
    user: &User,
    new_password_hash: Option<&str>,
) -> Result<bool, StoreError> {
    let result = query(
        "UPDATE users SET email = $2, email_normalized = $3, name = $4, role = $5, updated_at = $6, \
         password_hash = COALESCE($7, password_hash) WHERE id = $1",
    )
    .bind(user.id.as_i64())
    .bind(&user.email)
    .bind(normalize_email(&user.email))
    .bind(&user.name)
    .bind(user.role.as_str())
    .bind(user.updated_at.unix_micros())
    .bind(new_password_hash)
    .execute(db.writer())
    .await?;
    Ok(result.rows_affected() > 0)
}
