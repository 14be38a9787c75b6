//! `/v1/products` handlers.

use super::conditional::{if_match_version, if_none_match_hits};
use super::repository::{self, ProductFilter, WriteOutcome};
use super::{etag_of, Product, ProductInput, ProductPatch, MAX_PRICE_CENTS};
use crate::auth::Principal;
use crate::error::{ShopError, ShopResult};
use crate::extract::path_id;
use crate::state::ShopState;
use crate::validation::ensure_valid;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use loadstar_core::json_body::JsonBody;
use loadstar_core::pagination::{Page, PageRequest};
use loadstar_core::{FieldError, Id, Problem};
use loadstar_store::StoreError;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Product reads may be reused for a few seconds by clients and the gateway's HTTP cache,
/// then must be revalidated (cheap: `If-None-Match` → 304).
const PRODUCT_CACHE_CONTROL: &str = "public, max-age=5, must-revalidate";

/// Query of `GET /v1/products`. Raw strings so that every bad value gets a field error.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ProductListQuery {
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Only products costing at least this many minor units.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub min_price_cents: Option<String>,
    /// Only products costing at most this many minor units.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub max_price_cents: Option<String>,
    /// Only products whose name contains this text (case-insensitive).
    #[param(max_length = 100)]
    pub q: Option<String>,
}

/// The product list page type, named for the OpenAPI document.
pub type ProductPage = Page<Product>;

