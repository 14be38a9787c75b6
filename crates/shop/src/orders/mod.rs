//! Orders: placed by a customer for their own account, priced on the server, stock
//! taken atomically, idempotent under retries, cancellable while pending.
//!
//! Stock is decremented with one conditional statement per line
//! (`UPDATE … SET stock = stock - q WHERE stock >= q`), so concurrent orders can never
//! oversell: the database serialises them on the product row and the loser sees no row.
//! Lines are processed in product-id order so two orders never wait on each other's rows
//! in opposite orders (no deadlocks on PostgreSQL).

pub mod repository;
pub mod routes;

use crate::error::ShopResult;
use crate::validation::Validator;
use loadstar_core::{Id, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Most lines in one order.
pub const MAX_LINES: usize = 100;
/// Most units of one product in one order.
pub const MAX_QUANTITY: i64 = 1_000;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Created, stock reserved, waiting for payment.
    Pending,
    Paid,
    /// Payment gave up; stock stays reserved until an admin retries or cancels.
    PaymentFailed,
    /// Cancelled; its stock went back to the catalog.
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::PaymentFailed => "payment_failed",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(OrderStatus::Pending),
            "paid" => Some(OrderStatus::Paid),
            "payment_failed" => Some(OrderStatus::PaymentFailed),
            "cancelled" => Some(OrderStatus::Cancelled),
            _ => None,
        }
    }
}

/// One line of an order, with the name and price it was sold at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub product_id: Id,
    pub product_name: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
    pub line_total_cents: i64,
}

/// An order as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: Id,
    pub user_id: Id,
    pub status: OrderStatus,
    pub total_cents: i64,
    pub currency: String,
    pub items: Vec<OrderItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A requested line: which product, how many.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderLine {
    pub product_id: Id,
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
}

/// `POST /v1/users/{userId}/orders` body. Prices come from the catalog, never the client.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrder {
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<OrderLine>,
    /// Optional `http(s)` URL notified when the order's payment settles.
    #[serde(default)]
    #[schema(
        max_length = 2048,
        pattern = "^https?://",
        example = "https://example.com/hooks/orders"
    )]
    pub callback_url: Option<String>,
}

impl PlaceOrder {
    pub fn validate(&self) -> ShopResult<()> {
        let mut validator = Validator::new();
        validator.check(
            (1..=MAX_LINES).contains(&self.items.len()),
            "items",
            "must hold between 1 and 100 lines",
        );
        let mut seen = std::collections::HashSet::new();
        for (index, line) in self.items.iter().enumerate() {
            validator.range(
                &format!("items[{index}].quantity"),
                line.quantity,
                1,
                MAX_QUANTITY,
            );
            validator.check(
                seen.insert(line.product_id),
                &format!("items[{index}].productId"),
                "appears twice; put the total quantity on one line",
            );
        }
        if let Some(url) = &self.callback_url {
            let valid = url.len() <= 2_048
                && url::Url::parse(url).is_ok_and(|parsed| {
                    matches!(parsed.scheme(), "http" | "https") && parsed.has_host()
                });
            validator.check(valid, "callbackUrl", "must be an absolute http(s) URL");
        }
        validator.finish()
    }

    /// A digest of the request, stored with its idempotency key: a retry must send the
    /// same body, and a different body under the same key is a client bug worth a 422.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&canonical))
    }
}
