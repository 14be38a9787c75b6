//! `/v1/sessions`: log in with email and password, log out.

use crate::auth::principal::Credential;
use crate::auth::tokens::{hash_secret, random_secret};
use crate::auth::Principal;
use crate::error::{ShopError, ShopResult};
use crate::state::ShopState;
use crate::users::{repository, User};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use loadstar_core::json_body::JsonBody;
use loadstar_core::{Id, Problem, Timestamp};
use serde::{Deserialize, Serialize};

/// Email and password, as sent to log in or to issue an API key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub email: String,
    pub password: String,
}

/// A new session. The token is shown once; the server keeps only its hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionCreated {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: Timestamp,
    pub user_id: Id,
}

/// Checks an email and password. Unknown email and wrong password fail alike, in the same
/// time, so the answer does not reveal which accounts exist.
pub async fn check_password(state: &ShopState, email: &str, password: &str) -> ShopResult<User> {
    let found = repository::find_credentials(&state.db, email).await?;
    let stored_hash = found.as_ref().map(|(_, hash)| hash.as_str());
    let matches = state.passwords.verify(password, stored_hash).await?;
    match found {
        Some((user, _)) if matches => Ok(user),
        _ => Err(ShopError::Unauthenticated("the email or password is wrong")),
    }
}

/// Logs in.
#[utoipa::path(
    post, path = "/v1/sessions", tag = "sessions",
    request_body = Login,
    responses(
        (status = 201, body = SessionCreated),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "wrong email or password", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "password work is at its bound (too many logins or sign-ups at once); retry after Retry-After seconds", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "seconds to wait before retrying"))),
    )
)]
pub async fn create_session(
    State(state): State<ShopState>,
    JsonBody(login): JsonBody<Login>,
) -> ShopResult<impl IntoResponse> {
    let user = check_password(&state, &login.email, &login.password).await?;
    let token = random_secret();
    let session = state
        .sessions
        .create(&hash_secret(&token), user.id, state.session_ttl)
        .await?;
    tracing::info!(user_id = %user.id, "session created");
    Ok((
        StatusCode::CREATED,
        Json(SessionCreated {
            token,
            expires_at: session.expires_at,
            user_id: user.id,
        }),
    ))
}

/// Logs out: revokes the session whose token authenticates this request.
#[utoipa::path(
    delete, path = "/v1/sessions/current", tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "session revoked"),
        (status = 400, description = "authenticated with an API key, not a session", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the session store (Redis) is unreachable; nothing was revoked, retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_current_session(
    State(state): State<ShopState>,
    principal: Principal,
) -> ShopResult<StatusCode> {
    let Credential::Session { token_hash } = &principal.credential else {
        return Err(ShopError::BadRequest(
            "this request is authenticated with an API key; revoke it with DELETE /v1/api-keys/{keyId}"
                .to_owned(),
        ));
    };
    state.sessions.revoke(token_hash).await?;
    tracing::info!(user_id = %principal.user_id, "session revoked");
    Ok(StatusCode::NO_CONTENT)
}
