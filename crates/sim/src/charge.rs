//! A charge request as the provider's API accepts it, and the charge it becomes.

use crate::error::RequestError;
use loadstar_core::{FieldError, Timestamp};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The only currency the simulated provider settles.
pub const CURRENCY: &str = "EUR";

/// Longest order id accepted, in characters.
pub const MAX_ORDER_ID_CHARS: usize = 255;

const FIELDS: [&str; 3] = ["orderId", "amountCents", "currency"];

/// What a client asks to be charged. Two requests are the same charge when all three
/// fields are equal; that is what an idempotency key is compared against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub order_id: String,
    pub amount_cents: i64,
    pub currency: String,
}

impl ChargeRequest {
    /// Parses `{orderId, amountCents, currency}`: malformed JSON is a bad request; every
    /// missing, mistyped, out-of-range or unknown field is reported at once.
    pub fn from_json(body: &[u8]) -> Result<Self, RequestError> {
        let value: Value = serde_json::from_slice(body).map_err(|error| {
            RequestError::BadRequest(format!("the body is not valid JSON: {error}"))
        })?;
        let Value::Object(object) = value else {
            return Err(RequestError::Validation(vec![FieldError::new(
                "body",
                "must be a JSON object",
            )]));
        };
        let mut errors: Vec<FieldError> = object
            .keys()
            .filter(|key| !FIELDS.contains(&key.as_str()))
            .map(|key| FieldError::new(key.clone(), "is not a known field"))
            .collect();
        let order_id = order_id(&object).map_err(|e| errors.push(e)).ok();
        let amount_cents = amount_cents(&object).map_err(|e| errors.push(e)).ok();
        let currency = currency(&object).map_err(|e| errors.push(e)).ok();
        match (order_id, amount_cents, currency) {
            (Some(order_id), Some(amount_cents), Some(currency)) if errors.is_empty() => Ok(Self {
                order_id,
                amount_cents,
                currency,
            }),
            _ => Err(RequestError::Validation(errors)),
        }
    }
}

fn order_id(object: &Map<String, Value>) -> Result<String, FieldError> {
    match object.get("orderId") {
        Some(Value::String(text))
            if !text.trim().is_empty() && text.chars().count() <= MAX_ORDER_ID_CHARS =>
        {
            Ok(text.clone())
        }
        Some(Value::String(_)) => Err(FieldError::new(
            "orderId",
            format!("must be 1 to {MAX_ORDER_ID_CHARS} characters, not blank"),
        )),
        None | Some(Value::Null) => Err(FieldError::new("orderId", "is required")),
        Some(_) => Err(FieldError::new("orderId", "must be a string")),
    }
}

fn amount_cents(object: &Map<String, Value>) -> Result<i64, FieldError> {
    match object.get("amountCents") {
        None | Some(Value::Null) => Err(FieldError::new("amountCents", "is required")),
        Some(Value::Number(number)) => {
            number.as_i64().filter(|cents| *cents > 0).ok_or_else(|| {
                FieldError::new(
                    "amountCents",
                    "must be a positive integer number of minor units (cents)",
                )
            })
        }
        Some(_) => Err(FieldError::new("amountCents", "must be an integer")),
    }
}

fn currency(object: &Map<String, Value>) -> Result<String, FieldError> {
    match object.get("currency") {
        Some(Value::String(code)) if code == CURRENCY => Ok(code.clone()),
        None | Some(Value::Null) => Err(FieldError::new("currency", "is required")),
        Some(_) => Err(FieldError::new(
            "currency",
            format!("must be \"{CURRENCY}\", the only currency this provider settles"),
        )),
    }
}

/// Where a charge stands. The simulator only records charges that succeeded: a failure
/// it injects is transient and leaves nothing behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChargeStatus {
    Succeeded,
}

/// A charge the provider made: the body of `201 Created`, replayed verbatim for a
/// repeated idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Charge {
    /// `ch_` and 24 hex digits, unique per charge.
    pub charge_id: String,
    pub order_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: ChargeStatus,
    pub created_at: Timestamp,
}

impl Charge {
    /// The successful charge of `request`, made now.
    pub fn succeeded(request: ChargeRequest) -> Self {
        Self {
            charge_id: new_charge_id(),
            order_id: request.order_id,
            amount_cents: request.amount_cents,
            currency: request.currency,
            status: ChargeStatus::Succeeded,
            created_at: Timestamp::now(),
        }
    }
}

fn new_charge_id() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("ch_{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields_of(error: RequestError) -> Vec<String> {
        match error {
            RequestError::Validation(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_well_formed_request_parses() {
        let request =
            ChargeRequest::from_json(br#"{"orderId":"42","amountCents":1250,"currency":"EUR"}"#);
        assert_eq!(
            request.ok(),
            Some(ChargeRequest {
                order_id: "42".to_owned(),
                amount_cents: 1250,
                currency: "EUR".to_owned(),
            })
        );
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let error =
            ChargeRequest::from_json(br#"{"orderId":"","amountCents":0,"currency":"USD","tip":1}"#)
                .err()
                .map(fields_of);
        assert_eq!(
            error,
            Some(vec![
                "tip".to_owned(),
                "orderId".to_owned(),
                "amountCents".to_owned(),
                "currency".to_owned()
            ])
        );
    }

    #[test]
    fn fractional_and_textual_amounts_are_refused() {
        for body in [
            &br#"{"orderId":"1","amountCents":12.5,"currency":"EUR"}"#[..],
            &br#"{"orderId":"1","amountCents":"12","currency":"EUR"}"#[..],
        ] {
            let fields = ChargeRequest::from_json(body).err().map(fields_of);
            assert_eq!(fields, Some(vec!["amountCents".to_owned()]));
        }
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        assert!(matches!(
            ChargeRequest::from_json(b"{\"orderId\":"),
            Err(RequestError::BadRequest(_))
        ));
    }

    #[test]
    fn charge_ids_are_prefixed_and_distinct() {
        let first = new_charge_id();
        assert!(first.starts_with("ch_") && first.len() == 27, "{first}");
        assert_ne!(first, new_charge_id());
    }
}
