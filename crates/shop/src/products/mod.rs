//! The catalog: products with price, currency and stock.
//!
//! Anyone may browse; admins write. Every product carries a `version` that increments
//! on each change (including stock moves by orders); it is the `ETag`, so conditional
//! reads (`If-None-Match` → 304) and optimistic writes (`If-Match` → 412) come for free.

pub mod cache;
pub mod conditional;
pub mod repository;
pub mod routes;
pub mod views;

use crate::error::ShopResult;
use crate::validation::{is_currency_code, Validator};
use loadstar_core::{Id, Timestamp};
use serde::{Deserialize, Serialize};

/// Highest price accepted, in minor units (ten billion of a currency's major unit).
pub const MAX_PRICE_CENTS: i64 = 1_000_000_000_000;
/// Highest stock level accepted.
pub const MAX_STOCK: i64 = 1_000_000_000;

/// A product as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: Id,
    pub sku: String,
    pub name: String,
    pub description: String,
    /// Price in minor units of `currency` (cents for EUR/USD).
    pub price_cents: i64,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    pub stock: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(skip)]
    pub version: i64,
}

impl Product {
    /// The entity tag of this version of the product.
    pub fn etag(&self) -> String {
        etag_of(self.version)
    }
}

/// The entity tag of a product's `version`.
pub fn etag_of(version: impl std::fmt::Display) -> String {
    format!("\"v{version}\"")
}

/// Body of `POST /v1/products` and `PUT /v1/products/{productId}`: every writable field.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductInput {
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub sku: String,
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: String,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub price_cents: i64,
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: i64,
}

/// Body of `PATCH /v1/products/{productId}` (RFC 7396): any subset of the writable
/// fields. Every product field is required, so `null` (delete) is not allowed. Documents
/// the contract; the handler applies the patch field by field to name each bad field.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct ProductPatch {
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9._-]+$"
    )]
    sku: Option<String>,
    #[schema(nullable = false, min_length = 1, max_length = 200, pattern = "\\S")]
    name: Option<String>,
    #[schema(nullable = false, max_length = 5000)]
    description: Option<String>,
    #[schema(nullable = false, minimum = 0, maximum = 1_000_000_000_000_i64)]
    price_cents: Option<i64>,
    #[schema(nullable = false, pattern = "^[A-Z]{3}$")]
    currency: Option<String>,
    #[schema(nullable = false, minimum = 0, maximum = 1_000_000_000)]
    stock: Option<i64>,
}

impl ProductInput {
    /// Trims text fields and checks every rule, reporting all failures at once.
    pub fn validated(mut self) -> ShopResult<Self> {
        self.sku = self.sku.trim().to_owned();
        self.name = self.name.trim().to_owned();
        self.description = self.description.trim().to_owned();
        let mut validator = Validator::new();
        validator
            .text_length("sku", &self.sku, 1, 64)
            .check(
                self.sku
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')),
                "sku",
                "may contain only letters, digits, '-', '_' and '.'",
            )
            .text_length("name", &self.name, 1, 200)
            .text_length("description", &self.description, 0, 5_000)
            .range("priceCents", self.price_cents, 0, MAX_PRICE_CENTS)
            .check(
                is_currency_code(&self.currency),
                "currency",
                "must be an ISO 4217 code of three capital letters",
            )
            .range("stock", self.stock, 0, MAX_STOCK);
        validator.finish()?;
        Ok(self)
    }

    fn from_product(product: &Product) -> Self {
        Self {
            sku: product.sku.clone(),
            name: product.name.clone(),
            description: product.description.clone(),
            price_cents: product.price_cents,
            currency: product.currency.clone(),
            stock: product.stock,
        }
    }
}
