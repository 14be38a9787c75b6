//! Argon2id password hashing: off the async runtime, a bounded few at a time, in memory
//! allocated once and reused (see [`super::password_work`]).
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`). Verification takes
//! its parameters from the stored string, so hashes made with other costs (or by earlier
//! binaries, through `argon2`'s own allocating path) still verify.

use super::password_work::{PasswordWork, PasswordWorkLimits};
use crate::error::ShopError;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{
    self, Decimal, Ident, Output, ParamsString, PasswordHash, PasswordHasher as _,
    PasswordVerifier, Salt, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::cell::RefCell;
use std::sync::Arc;

/// Hashes and verifies passwords with configured Argon2id costs. Each computation runs on
/// the blocking pool (it takes tens of milliseconds of CPU and must not stall the
/// executor threads that serve other requests), within the bound of [`PasswordWork`]:
/// beyond it the caller gets [`ShopError::Overloaded`] at once.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    work: PasswordWork,
    /// A hash of a random password, verified when the user does not exist so that a
    /// failed login takes as long whether or not the email is registered. It goes through
    /// the same bound as any other verification.
    decoy_hash: Arc<str>,
}

impl PasswordHasher {
    /// Argon2id with `memory_kib` and `iterations`, one lane; password work bounded by
    /// `limits`.
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        limits: PasswordWorkLimits,
    ) -> Result<Self, ShopError> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|error| ShopError::Internal(format!("argon2 parameters: {error}")))?;
        let work = PasswordWork::new(limits);
        // The decoy's buffer becomes the pool's first, so starting costs no extra memory.
        let mut memory = Vec::new();
        let decoy_hash = hash_in(&params, b"decoy password that nobody has", &mut memory)?;
        work.donate(memory);
        Ok(Self {
            params,
            work,
            decoy_hash: decoy_hash.into(),
        })
    }

    /// The bound this hasher's work runs under.
    pub fn work(&self) -> &PasswordWork {
        &self.work
    }

    /// A PHC-format Argon2id hash of `password` with a fresh random salt.
    pub async fn hash(&self, password: &str) -> Result<String, ShopError> {
        let params = self.params.clone();
        let password = password.to_owned();
        self.work
            .run(move |memory| hash_in(&params, password.as_bytes(), memory))
            .await?
    }

    /// Whether `password` matches `stored`. `None` verifies against the decoy (and fails).
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, ShopError> {
        let password = password.to_owned();
        let is_decoy = stored.is_none();
        let stored = stored.map_or_else(|| self.decoy_hash.to_string(), str::to_owned);
        let matches = self
            .work
            .run(move |memory| verify_in(password.as_bytes(), &stored, memory))
            .await?;
        Ok(matches && !is_decoy)
    }
}

/// Hashes `password` with `params` and a fresh salt, computing in `memory`.
fn hash_in(params: &Params, password: &[u8], memory: &mut Vec<Block>) -> Result<String, ShopError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2InMemory::new(memory)
        .hash_password_customized(
            password,
            Some(Algorithm::Argon2id.ident()),
            Some(Version::V0x13.into()),
            params.clone(),
            salt.as_salt(),
        )
        .map(|hash| hash.to_string())
        .map_err(|error| ShopError::Internal(format!("argon2 hash: {error}")))
}

/// Verifies `password` against the PHC string `stored`, computing in `memory`. A stored
/// string that does not parse verifies nothing.
fn verify_in(password: &[u8], stored: &str, memory: &mut Vec<Block>) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2InMemory::new(memory)
            .verify_password(password, &parsed)
            .is_ok()
    })
}

/// Argon2 computing in memory lent by the caller instead of a fresh allocation per call.
/// Implementing `argon2`'s [`password_hash::PasswordHasher`] gives verification (parameters
/// from the stored hash, constant-time comparison) from the `password_hash` crate itself
/// through its blanket [`PasswordVerifier`].
struct Argon2InMemory<'m> {
    memory: RefCell<&'m mut Vec<Block>>,
}

impl<'m> Argon2InMemory<'m> {
    fn new(memory: &'m mut Vec<Block>) -> Self {
        Self {
            memory: RefCell::new(memory),
        }
    }
}

impl password_hash::PasswordHasher for Argon2InMemory<'_> {
    type Params = Params;

    fn hash_password_customized<'a>(
        &self,
        password: &[u8],
        algorithm: Option<Ident<'a>>,
        version: Option<Decimal>,
        params: Params,
        salt: impl Into<Salt<'a>>,
    ) -> password_hash::Result<PasswordHash<'a>> {
        let algorithm = algorithm
            .map(Algorithm::try_from)
            .transpose()?
            .unwrap_or_default();
        let version = version
            .map(Version::try_from)
            .transpose()?
            .unwrap_or_default();
        let salt = salt.into();
        let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
        let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
        let argon2 = Argon2::new(algorithm, version, params.clone());

        // A stored hash with a higher memory cost than the buffer has grows it; the
        // buffer keeps that size for later calls instead of allocating again.
        let blocks = params.block_count();
        let mut memory = self.memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let output = Output::init_with(output_len, |out| {
            argon2
                .hash_password_into_with_memory(password, salt_bytes, out, &mut memory[..blocks])
                .map_err(password_hash::Error::from)
        })?;
        Ok(PasswordHash {
            algorithm: algorithm.ident(),
            version: Some(version.into()),
            params: ParamsString::try_from(&params)?,
            salt: Some(salt),
            hash: Some(output),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(
            1024,
            1,
            PasswordWorkLimits::new(2, 64, Duration::from_secs(30)),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = hasher();
        let hash = hasher.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert!(hasher.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("wrong horse", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("anything", None).await.unwrap());
        assert!(!hasher.verify("anything", Some("not a phc")).await.unwrap());
    }

    /// Users created by earlier binaries (hashes from `argon2`'s own allocating path, with
    /// other costs) still log in, and hashes made here verify with `argon2` itself.
    #[tokio::test]
    async fn hashes_are_interchangeable_with_argon2s_own() {
        let hasher = hasher();
        let salt = SaltString::generate(&mut OsRng);
        let params = Params::new(2048, 2, 1, None).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"legacy password", &salt)
            .unwrap()
            .to_string();
        assert!(hasher
            .verify("legacy password", Some(&theirs))
            .await
            .unwrap());
        assert!(!hasher
            .verify("legacy passwore", Some(&theirs))
            .await
            .unwrap());

        let ours = hasher.hash("new password").await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"new password", &parsed)
            .is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reused_memory_gives_the_same_answers_and_is_made_once_per_slot() {
        let hasher = hasher();
        let hash = hasher.hash("correct horse").await.unwrap();
        for round in 0..20 {
            let password = if round % 2 == 0 {
                "correct horse"
            } else {
                "wrong horse"
            };
            assert_eq!(
                hasher.verify(password, Some(&hash)).await.unwrap(),
                round % 2 == 0
            );
        }
        assert!(hasher.work().buffers_made() <= 2);
    }
}
