//! The idempotency ledger: every key the provider has seen, in flight or completed.
//!
//! A key is claimed before a charge is attempted and held by a [`Reservation`]. While it
//! is held, the same key gets [`Claim::InFlight`] (409); once the charge succeeds the
//! reservation records it and every later request with the key gets the same charge back
//! ([`Claim::Completed`]), so nothing is ever charged twice. A reservation dropped
//! without completing (an injected failure, a client that hung up) frees the key: nothing
//! was charged, so a retry may charge. Keys live as long as the simulator; it is a test
//! double, not a store, and a run's keys fit in memory.

use crate::charge::{Charge, ChargeRequest};
use axum::http::{HeaderMap, HeaderName};
use loadstar_core::FieldError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The request header that carries the key.
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The response header that marks a replayed answer.
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// Why a request's key is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKey {
    #[error("is required: send the order id (or any unique key) as Idempotency-Key")]
    Missing,
    #[error("must be 1 to {MAX_KEY_LEN} visible ASCII characters")]
    Malformed,
}

impl From<InvalidKey> for FieldError {
    fn from(error: InvalidKey) -> Self {
        FieldError::new("Idempotency-Key", error.to_string())
    }
}

/// The request's idempotency key: any 1–255 visible ASCII characters. The provider does
/// not tie it to the body; loadstar's workers send the order id.
pub fn idempotency_key(headers: &HeaderMap) -> Result<String, InvalidKey> {
    let value = headers.get(&IDEMPOTENCY_KEY).ok_or(InvalidKey::Missing)?;
    let bytes = value.as_bytes();
    if (1..=MAX_KEY_LEN).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_graphic) {
        Ok(String::from_utf8_lossy(bytes).into_owned())
    } else {
        Err(InvalidKey::Malformed)
    }
}

/// What a key's claim found.
#[derive(Debug)]
pub enum Claim {
    /// The key is new: attempt the charge, then complete the reservation.
    Granted(Reservation),
    /// The key already charged this: answer with that charge, charge nothing.
    Completed(Charge),
    /// A request with this key is being handled right now.
    InFlight,
    /// The key was used for a different charge (order, amount or currency differ).
    OtherRequest,
}

#[derive(Debug)]
enum Entry {
    InFlight(ChargeRequest),
    Completed(ChargeRequest, Charge),
}

type Entries = Arc<Mutex<HashMap<String, Entry>>>;

/// Every key seen, shared by all requests.
#[derive(Debug, Default)]
pub struct IdempotencyLedger {
    entries: Entries,
}

impl IdempotencyLedger {
    /// Claims `key` for `request`, atomically with respect to every other claim.
    pub fn claim(&self, key: &str, request: &ChargeRequest) -> Claim {
        let mut entries = lock(&self.entries);
        match entries.get(key) {
            None => {
                entries.insert(key.to_owned(), Entry::InFlight(request.clone()));
                Claim::Granted(Reservation {
                    entries: Arc::clone(&self.entries),
                    key: key.to_owned(),
                    completed: false,
                })
            }
            Some(Entry::InFlight(first) | Entry::Completed(first, _)) if first != request => {
                Claim::OtherRequest
            }
            Some(Entry::InFlight(_)) => Claim::InFlight,
            Some(Entry::Completed(_, charge)) => Claim::Completed(charge.clone()),
        }
    }
}

/// Exclusive hold on a new key until its charge succeeds or is abandoned.
#[derive(Debug)]
pub struct Reservation {
    entries: Entries,
    key: String,
    completed: bool,
}

impl Reservation {
    /// Records `charge` as the key's answer for good.
    pub fn complete(mut self, request: ChargeRequest, charge: Charge) {
        lock(&self.entries).insert(self.key.clone(), Entry::Completed(request, charge));
        self.completed = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.completed {
            lock(&self.entries).remove(&self.key);
        }
    }
}

fn lock(entries: &Entries) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
    entries.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn request(order_id: &str, amount_cents: i64) -> ChargeRequest {
        ChargeRequest {
            order_id: order_id.to_owned(),
            amount_cents,
            currency: "EUR".to_owned(),
        }
    }

    #[test]
    fn a_completed_key_answers_with_its_first_charge() {
        let ledger = IdempotencyLedger::default();
        let Claim::Granted(reservation) = ledger.claim("k", &request("1", 100)) else {
            panic!("a new key is granted");
        };
        let charge = Charge::succeeded(request("1", 100));
        reservation.complete(request("1", 100), charge.clone());
        match ledger.claim("k", &request("1", 100)) {
            Claim::Completed(replayed) => assert_eq!(replayed, charge),
            other => panic!("expected the first charge, got {other:?}"),
        }
    }

    #[test]
    fn a_key_in_flight_is_refused_until_its_reservation_is_dropped() {
        let ledger = IdempotencyLedger::default();
        let Claim::Granted(reservation) = ledger.claim("k", &request("1", 100)) else {
            panic!("a new key is granted");
        };
        assert!(matches!(
            ledger.claim("k", &request("1", 100)),
            Claim::InFlight
        ));
        drop(reservation);
        assert!(matches!(
            ledger.claim("k", &request("1", 100)),
            Claim::Granted(_)
        ));
    }

    #[test]
    fn a_key_reused_for_another_charge_is_refused() {
        let ledger = IdempotencyLedger::default();
        let _held = ledger.claim("k", &request("1", 100));
        assert!(matches!(
            ledger.claim("k", &request("1", 200)),
            Claim::OtherRequest
        ));
    }

    #[test]
    fn keys_must_be_present_short_and_visible_ascii() {
        let mut headers = HeaderMap::new();
        assert_eq!(idempotency_key(&headers), Err(InvalidKey::Missing));
        for bad in ["", "has space", &"k".repeat(MAX_KEY_LEN + 1)] {
            headers.insert(&IDEMPOTENCY_KEY, HeaderValue::from_str(bad).unwrap());
            assert_eq!(
                idempotency_key(&headers),
                Err(InvalidKey::Malformed),
                "{bad:?}"
            );
        }
        headers.insert(
            &IDEMPOTENCY_KEY,
            HeaderValue::from_static("order-178250616291024896"),
        );
        assert_eq!(
            idempotency_key(&headers).ok().as_deref(),
            Some("order-178250616291024896")
        );
    }
}
