//! Users: sign-up, profile reads and updates, and the registration used by
//! `loadstar admin create`.

pub mod repository;
pub mod routes;

use crate::auth::Role;
use crate::error::{ShopError, ShopResult};
use crate::state::ShopState;
use crate::validation::{is_plausible_email, Validator};
use loadstar_core::{Id, Timestamp};
use loadstar_store::StoreError;
use serde::{Deserialize, Serialize};

/// Password length bounds: at least 8 (NIST SP 800-63B), at most 128 to bound hashing work.
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

/// A user as clients see it. Never carries the password hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: Id,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// `POST /v1/users` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    #[schema(format = Email, max_length = 254, example = "ada@example.com")]
    pub email: String,
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
}

impl SignUp {
    fn validate(&self) -> ShopResult<()> {
        let mut validator = Validator::new();
        validator
            .check(
                is_plausible_email(self.email.trim()),
                "email",
                "must be an email address",
            )
            .check(
                (PASSWORD_MIN..=PASSWORD_MAX).contains(&self.password.chars().count()),
                "password",
                "must be between 8 and 128 characters",
            )
            .text_length("name", &self.name, 1, 100);
        validator.finish()
    }
}

/// Emails are unique regardless of case: `Ada@Example.com` and `ada@example.com` are one
/// account. The address is kept as typed for display.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Registers a user with `role` after validating the input and hashing the password.
pub async fn register(state: &ShopState, input: SignUp, role: Role) -> ShopResult<User> {
    input.validate()?;
    let password_hash = state.passwords.hash(&input.password).await?;
    let now = Timestamp::now();
    let user = User {
        id: state.ids.next_id(),
        email: input.email.trim().to_owned(),
        name: input.name.trim().to_owned(),
        role,
        created_at: now,
        updated_at: now,
    };
    repository::insert(&state.db, &user, &password_hash)
        .await
        .map_err(email_conflict)?;
    tracing::info!(user_id = %user.id, role = role.as_str(), "user registered");
    Ok(user)
}

/// A unique violation on write means the email belongs to another account.
pub(crate) fn email_conflict(error: StoreError) -> ShopError {
    if error.is_unique_violation() {
        ShopError::Conflict {
            slug: "email-taken",
            detail: "an account with this email already exists".to_owned(),
        }
    } else {
        error.into()
    }
}
