//! Who is calling: passwords, session tokens, API keys, and the [`Principal`] extractor.
//!
//! Two credentials reach the API: a login session token (`Authorization: Bearer <token>`)
//! and an API key (`X-API-Key: lsk_…` or `Authorization: Bearer lsk_…`). Both are
//! 256-bit random secrets stored only as SHA-256 hashes: a leaked database cannot be
//! replayed, and a hash per request costs microseconds where Argon2 would cost
//! milliseconds (Argon2id is for low-entropy passwords only).

pub mod password_work;
pub mod passwords;
pub mod principal;
pub mod redis_session_store;
pub mod session_store;
pub mod sql_session_store;
pub mod tokens;

pub use password_work::{PasswordWork, PasswordWorkLimits};
pub use passwords::PasswordHasher;
pub use principal::{Principal, Role};
pub use redis_session_store::RedisSessionStore;
pub use session_store::{Session, SessionStore};
pub use sql_session_store::SqlSessionStore;
