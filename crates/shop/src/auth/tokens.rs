//! Random bearer secrets and their stored hashes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Every API key starts with this, so it is recognisable in a `Bearer` header and by
/// secret scanners.
pub const API_KEY_PREFIX: &str = "lsk_";

/// 32 random bytes (256 bits) from the OS generator, base64url without padding.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a bearer secret: hex SHA-256. Secrets are high-entropy, so a fast
/// hash is enough; a slow one would cost every request.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A freshly issued API key: the public id part and the full key shown once.
#[derive(Debug)]
pub struct IssuedApiKey {
    /// `lsk_` + 12 hex chars: unique, listed, safe to show again.
    pub prefix: String,
    /// `<prefix>_<secret>`: what the client sends.
    pub key: String,
    /// Hash of the secret part, stored.
    pub secret_hash: String,
}

/// Makes a new API key.
pub fn issue_api_key() -> IssuedApiKey {
    let mut id_bytes = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut id_bytes);
    let prefix = format!("{API_KEY_PREFIX}{}", hex::encode(id_bytes));
    let secret = random_secret();
    IssuedApiKey {
        key: format!("{prefix}_{secret}"),
        secret_hash: hash_secret(&secret),
        prefix,
    }
}

/// Splits a presented key into `(prefix, secret)`, or `None` if it is not shaped like one.
pub fn split_api_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(API_KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let valid = id.len() == 12
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && !secret.is_empty()
        && secret.len() <= 64;
    valid.then(|| (&key[..API_KEY_PREFIX.len() + id.len()], secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_split_back_into_prefix_and_secret() {
        let issued = issue_api_key();
        let (prefix, secret) = split_api_key(&issued.key).unwrap();
        assert_eq!(prefix, issued.prefix);
        assert_eq!(hash_secret(secret), issued.secret_hash);
    }

    #[test]
    fn malformed_keys_do_not_split() {
        for bad in [
            "",
            "lsk_",
            "lsk_abc_def",
            "xyz_0123456789ab_secret",
            "lsk_0123456789ab_",
        ] {
            assert!(split_api_key(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_256_bits_and_unique() {
        let a = random_secret();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_secret());
    }
}
