//! The shop's internal messages: job payloads and events of the order pipeline.
//!
//! Jobs outlive the deploy that enqueued them and events reach consumers written later, so
//! their payloads need a schema that says what every field means and rules for changing it
//! without breaking what is already queued. The schemas are Protocol Buffers in
//! `proto/loadstar/shop/v1/messages.proto` (the compatibility rules are at its top); the
//! encoding is compact binary, which is what the job queue stores (`kind` + `payload`).
//! `build.rs` compiles them with protox and prost-build, so no `protoc` is needed.
//!
//! - [`v1`]: the generated message types.
//! - The kind constants ([`PAYMENT_CHARGE`], …) name each message on the queue; the
//!   [`ShopMessage`] trait ties each type to its kind, so a producer writes
//!   `(M::KIND, message.encode_to_vec())` and cannot pair a payload with the wrong kind.
//!   Encoding is plain [`prost::Message::encode_to_vec`]; decoding is
//!   [`prost::Message::decode`].
//! - [`decode_to_json`] shows a stored payload to the admin API, in the REST API's
//!   conventions rather than the canonical protobuf JSON mapping: camelCase keys, ids as
//!   decimal strings, amounts as numbers, instants as RFC 3339 strings under the field name
//!   without its `UnixMicros` suffix, and a webhook body embedded as JSON when it is JSON
//!   (`body`) or base64 when it is not (`bodyBase64`). It is a hand-written match per kind:
//!   prost-reflect would need the descriptor set embedded and extra dependencies only to
//!   produce the canonical mapping, which renders every 64-bit integer (amounts too) as a
//!   string and every `bytes` field as base64. Adding a kind means adding one arm, and a
//!   test fails if a kind in [`ALL_KINDS`] has none.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use loadstar_core::{Id, Timestamp};
use prost::Message;
use serde_json::{json, Value};

/// Generated from `proto/loadstar/shop/v1/messages.proto` (package `loadstar.shop.v1`).
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/loadstar.shop.v1.rs"));
}

/// Job: charge the customer for a newly placed order ([`v1::PaymentCharge`]).
pub const PAYMENT_CHARGE: &str = "payment.charge";
/// Event: an order was paid ([`v1::OrderPaid`]); fans out to the three jobs below.
pub const ORDER_PAID: &str = "order.paid";
/// Job: make the stock reserved by a paid order final ([`v1::InventoryCommit`]).
pub const INVENTORY_COMMIT: &str = "inventory.commit";
/// Job: POST a webhook to the order's `callbackUrl` ([`v1::NotificationCallback`]).
pub const NOTIFICATION_CALLBACK: &str = "notification.callback";
/// Job: record a business event for analytics ([`v1::AnalyticsRecord`]).
pub const ANALYTICS_RECORD: &str = "analytics.record";
/// Delayed job: cancel an order still unpaid after the payment window ([`v1::OrderExpiry`]).
pub const ORDER_EXPIRE: &str = "order.expire";
/// Job: create or update catalog products in bulk ([`v1::ProductImport`]).
pub const PRODUCT_IMPORT: &str = "product.import";

/// Every kind this module defines, e.g. for the admin UI's filter.
pub const ALL_KINDS: [&str; 7] = [
    PAYMENT_CHARGE,
    ORDER_PAID,
    INVENTORY_COMMIT,
    NOTIFICATION_CALLBACK,
    ANALYTICS_RECORD,
    ORDER_EXPIRE,
    PRODUCT_IMPORT,
];

/// A message type together with the kind it travels under on the job queue.
pub trait ShopMessage: Message + Default {
    const KIND: &'static str;
}

