//! Argon2id password hashing, off the async runtime.

use crate::error::ShopError;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;

/// Hashes and verifies passwords with configured Argon2id costs. Each call runs on the
/// blocking pool: a hash takes tens of milliseconds of CPU and must not stall the
/// executor threads that serve other requests.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Arc<Argon2<'static>>,
    /// A hash of a random password, verified when the user does not exist so that a
    /// failed login takes as long whether or not the email is registered.
    decoy_hash: Arc<str>,
}

impl PasswordHasher {
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Self, ShopError> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|error| ShopError::Internal(format!("argon2 parameters: {error}")))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        let decoy_hash = argon2
            .hash_password(b"decoy password that nobody has", &salt)
            .map_err(|error| ShopError::Internal(format!("argon2 hash: {error}")))?
            .to_string();
        Ok(Self {
            argon2: Arc::new(argon2),
            decoy_hash: decoy_hash.into(),
        })
    }

    /// A PHC-format Argon2id hash of `password` with a fresh random salt.
    pub async fn hash(&self, password: &str) -> Result<String, ShopError> {
        let argon2 = Arc::clone(&self.argon2);
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|error| ShopError::Internal(format!("argon2 hash: {error}")))
        })
        .await
        .map_err(|error| ShopError::Internal(format!("hashing task: {error}")))?
    }

    /// Whether `password` matches `stored`. `None` verifies against the decoy (and fails).
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, ShopError> {
        let argon2 = Arc::clone(&self.argon2);
        let password = password.to_owned();
        let is_decoy = stored.is_none();
        let stored = stored.map_or_else(|| self.decoy_hash.to_string(), str::to_owned);
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored)
                .map(|parsed| argon2.verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .map_err(|error| ShopError::Internal(format!("verification task: {error}")))?;
        Ok(matches && !is_decoy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = PasswordHasher::new(1024, 1).unwrap();
        let hash = hasher.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("wrong horse", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("anything", None).await.unwrap());
    }
}
