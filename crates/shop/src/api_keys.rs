//! `/v1/api-keys`: long-lived credentials for programs.
//!
//! A key is issued against email + password (so a script can bootstrap without a
//! session), shown once as `lsk_<12 hex>_<secret>`, stored as the SHA-256 of its secret,
//! listed by its public prefix, and revoked by id.

use crate::auth::tokens::issue_api_key;
use crate::auth::Principal;
use crate::error::{ShopError, ShopResult};
use crate::extract::path_id;
use crate::sessions::check_password;
use crate::state::ShopState;
use crate::validation::Validator;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use loadstar_core::json_body::JsonBody;
use loadstar_core::{Id, Problem, Timestamp};
use loadstar_store::sql::{query, Row};
use serde::{Deserialize, Serialize};

/// Most live keys one user may hold; bounds the table and a leaked account's blast radius.
const MAX_KEYS_PER_USER: i64 = 50;

/// `POST /v1/api-keys` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueApiKey {
    pub email: String,
    pub password: String,
    /// What the key is for, e.g. "billing export".
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
}

/// A key as listed: never the secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: Id,
    pub prefix: String,
    pub name: String,
    pub created_at: Timestamp,
}

/// A key just issued: the only response that carries `key`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyIssued {
    pub id: Id,
    /// The full key. Store it now: it cannot be shown again.
    pub key: String,
    pub prefix: String,
    pub name: String,
    pub created_at: Timestamp,
}

/// The list of a user's live keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKey>,
}

/// Issues a key for the user with this email and password.
#[utoipa::path(
    post, path = "/v1/api-keys", tag = "api-keys",
    request_body = IssueApiKey,
    responses(
        (status = 201, body = ApiKeyIssued),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "wrong email or password", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "too many live keys", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "password work is at its bound (too many logins or sign-ups at once); retry after Retry-After seconds", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "seconds to wait before retrying"))),
    )
)]
pub async fn issue(
    State(state): State<ShopState>,
    JsonBody(input): JsonBody<IssueApiKey>,
) -> ShopResult<impl IntoResponse> {
    Validator::new()
        .text_length("name", &input.name, 1, 100)
        .finish()?;
    let user = check_password(&state, &input.email, &input.password).await?;
    // Count and insert in one transaction that first locks the user's row (the no-op
    // update: a row lock on PostgreSQL, the write lock on SQLite), so that concurrent
    // requests for one user queue here and each counts the keys the others committed.
    let mut tx = state.db.writer().begin().await?;
    query("UPDATE users SET updated_at = updated_at WHERE id = $1")
        .bind(user.id.as_i64())
        .execute(&mut *tx)
        .await?;
    let live: i64 =
        query("SELECT COUNT(*) AS live FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(user.id.as_i64())
            .fetch_one(&mut *tx)
            .await?
            .try_get("live")?;
    if live >= MAX_KEYS_PER_USER {
        return Err(ShopError::Conflict {
            slug: "too-many-api-keys",
            detail: format!(
                "a user may hold at most {MAX_KEYS_PER_USER} live keys; revoke one first"
            ),
        });
    }
    let issued = issue_api_key();
    let id = state.ids.next_id();
    let created_at = Timestamp::now();
    let name = input.name.trim().to_owned();
    query(
        "INSERT INTO api_keys (id, user_id, name, prefix, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id.as_i64())
    .bind(user.id.as_i64())
    .bind(&name)
    .bind(&issued.prefix)
    .bind(&issued.secret_hash)
    .bind(created_at.unix_micros())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, key_id = %id, prefix = %issued.prefix, "api key issued");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/api-keys/{id}"))],
        Json(ApiKeyIssued {
            id,
            key: issued.key,
            prefix: issued.prefix,
            name,
            created_at,
        }),
    ))
}

/// Lists the caller's live keys, newest first.
#[utoipa::path(
    get, path = "/v1/api-keys", tag = "api-keys",
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, body = ApiKeyList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<ShopState>,
    principal: Principal,
) -> ShopResult<Json<ApiKeyList>> {
    let rows = query(
        "SELECT id, prefix, name, created_at FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id DESC",
    )
    .bind(principal.user_id.as_i64())
    .fetch_all(state.db.consistent_reader())
    .await?;
    let items = rows
        .iter()
        .map(|row| {
            Ok(ApiKey {
                id: Id::from_i64(row.try_get("id")?),
                prefix: row.try_get("prefix")?,
                name: row.try_get("name")?,
                created_at: Timestamp::from_unix_micros(row.try_get("created_at")?),
            })
        })
        .collect::<Result<Vec<_>, loadstar_store::sql::Error>>()?;
    Ok(Json(ApiKeyList { items }))
}

/// Revokes one of the caller's keys (admins: anyone's). Takes effect on the next request.
#[utoipa::path(
    delete, path = "/v1/api-keys/{keyId}", tag = "api-keys",
    params(("keyId" = loadstar_core::Id, Path, description = "API key id")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such live key, or not yours", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke(
    State(state): State<ShopState>,
    principal: Principal,
    Path(raw_id): Path<String>,
) -> ShopResult<StatusCode> {
    let key_id = path_id("keyId", &raw_id)?;
    let result = query(
        "UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND revoked_at IS NULL AND (user_id = $2 OR $4 = 1)",
    )
    .bind(key_id.as_i64())
    .bind(principal.user_id.as_i64())
    .bind(Timestamp::now().unix_micros())
    .bind(i64::from(principal.is_admin()))
    .execute(state.db.writer())
    .await?;
    if result.rows_affected() == 0 {
        return Err(ShopError::NotFound("api key"));
    }
    tracing::info!(user_id = %principal.user_id, key_id = %key_id, "api key revoked");
    Ok(StatusCode::NO_CONTENT)
}