impl ShopMessage for v1::PaymentCharge {
    const KIND: &'static str = PAYMENT_CHARGE;
}
impl ShopMessage for v1::OrderPaid {
    const KIND: &'static str = ORDER_PAID;
}
impl ShopMessage for v1::InventoryCommit {
    const KIND: &'static str = INVENTORY_COMMIT;
}
impl ShopMessage for v1::NotificationCallback {
    const KIND: &'static str = NOTIFICATION_CALLBACK;
}
impl ShopMessage for v1::AnalyticsRecord {
    const KIND: &'static str = ANALYTICS_RECORD;
}
impl ShopMessage for v1::OrderExpiry {
    const KIND: &'static str = ORDER_EXPIRE;
}
impl ShopMessage for v1::ProductImport {
    const KIND: &'static str = PRODUCT_IMPORT;
}

/// Why a payload could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The kind is none of [`ALL_KINDS`]: another domain's job, or a kind from a newer
    /// or older deploy.
    #[error("unknown message kind `{kind}`")]
    UnknownKind { kind: String },
    /// The bytes are not a valid encoding of the message the kind names.
    #[error("payload of kind `{kind}` is not a valid message")]
    Malformed {
        kind: &'static str,
        #[source]
        source: prost::DecodeError,
    },
}

/// Decodes `payload` as the message of `kind` and renders it as JSON for the admin API.
pub fn decode_to_json(kind: &str, payload: &[u8]) -> Result<Value, MessageError> {
    let value = match kind {
        PAYMENT_CHARGE => {
            let message: v1::PaymentCharge = decode(payload)?;
            json!({
                "orderId": id(message.order_id),
                "userId": id(message.user_id),
                "amountCents": message.amount_cents,
                "currency": message.currency,
            })
        }
        ORDER_PAID => {
            let message: v1::OrderPaid = decode(payload)?;
            json!({
                "orderId": id(message.order_id),
                "userId": id(message.user_id),
                "amountCents": message.amount_cents,
                "currency": message.currency,
                "chargeId": message.charge_id,
                "paidAt": instant(message.paid_at_unix_micros),
            })
        }
        INVENTORY_COMMIT => {
            let message: v1::InventoryCommit = decode(payload)?;
            let lines: Vec<Value> = message
                .lines
                .iter()
                .map(|line| json!({ "productId": id(line.product_id), "quantity": line.quantity }))
                .collect();
            json!({ "orderId": id(message.order_id), "lines": lines })
        }
        NOTIFICATION_CALLBACK => {
            let message: v1::NotificationCallback = decode(payload)?;
            let mut value = json!({
                "orderId": id(message.order_id),
                "callbackUrl": message.callback_url,
                "event": message.event,
            });
            // A webhook body is JSON by design; anything else is shown exactly, not guessed at.
            let (key, body) = match serde_json::from_slice::<Value>(&message.body) {
                Ok(body) => ("body", body),
                Err(_) => ("bodyBase64", Value::String(STANDARD.encode(&message.body))),
            };
            value[key] = body;
            value
        }
        ANALYTICS_RECORD => {
            let message: v1::AnalyticsRecord = decode(payload)?;
            json!({
                "orderId": id(message.order_id),
                "event": message.event,
                "amountCents": message.amount_cents,
                "currency": message.currency,
                "at": instant(message.at_unix_micros),
            })
        }
        ORDER_EXPIRE => {
            let message: v1::OrderExpiry = decode(payload)?;
            json!({ "orderId": id(message.order_id), "userId": id(message.user_id) })
        }
        PRODUCT_IMPORT => {
            let message: v1::ProductImport = decode(payload)?;
            let products: Vec<Value> = message
                .products
                .iter()
                .map(|product| {
                    json!({
                        "sku": product.sku,
                        "name": product.name,
                        "description": product.description,
                        "priceCents": product.price_cents,
                        "currency": product.currency,
                        "stock": product.stock,
                    })
                })
                .collect();
            json!({ "requestedBy": id(message.requested_by), "products": products })
        }
        other => {
            return Err(MessageError::UnknownKind {
                kind: other.to_owned(),
            })
        }
    };
    Ok(value)
}

fn decode<M: ShopMessage>(payload: &[u8]) -> Result<M, MessageError> {
    M::decode(payload).map_err(|source| MessageError::Malformed {
        kind: M::KIND,
        source,
    })
}

