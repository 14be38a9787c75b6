//! The signature on every webhook loadstar sends (alerts here; the shop's callbacks use
//! the same scheme): `Loadstar-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
//! with the Unix-seconds `Loadstar-Timestamp` it covers, so a receiver can reject forged
//! and replayed deliveries.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `Loadstar-Signature` value for `body` sent at `timestamp` (Unix seconds).
pub fn webhook_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_secret_timestamp_and_body() {
        let a = webhook_signature("secret", 1_700_000_000, b"{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64);
        assert_ne!(a, webhook_signature("secret", 1_700_000_001, b"{}"));
        assert_ne!(a, webhook_signature("secret", 1_700_000_000, b"{ }"));
        assert_ne!(a, webhook_signature("other", 1_700_000_000, b"{}"));
    }
}
