//! `/v1/users/{userId}/orders` handlers.

use super::repository::{self, Idempotency, Placed};
use super::{Order, OrderItem, PlaceOrder};
use crate::auth::Principal;
use crate::error::{ShopError, ShopResult};
use crate::extract::path_id;
use crate::state::ShopState;
use crate::validation::ensure_valid;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use loadstar_core::json_body::JsonBody;
use loadstar_core::pagination::{Page, PageRequest};
use loadstar_core::{FieldError, Id, Problem};
use serde::{Deserialize, Serialize};

/// Set on a response that replays the order first created under the same key.
static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Query of the order list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderListQuery {
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

/// The order list page type, named for the OpenAPI document.
pub type OrderPage = Page<Order>;

/// An order's lines.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderItemList {
    pub items: Vec<OrderItem>,
}

/// The user whose orders the path names, if the caller may see them; 404 otherwise, so
/// that another user's data is indistinguishable from no data.
fn owner_in_path(principal: &Principal, raw_user_id: &str) -> ShopResult<Id> {
    let user_id = path_id("userId", raw_user_id)?;
    if principal.may_access(user_id) {
        Ok(user_id)
    } else {
        Err(ShopError::NotFound("order"))
    }
}

async fn owned_order(state: &ShopState, user_id: Id, raw_order_id: &str) -> ShopResult<Order> {
    let order_id = path_id("orderId", raw_order_id)?;
    repository::find(&state.db, order_id)
        .await?
        .filter(|order| order.user_id == user_id)
        .ok_or(ShopError::NotFound("order"))
}

fn idempotency_key(headers: &HeaderMap) -> ShopResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().map(str::trim).unwrap_or_default();
    let valid = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY
        && key.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(Some(key.to_owned()))
    } else {
        Err(ShopError::Validation(vec![FieldError::new(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        )]))
    }
}

/// Places an order for the caller. With `Idempotency-Key`, a retry returns the first
/// order instead of placing another.
#[utoipa::path(
    post, path = "/v1/users/{userId}/orders", tag = "orders",
    params(
        ("userId" = loadstar_core::Id, Path, description = "the caller's own user id"),
        ("Idempotency-Key" = Option<String>, Header, description = "makes retries safe: same key and body → same order"),
    ),
    request_body = PlaceOrder,
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 201, body = Order, headers(("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not your user id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "insufficient stock", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "unknown product, mixed currencies, or key reused with another body", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn place_order(
    State(state): State<ShopState>,
    principal: Principal,
    Path(raw_user_id): Path<String>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<PlaceOrder>,
) -> ShopResult<Response> {
    let user_id = path_id("userId", &raw_user_id)?;
    if principal.user_id != user_id {
        return Err(ShopError::NotFound("user"));
    }
    let key = idempotency_key(&headers)?;
    request.validate()?;
    let fingerprint = request.fingerprint();
    let idempotency = key.as_deref().map(|key| Idempotency {
        key,
        fingerprint: &fingerprint,
    });
    let placed = repository::place(&state, user_id, &request, idempotency).await?;
    let (order, replayed) = match placed {
        Placed::Created(order) => {
            tracing::info!(order_id = %order.id, user_id = %user_id, total_cents = order.total_cents, "order placed");
            (order, false)
        }
        Placed::Replayed(order) => (order, true),
    };
    let location = format!("/v1/users/{}/orders/{}", order.user_id, order.id);
    let mut response = (StatusCode::CREATED, Json(order)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if replayed {
        response.headers_mut().insert(
            IDEMPOTENT_REPLAYED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// Lists a user's orders, newest first.
#[utoipa::path(
    get, path = "/v1/users/{userId}/orders", tag = "orders",
    params(("userId" = loadstar_core::Id, Path, description = "user id"), OrderListQuery),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, body = Page<Order>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_orders(
    State(state): State<ShopState>,
    principal: Principal,
    Path(raw_user_id): Path<String>,
    Query(query): Query<OrderListQuery>,
) -> ShopResult<Json<OrderPage>> {
    let user_id = owner_in_path(&principal, &raw_user_id)?;
    let mut errors = Vec::new();
    let page = PageRequest::parse(query.cursor.as_deref(), query.limit.as_deref(), &mut errors);
    ensure_valid(errors)?;
    let orders = repository::list_for_user(&state.db, user_id, page).await?;
    Ok(Json(page.into_page(orders, |order| order.id)))
}

/// Reads one order.
#[utoipa::path(
    get, path = "/v1/users/{userId}/orders/{orderId}", tag = "orders",
    params(("userId" = loadstar_core::Id, Path, description = "user id"), ("orderId" = loadstar_core::Id, Path, description = "order id")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, body = Order),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_order(
    State(state): State<ShopState>,
    principal: Principal,
    Path((raw_user_id, raw_order_id)): Path<(String, String)>,
) -> ShopResult<Json<Order>> {
    let user_id = owner_in_path(&principal, &raw_user_id)?;
    Ok(Json(owned_order(&state, user_id, &raw_order_id).await?))
}

/// Reads an order's lines.
#[utoipa::path(
    get, path = "/v1/users/{userId}/orders/{orderId}/order-items", tag = "orders",
    params(("userId" = loadstar_core::Id, Path, description = "user id"), ("orderId" = loadstar_core::Id, Path, description = "order id")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, body = OrderItemList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_order_items(
    State(state): State<ShopState>,
    principal: Principal,
    Path((raw_user_id, raw_order_id)): Path<(String, String)>,
) -> ShopResult<Json<OrderItemList>> {
    let user_id = owner_in_path(&principal, &raw_user_id)?;
    let order = owned_order(&state, user_id, &raw_order_id).await?;
    Ok(Json(OrderItemList { items: order.items }))
}

/// Cancels a pending order; its stock returns to the catalog.
#[utoipa::path(
    post, path = "/v1/users/{userId}/orders/{orderId}/cancel", tag = "orders",
    params(("userId" = loadstar_core::Id, Path, description = "user id"), ("orderId" = loadstar_core::Id, Path, description = "order id")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, body = Order),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the order is no longer pending", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_order(
    State(state): State<ShopState>,
    principal: Principal,
    Path((raw_user_id, raw_order_id)): Path<(String, String)>,
) -> ShopResult<Json<Order>> {
    let user_id = owner_in_path(&principal, &raw_user_id)?;
    let order = owned_order(&state, user_id, &raw_order_id).await?;
    let cancelled = repository::cancel(&state, order.id).await?;
    tracing::info!(order_id = %order.id, user_id = %user_id, "order cancelled");
    Ok(Json(cancelled))
}