/// Ids as the REST API writes them: decimal strings, since JavaScript loses precision
/// past 2^53.
fn id(raw: i64) -> String {
    Id::from_i64(raw).to_string()
}

fn instant(unix_micros: i64) -> String {
    Timestamp::from_unix_micros(unix_micros).to_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::v1::inventory_commit::Line;
    use super::v1::*;
    use super::*;

    const ORDER: i64 = 178_250_616_291_024_896;
    const USER: i64 = 178_250_600_000_000_001;
    const PRODUCT: i64 = 178_250_500_000_000_002;
    /// 2026-01-02T03:04:05.678901Z
    const PAID_AT: i64 = 1_767_323_045_678_901;

    fn payment_charge() -> PaymentCharge {
        PaymentCharge {
            order_id: ORDER,
            user_id: USER,
            amount_cents: 2_500,
            currency: "EUR".into(),
        }
    }

    fn order_paid() -> OrderPaid {
        OrderPaid {
            order_id: ORDER,
            user_id: USER,
            amount_cents: 2_500,
            currency: "EUR".into(),
            charge_id: "ch_123".into(),
            paid_at_unix_micros: PAID_AT,
        }
    }

    fn inventory_commit() -> InventoryCommit {
        InventoryCommit {
            order_id: ORDER,
            lines: vec![
                Line {
                    product_id: PRODUCT,
                    quantity: 2,
                },
                Line {
                    product_id: PRODUCT + 1,
                    quantity: 1,
                },
            ],
        }
    }

    fn notification_callback(body: &[u8]) -> NotificationCallback {
        NotificationCallback {
            order_id: ORDER,
            callback_url: "https://example.com/hooks/orders".into(),
            event: ORDER_PAID.into(),
            body: body.to_vec(),
        }
    }

    fn analytics_record() -> AnalyticsRecord {
        AnalyticsRecord {
            order_id: ORDER,
            event: ORDER_PAID.into(),
            amount_cents: 2_500,
            currency: "EUR".into(),
            at_unix_micros: PAID_AT,
        }
    }

    fn order_expiry() -> OrderExpiry {
        OrderExpiry {
            order_id: ORDER,
            user_id: USER,
        }
    }

    fn round_trips<M: ShopMessage + PartialEq + std::fmt::Debug>(message: M) {
        let bytes = message.encode_to_vec();
        assert_eq!(M::decode(bytes.as_slice()).ok(), Some(message));
    }

    fn shown<M: ShopMessage>(message: &M) -> Value {
        match decode_to_json(M::KIND, &message.encode_to_vec()) {
            Ok(value) => value,
            Err(error) => panic!("{} did not decode: {error}", M::KIND),
        }
    }

    #[test]
    fn every_message_survives_a_round_trip_through_bytes() {
        round_trips(payment_charge());
        round_trips(order_paid());
        round_trips(inventory_commit());
        round_trips(notification_callback(br#"{"status":"paid"}"#));
        round_trips(analytics_record());
        round_trips(order_expiry());
        round_trips(product_import());
    }

    fn product_import() -> ProductImport {
        ProductImport {
            products: vec![product_import::ImportedProduct {
                sku: "mug-01".into(),
                name: "Enamel mug".into(),
                description: String::new(),
                price_cents: 1_250,
                currency: "EUR".into(),
                stock: 25,
            }],
            requested_by: USER,
        }
    }

    #[test]
    fn product_import_is_shown_line_by_line() {
        assert_eq!(
            shown(&product_import()),
            json!({
                "requestedBy": "178250600000000001",
                "products": [{
                    "sku": "mug-01", "name": "Enamel mug", "description": "",
                    "priceCents": 1250, "currency": "EUR", "stock": 25,
                }],
            })
        );
    }

    #[test]
    fn ids_take_eight_bytes_whatever_their_value() {
        let expiry = order_expiry();
        // Two fields, each one tag byte and eight value bytes.
        assert_eq!(expiry.encode_to_vec().len(), 18);
    }

    #[test]
    fn payment_charge_is_shown_with_ids_as_strings() {
        assert_eq!(
            shown(&payment_charge()),
            json!({
                "orderId": "178250616291024896",
                "userId": "178250600000000001",
                "amountCents": 2500,
                "currency": "EUR",
            })
        );
    }

    #[test]
    fn order_paid_is_shown_with_its_instant_in_rfc_3339() {
        assert_eq!(
            shown(&order_paid()),
            json!({
                "orderId": "178250616291024896",
                "userId": "178250600000000001",
                "amountCents": 2500,
                "currency": "EUR",
                "chargeId": "ch_123",
                "paidAt": "2026-01-02T03:04:05.678901Z",
            })
        );
    }

    #[test]
    fn inventory_commit_is_shown_line_by_line() {
        assert_eq!(
            shown(&inventory_commit()),
            json!({
                "orderId": "178250616291024896",
                "lines": [
                    { "productId": "178250500000000002", "quantity": 2 },
                    { "productId": "178250500000000003", "quantity": 1 },
                ],
            })
        );
    }

    #[test]
    fn notification_callback_embeds_a_json_body_as_json() {
        assert_eq!(
            shown(&notification_callback(
                br#"{"orderId":"178250616291024896","status":"paid"}"#
            )),
            json!({
                "orderId": "178250616291024896",
                "callbackUrl": "https://example.com/hooks/orders",
                "event": "order.paid",
                "body": { "orderId": "178250616291024896", "status": "paid" },
            })
        );
    }

    #[test]
    fn notification_callback_shows_a_body_that_is_not_json_in_base64() {
        let shown = shown(&notification_callback(b"\xffnot json"));
        assert_eq!(shown["bodyBase64"], json!("/25vdCBqc29u"));
        assert!(shown.get("body").is_none());
    }

    #[test]
    fn analytics_record_is_shown_with_its_instant_in_rfc_3339() {
        assert_eq!(
            shown(&analytics_record()),
            json!({
                "orderId": "178250616291024896",
                "event": "order.paid",
                "amountCents": 2500,
                "currency": "EUR",
                "at": "2026-01-02T03:04:05.678901Z",
            })
        );
    }

    #[test]
    fn order_expiry_is_shown_with_ids_as_strings() {
        assert_eq!(
            shown(&order_expiry()),
            json!({ "orderId": "178250616291024896", "userId": "178250600000000001" })
        );
    }

    #[test]
    fn every_kind_has_a_decoder() {
        for kind in ALL_KINDS {
            // An empty payload is every field at its zero value: valid for every message.
            assert!(
                decode_to_json(kind, &[]).is_ok(),
                "{kind} has no arm in decode_to_json"
            );
        }
    }

    #[test]
    fn an_unknown_kind_is_an_error_that_names_it() {
        let error = decode_to_json("user.deleted", &order_expiry().encode_to_vec());
        assert!(
            matches!(&error, Err(MessageError::UnknownKind { kind }) if kind == "user.deleted")
        );
        assert_eq!(
            error.map_err(|e| e.to_string()).err().as_deref(),
            Some("unknown message kind `user.deleted`")
        );
    }

    #[test]
    fn garbage_bytes_are_an_error_for_every_kind_not_a_panic() {
        let garbage: [&[u8]; 3] = [
            // A varint that never ends.
            &[0xff; 11],
            // Field 1 announced as eight fixed bytes, then only two.
            &[0x09, 0x01, 0x02],
            // Field 1 as a varint where the schema says fixed 64-bit.
            &[0x08, 0x01],
        ];
        for kind in ALL_KINDS {
            for bytes in garbage {
                assert!(
                    matches!(
                        decode_to_json(kind, bytes),
                        Err(MessageError::Malformed { kind: k, .. }) if k == kind
                    ),
                    "{kind} accepted {bytes:?}"
                );
            }
        }
    }

    #[test]
    fn a_payload_of_another_kind_does_not_panic() {
        let paid = order_paid().encode_to_vec();
        for kind in ALL_KINDS {
            let _ = decode_to_json(kind, &paid);
        }
    }
}
