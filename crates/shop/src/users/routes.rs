//! `/v1/users` handlers.

use super::{email_conflict, register, repository, SignUp, User, PASSWORD_MAX, PASSWORD_MIN};
use crate::auth::{Principal, Role};
use crate::error::{ShopError, ShopResult};
use crate::extract::path_id;
use crate::state::ShopState;
use crate::validation::{is_plausible_email, Validator};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use loadstar_core::json_body::JsonBody;
use loadstar_core::{Problem, Timestamp};
use serde::Deserialize;

/// Creates a customer account.
#[utoipa::path(
    post, path = "/v1/users", tag = "users",
    request_body = SignUp,
    responses(
        (status = 201, description = "account created", body = User),
        (status = 400, description = "invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "email already registered", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "password work is at its bound (too many logins or sign-ups at once); retry after Retry-After seconds", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "seconds to wait before retrying"))),
    )
)]
pub async fn create_user(
    State(state): State<ShopState>,
    JsonBody(input): JsonBody<SignUp>,
) -> ShopResult<impl IntoResponse> {
    let user = register(&state, input, Role::Customer).await?;
    let location = format!("/v1/users/{}", user.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(user),
    ))
}

/// Reads a user: yourself, or anyone if you are an admin.
#[utoipa::path(
    get, path = "/v1/users/{userId}", tag = "users",
    params(("userId" = loadstar_core::Id, Path, description = "user id")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, body = User),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such user, or not yours", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_user(
    State(state): State<ShopState>,
    principal: Principal,
    Path(raw_id): Path<String>,
) -> ShopResult<Json<User>> {
    let user_id = path_id("userId", &raw_id)?;
    if !principal.may_access(user_id) {
        return Err(ShopError::NotFound("user"));
    }
    let user = repository::find(&state.db, user_id)
        .await?
        .ok_or(ShopError::NotFound("user"))?;
    Ok(Json(user))
}

/// `PATCH /v1/users/{userId}` body (JSON merge patch: only the fields to change).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default, deserialize_with = "present_value")]
    #[schema(nullable = false, format = Email, max_length = 254)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "present_value")]
    #[schema(nullable = false, min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present_value")]
    #[schema(nullable = false, min_length = 8, max_length = 128)]
    pub password: Option<String>,
    /// Admins only.
    #[serde(default, deserialize_with = "present_value")]
    #[schema(nullable = false)]
    pub role: Option<Role>,
}

/// A merge patch's `null` means "remove the field"; every user field is required, so a
/// present field must carry a value. Absent fields stay `None` through `default`.
fn present_value<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Updates a user's email, name or password (admins: also role).
#[utoipa::path(
    patch, path = "/v1/users/{userId}", tag = "users",
    params(("userId" = loadstar_core::Id, Path, description = "user id")),
    request_body(content = UserPatch, content_type = "application/merge-patch+json"),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, body = User),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "role change by a non-admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "email already registered", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "password work is at its bound (too many logins or sign-ups at once); retry after Retry-After seconds", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "seconds to wait before retrying"))),
    )
)]
pub async fn patch_user(
    State(state): State<ShopState>,
    principal: Principal,
    Path(raw_id): Path<String>,
    JsonBody(patch): JsonBody<UserPatch>,
) -> ShopResult<Json<User>> {
    let user_id = path_id("userId", &raw_id)?;
    if !principal.may_access(user_id) {
        return Err(ShopError::NotFound("user"));
    }
    let mut validator = Validator::new();
    if let Some(email) = &patch.email {
        validator.check(
            is_plausible_email(email.trim()),
            "email",
            "must be an email address",
        );
    }
    if let Some(name) = &patch.name {
        validator.text_length("name", name, 1, 100);
    }
    if let Some(password) = &patch.password {
        validator.check(
            (PASSWORD_MIN..=PASSWORD_MAX).contains(&password.chars().count()),
            "password",
            "must be between 8 and 128 characters",
        );
    }
    validator.finish()?;
    if patch.role.is_some() {
        principal.require_admin()?;
    }

    let mut user = repository::find(&state.db, user_id)
        .await?
        .ok_or(ShopError::NotFound("user"))?;
    if let Some(email) = patch.email {
        user.email = email.trim().to_owned();
    }
    if let Some(name) = patch.name {
        user.name = name.trim().to_owned();
    }
    if let Some(role) = patch.role {
        user.role = role;
    }
    user.updated_at = Timestamp::now();
    let password_hash = match &patch.password {
        Some(password) => Some(state.passwords.hash(password).await?),
        None => None,
    };
    repository::update(&state.db, &user, password_hash.as_deref())
        .await
        .map_err(email_conflict)?;
    Ok(Json(user))
}
