//! The authenticated caller, extracted from `Authorization` or `X-API-Key`.

use super::tokens::{hash_secret, split_api_key, API_KEY_PREFIX};
use crate::error::ShopError;
use crate::state::ShopState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use loadstar_core::Id;
use loadstar_store::sql::{query, Row};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }

    /// Parses the stored form; unknown values (a newer schema) get the least privilege.
    pub fn from_stored(value: &str) -> Role {
        if value == "admin" {
            Role::Admin
        } else {
            Role::Customer
        }
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A login session; carries the token hash so logout can revoke exactly it.
    Session {
        token_hash: String,
    },
    ApiKey {
        key_id: Id,
    },
}

/// An authenticated caller. Extracting it from a request without valid credentials
/// answers 401.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Id,
    pub role: Role,
    pub credential: Credential,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// May this caller act on data owned by `owner`? Admins may act on everyone's.
    pub fn may_access(&self, owner: Id) -> bool {
        self.user_id == owner || self.is_admin()
    }

    /// Fails with 403 unless the caller is an administrator.
    pub fn require_admin(&self) -> Result<(), ShopError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ShopError::Forbidden("this action requires the admin role"))
        }
    }
}

/// The bearer secret a request presents, before it is checked.
enum Presented<'a> {
    SessionToken(&'a str),
    ApiKey(&'a str),
}

fn presented_credential(headers: &HeaderMap) -> Result<Option<Presented<'_>>, ShopError> {
    if let Some(value) = headers.get("x-api-key") {
        let key = value
            .to_str()
            .map_err(|_| ShopError::Unauthenticated("the API key is malformed"))?;
        return Ok(Some(Presented::ApiKey(key.trim())));
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ShopError::Unauthenticated("the Authorization header is malformed"))?;
    let token = match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => {
            return Err(ShopError::Unauthenticated(
                "use Authorization: Bearer <token> or X-API-Key",
            ))
        }
    };
    if token.starts_with(API_KEY_PREFIX) {
        Ok(Some(Presented::ApiKey(token)))
    } else {
        Ok(Some(Presented::SessionToken(token)))
    }
}

impl FromRequestParts<ShopState> for Principal {
    type Rejection = ShopError;

    async fn from_request_parts(parts: &mut Parts, state: &ShopState) -> Result<Self, ShopError> {
        match presented_credential(&parts.headers)? {
            None => Err(ShopError::Unauthenticated(
                "this endpoint needs a session token or an API key",
            )),
            Some(Presented::SessionToken(token)) => authenticate_session(state, token).await,
            Some(Presented::ApiKey(key)) => authenticate_api_key(state, key).await,
        }
    }
}

async fn authenticate_session(state: &ShopState, token: &str) -> Result<Principal, ShopError> {
    let token_hash = hash_secret(token);
    let session =
        state
            .sessions
            .find_active(&token_hash)
            .await?
            .ok_or(ShopError::Unauthenticated(
                "the session token is invalid or expired",
            ))?;
    let role = user_role(state, session.user_id)
        .await?
        .ok_or(ShopError::Unauthenticated(
            "the session's user no longer exists",
        ))?;
    Ok(Principal {
        user_id: session.user_id,
        role,
        credential: Credential::Session { token_hash },
    })
}

async fn authenticate_api_key(state: &ShopState, key: &str) -> Result<Principal, ShopError> {
    const REJECTED: ShopError = ShopError::Unauthenticated("the API key is invalid or revoked");
    let (prefix, secret) = split_api_key(key).ok_or(REJECTED)?;
    let row = query(
        "SELECT k.id, k.user_id, k.secret_hash, u.role FROM api_keys k JOIN users u ON u.id = k.user_id \
         WHERE k.prefix = $1 AND k.revoked_at IS NULL",
    )
    .bind(prefix)
    .fetch_optional(state.db.consistent_reader())
    .await?
    .ok_or(REJECTED)?;
    let stored: String = row.try_get("secret_hash")?;
    let presented = hash_secret(secret);
    if !bool::from(presented.as_bytes().ct_eq(stored.as_bytes())) {
        return Err(REJECTED);
    }
    let role: String = row.try_get("role")?;
    Ok(Principal {
        user_id: Id::from_i64(row.try_get("user_id")?),
        role: Role::from_stored(&role),
        credential: Credential::ApiKey {
            key_id: Id::from_i64(row.try_get("id")?),
        },
    })
}

async fn user_role(state: &ShopState, user_id: Id) -> Result<Option<Role>, ShopError> {
    let row = query("SELECT role FROM users WHERE id = $1")
        .bind(user_id.as_i64())
        .fetch_optional(state.db.consistent_reader())
        .await?;
    row.map(|row| {
        row.try_get::<String, _>("role")
            .map(|role| Role::from_stored(&role))
    })
    .transpose()
    .map_err(ShopError::from)
}
