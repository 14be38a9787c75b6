//! `POST /v1/product-imports`.

use super::{CATALOG_QUEUE, MAX_IMPORT_PRODUCTS};
use crate::auth::Principal;
use crate::error::{ShopError, ShopResult};
use crate::messages::{v1, ShopMessage};
use crate::products::ProductInput;
use crate::state::ShopState;
use crate::validation::ensure_valid;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use loadstar_core::json_body::JsonBody;
use loadstar_core::{FieldError, Id, Problem};
use loadstar_jobs::{JobStatus, NewJob};
use prost::Message;
use serde::{Deserialize, Serialize};

/// Body of `POST /v1/product-imports`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductImportRequest {
    /// Products to create (new SKU) or replace (known SKU); each SKU at most once.
    #[schema(min_items = 1, max_items = 10_000)]
    pub products: Vec<ProductInput>,
}

/// The answer to an accepted import: where to poll.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportAccepted {
    pub job_id: Id,
    /// `GET` this until `state` is `completed` (or `dead`).
    pub status_url: String,
    pub job: JobStatus,
}

/// Queues a bulk create-or-update of products (admins).
#[utoipa::path(
    post, path = "/v1/product-imports", tag = "products",
    request_body = ProductImportRequest,
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 202, description = "queued; poll the Location", body = ImportAccepted,
         headers(("Location" = String, description = "/v1/jobs/{jobId}"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_product_import(
    State(state): State<ShopState>,
    principal: Principal,
    JsonBody(request): JsonBody<ProductImportRequest>,
) -> ShopResult<Response> {
    principal.require_admin()?;
    let products = validated(request.products)?;
    let count = products.len();
    let message = v1::ProductImport {
        products: products.into_iter().map(imported).collect(),
        requested_by: principal.user_id.as_i64(),
    };
    let policy = state.job_policies.policy(v1::ProductImport::KIND);
    let job = NewJob::new(
        CATALOG_QUEUE,
        v1::ProductImport::KIND,
        message.encode_to_vec(),
    )
    .with_max_attempts(policy.max_attempts)
    .with_current_trace();
    let job_id = state.jobs.enqueue(job).await.map_err(ShopError::from)?;
    let job = state
        .jobs
        .get(job_id)
        .await
        .map_err(ShopError::from)?
        .ok_or_else(|| ShopError::Internal(format!("job {job_id} vanished after enqueue")))?;
    tracing::info!(job_id = %job_id, products = count, "product import accepted");
    let status_url = format!("/v1/jobs/{job_id}");
    let mut response = (
        StatusCode::ACCEPTED,
        Json(ImportAccepted {
            job_id,
            status_url: status_url.clone(),
            job: job.into(),
        }),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&status_url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Every line checked, every failure reported under its index; SKUs unique.
fn validated(products: Vec<ProductInput>) -> ShopResult<Vec<ProductInput>> {
    let mut errors = Vec::new();
    if products.is_empty() || products.len() > MAX_IMPORT_PRODUCTS {
        errors.push(FieldError::new(
            "products",
            format!("must hold 1 to {MAX_IMPORT_PRODUCTS} products"),
        ));
    }
    let mut valid = Vec::with_capacity(products.len());
    let mut seen = std::collections::HashSet::new();
    for (index, product) in products.into_iter().enumerate() {
        match product.validated() {
            Ok(product) => {
                if !seen.insert(product.sku.clone()) {
                    errors.push(FieldError::new(
                        format!("products[{index}].sku"),
                        "appears more than once in this import",
                    ));
                }
                valid.push(product);
            }
            Err(ShopError::Validation(fields)) => {
                errors.extend(fields.into_iter().map(|field| {
                    FieldError::new(format!("products[{index}].{}", field.field), field.message)
                }));
            }
            Err(other) => return Err(other),
        }
    }
    ensure_valid(errors)?;
    Ok(valid)
}

fn imported(product: ProductInput) -> v1::product_import::ImportedProduct {
    v1::product_import::ImportedProduct {
        sku: product.sku,
        name: product.name,
        description: product.description,
        price_cents: product.price_cents,
        currency: product.currency,
        stock: product.stock,
    }
}