/// Lists products in creation order.
#[utoipa::path(
    get, path = "/v1/products", tag = "products",
    params(ProductListQuery),
    responses(
        (status = 200, body = Page<Product>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_products(
    State(state): State<ShopState>,
    Query(query): Query<ProductListQuery>,
) -> ShopResult<Response> {
    let mut errors = Vec::new();
    let page = PageRequest::parse(query.cursor.as_deref(), query.limit.as_deref(), &mut errors);
    let filter = ProductFilter {
        min_price_cents: parse_price(
            "minPriceCents",
            query.min_price_cents.as_deref(),
            &mut errors,
        ),
        max_price_cents: parse_price(
            "maxPriceCents",
            query.max_price_cents.as_deref(),
            &mut errors,
        ),
        name_contains: query
            .q
            .filter(|q| !q.trim().is_empty())
            .map(|q| q.trim().to_owned()),
    };
    if filter
        .name_contains
        .as_ref()
        .is_some_and(|q| q.chars().count() > 100)
    {
        errors.push(FieldError::new("q", "must be at most 100 characters"));
    }
    ensure_valid(errors)?;
    let body = super::cache::list_page(&state, &filter, page).await?;
    Ok(json_response(body))
}

/// A response with a JSON body encoded ahead (kept in the cache as sent).
fn json_response(body: bytes::Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn parse_price(field: &str, raw: Option<&str>, errors: &mut Vec<FieldError>) -> Option<i64> {
    let raw = raw.filter(|r| !r.is_empty())?;
    match raw.parse::<i64>() {
        Ok(value) if (0..=MAX_PRICE_CENTS).contains(&value) => Some(value),
        _ => {
            errors.push(FieldError::new(
                field,
                format!("must be an integer between 0 and {MAX_PRICE_CENTS}"),
            ));
            None
        }
    }
}

/// Reads one product. Answers `If-None-Match` with 304 when the product is unchanged.
#[utoipa::path(
    get, path = "/v1/products/{productId}", tag = "products",
    params(
        ("productId" = loadstar_core::Id, Path, description = "product id"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of a cached copy"),
    ),
    responses(
        (status = 200, body = Product, headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "the cached copy is current"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_product(
    State(state): State<ShopState>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> ShopResult<Response> {
    let id = path_id("productId", &raw_id)?;
    let product = super::cache::read(&state, id)
        .await?
        .ok_or(ShopError::NotFound("product"))?;
    super::cache::viewed(&state, id);
    let etag = etag_of(product.version);
    if if_none_match_hits(&headers, &etag) {
        return Ok(with_cache_headers(
            StatusCode::NOT_MODIFIED.into_response(),
            &etag,
        ));
    }
    Ok(with_cache_headers(json_response(product.value), &etag))
}

fn with_cache_headers(mut response: Response, etag: &str) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(PRODUCT_CACHE_CONTROL),
    );
    response
}

fn written(status: StatusCode, product: Product) -> Response {
    let etag = product.etag();
    let location = format!("/v1/products/{}", product.id);
    let mut response = with_cache_headers((status, Json(product)).into_response(), &etag);
    if status == StatusCode::CREATED {
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
    }
    response
}

fn sku_conflict(error: StoreError) -> ShopError {
    if error.is_unique_violation() {
        ShopError::Conflict {
            slug: "sku-taken",
            detail: "another product already has this sku".to_owned(),
        }
    } else {
        error.into()
    }
}

fn outcome(result: WriteOutcome) -> ShopResult<Product> {
    match result {
        WriteOutcome::Written(product) => Ok(product),
        WriteOutcome::NotFound => Err(ShopError::NotFound("product")),
        WriteOutcome::VersionMismatch => Err(ShopError::PreconditionFailed),
    }
}

/// Creates a product (admins).
#[utoipa::path(
    post, path = "/v1/products", tag = "products",
    request_body = ProductInput,
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 201, body = Product, headers(("Location" = String), ("ETag" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "sku taken", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_product(
    State(state): State<ShopState>,
    principal: Principal,
    JsonBody(input): JsonBody<ProductInput>,
) -> ShopResult<Response> {
    principal.require_admin()?;
    let input = input.validated()?;
    let product = repository::insert(&state.db, state.ids.next_id(), &input)
        .await
        .map_err(sku_conflict)?;
    tracing::info!(product_id = %product.id, sku = %product.sku, "product created");
    super::cache::written(&state, &product).await?;
    Ok(written(StatusCode::CREATED, product))
}

/// Replaces every field of a product (admins). Honours `If-Match`.
#[utoipa::path(
    put, path = "/v1/products/{productId}", tag = "products",
    params(("productId" = loadstar_core::Id, Path, description = "product id")),
    request_body = ProductInput,
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, body = Product),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match names an old version", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replace_product(
    State(state): State<ShopState>,
    principal: Principal,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<ProductInput>,
) -> ShopResult<Response> {
    principal.require_admin()?;
    let id = path_id("productId", &raw_id)?;
    let input = input.validated()?;
    let expected = if_match_version(&headers)?;
    let result = repository::replace(&state.db, id, &input, expected)
        .await
        .map_err(sku_conflict)?;
    let product = outcome(result)?;
    super::cache::written(&state, &product).await?;
    Ok(written(StatusCode::OK, product))
}

/// Changes some fields of a product (admins), as a JSON merge patch (RFC 7396).
#[utoipa::path(
    patch, path = "/v1/products/{productId}", tag = "products",
    params(("productId" = loadstar_core::Id, Path, description = "product id")),
    request_body(content = ProductPatch, content_type = "application/merge-patch+json"),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, body = Product),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn patch_product(
    State(state): State<ShopState>,
    principal: Principal,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    JsonBody(patch): JsonBody<Value>,
) -> ShopResult<Response> {
    principal.require_admin()?;
    let id = path_id("productId", &raw_id)?;
    let Value::Object(patch) = patch else {
        return Err(ShopError::BadRequest(
            "a merge patch must be a JSON object".to_owned(),
        ));
    };
    let current = repository::find(&state.db, id)
        .await?
        .ok_or(ShopError::NotFound("product"))?;
    // Without If-Match the patch applies to the version just read, so a concurrent
    // write in between is detected instead of silently overwritten.
    let expected = if_match_version(&headers)?.or(Some(current.version));
    let input = apply_merge_patch(ProductInput::from_product(&current), &patch)?.validated()?;
    let result = repository::replace(&state.db, id, &input, expected)
        .await
        .map_err(sku_conflict)?;
    let product = outcome(result)?;
    super::cache::written(&state, &product).await?;
    Ok(written(StatusCode::OK, product))
}

/// Applies an RFC 7396 merge patch to the writable fields. Every field here is required,
/// so `null` (delete) is an error, as are read-only and unknown fields.
fn apply_merge_patch(
    mut input: ProductInput,
    patch: &Map<String, Value>,
) -> ShopResult<ProductInput> {
    let mut errors = Vec::new();
    for (field, value) in patch {
        let text = || value.as_str().map(str::to_owned);
        let applied = match field.as_str() {
            "sku" => text().map(|v| input.sku = v),
            "name" => text().map(|v| input.name = v),
            "description" => text().map(|v| input.description = v),
            "currency" => text().map(|v| input.currency = v),
            "priceCents" => value.as_i64().map(|v| input.price_cents = v),
            "stock" => value.as_i64().map(|v| input.stock = v),
            "id" | "createdAt" | "updatedAt" => {
                errors.push(FieldError::new(field, "is read-only"));
                continue;
            }
            _ => {
                errors.push(FieldError::new(field, "is not a product field"));
                continue;
            }
        };
        if applied.is_none() {
            let expected = if matches!(field.as_str(), "priceCents" | "stock") {
                "must be an integer"
            } else {
                "must be a string"
            };
            errors.push(FieldError::new(field, expected));
        }
    }
    ensure_valid(errors)?;
    Ok(input)
}

/// Deletes a product (admins). Orders keep their own copy of name and price.
#[utoipa::path(
    delete, path = "/v1/products/{productId}", tag = "products",
    params(("productId" = loadstar_core::Id, Path, description = "product id")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_product(
    State(state): State<ShopState>,
    principal: Principal,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> ShopResult<StatusCode> {
    principal.require_admin()?;
    let id: Id = path_id("productId", &raw_id)?;
    let expected = if_match_version(&headers)?;
    let product = outcome(repository::delete(&state.db, id, expected).await?)?;
    super::cache::deleted(&state, &product).await;
    tracing::info!(product_id = %id, "product deleted");
    Ok(StatusCode::NO_CONTENT)
}
