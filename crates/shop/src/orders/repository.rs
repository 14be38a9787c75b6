//! SQL for `orders` and `order_items`, including the stock-taking transaction.

use super::{Order, OrderItem, OrderStatus, PlaceOrder};
use crate::error::{ShopError, ShopResult};
use crate::order_pipeline;
use crate::state::ShopState;
use loadstar_core::pagination::PageRequest;
use loadstar_core::{FieldError, Id, IdGenerator, Timestamp};
use loadstar_store::sql::{query, Any, AnyRow, AssertSqlSafe, Error, Executor, Row, Transaction};
use loadstar_store::{Database, StoreError};

const ORDER_COLUMNS: &str =
    "id, user_id, status, total_cents, currency, callback_url, created_at, updated_at";
const ITEM_COLUMNS: &str =
    "order_id, product_id, product_name, quantity, unit_price_cents, line_total_cents";

fn order_from_row(row: &AnyRow) -> Result<Order, Error> {
    let status: String = row.try_get("status")?;
    Ok(Order {
        id: Id::from_i64(row.try_get("id")?),
        user_id: Id::from_i64(row.try_get("user_id")?),
        status: OrderStatus::from_stored(&status).ok_or_else(|| Error::ColumnDecode {
            index: "status".to_owned(),
            source: format!("unknown order status {status:?}").into(),
        })?,
        total_cents: row.try_get("total_cents")?,
        currency: row.try_get("currency")?,
        callback_url: row.try_get("callback_url")?,
        items: Vec::new(),
        created_at: Timestamp::from_unix_micros(row.try_get("created_at")?),
        updated_at: Timestamp::from_unix_micros(row.try_get("updated_at")?),
    })
}

fn item_from_row(row: &AnyRow) -> Result<(Id, OrderItem), Error> {
    Ok((
        Id::from_i64(row.try_get("order_id")?),
        OrderItem {
            product_id: Id::from_i64(row.try_get("product_id")?),
            product_name: row.try_get("product_name")?,
            quantity: row.try_get("quantity")?,
            unit_price_cents: row.try_get("unit_price_cents")?,
            line_total_cents: row.try_get("line_total_cents")?,
        },
    ))
}

/// An idempotency key and the fingerprint of the request that carried it.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    pub key: &'a str,
    pub fingerprint: &'a str,
}

/// Result of placing an order.
#[derive(Debug)]
pub enum Placed {
    Created(Order),
    /// The idempotency key was seen before with the same request: the original order.
    Replayed(Order),
}

/// Problem slug of a lost race on an idempotency key; `place` answers it with a replay.
const KEY_RACE: &str = "idempotency-key-in-use";

/// Places an order in one transaction: take stock line by line, price from the catalog,
/// insert the order and its items. Any failure rolls everything back.
pub async fn place(
    state: &ShopState,
    user_id: Id,
    request: &PlaceOrder,
    idempotency: Option<Idempotency<'_>>,
) -> ShopResult<Placed> {
    let db = &state.db;
    if let Some(idempotency) = idempotency {
        if let Some(placed) = replay(db, user_id, idempotency).await? {
            return Ok(placed);
        }
    }
    let mut tx = db.writer().begin().await?;
    let inserted = match insert_order(&mut tx, &state.ids, user_id, request, idempotency).await {
        Ok(order) => order_pipeline::enqueue_for_new_order(state, &mut tx, &order)
            .await
            .map(|()| order),
        Err(error) => Err(error),
    };
    match inserted {
        Ok(order) => {
            tx.commit().await?;
            let products: Vec<Id> = order.items.iter().map(|item| item.product_id).collect();
            crate::products::cache::changed(state, &products).await;
            Ok(Placed::Created(order))
        }
        Err(error) => {
            // Ours rolls back, stock included.
            drop(tx);
            // A concurrent request with the same key may have committed first. Ours then
            // failed on the key itself or, if that request took the last units, on stock:
            // either way the client gets that order, exactly as if it had retried.
            match idempotency {
                Some(idempotency) => match replay(db, user_id, idempotency).await? {
                    Some(placed) => Ok(placed),
                    None => Err(error),
                },
                None => Err(error),
            }
        }
    }
}

/// The order already placed under this key, if any; 422 if it was placed by a
/// different request.
async fn replay(
    db: &Database,
    user_id: Id,
    idempotency: Idempotency<'_>,
) -> ShopResult<Option<Placed>> {
    let row = query(AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS}, request_fingerprint FROM orders WHERE user_id = $1 AND idempotency_key = $2"
    )))
    .bind(user_id.as_i64())
    .bind(idempotency.key)
    .fetch_optional(db.consistent_reader())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let fingerprint: Option<String> = row.try_get("request_fingerprint")?;
    if fingerprint.as_deref() != Some(idempotency.fingerprint) {
        return Err(ShopError::Unprocessable {
            slug: "idempotency-key-reused",
            detail: "this Idempotency-Key was already used with a different request body"
                .to_owned(),
            errors: Vec::new(),
        });
    }
    let mut order = order_from_row(&row)?;
    order.items = items_of(db.consistent_reader(), order.id).await?;
    Ok(Some(Placed::Replayed(order)))
}

async fn insert_order(
    tx: &mut Transaction,
    ids: &IdGenerator,
    user_id: Id,
    request: &PlaceOrder,
    idempotency: Option<Idempotency<'_>>,
) -> ShopResult<Order> {
    let now = Timestamp::now();
    let mut lines: Vec<(usize, &super::OrderLine)> = request.items.iter().enumerate().collect();
    lines.sort_by_key(|(_, line)| line.product_id);

    let mut items = Vec::with_capacity(lines.len());
    let mut unknown = Vec::new();
    let mut currency: Option<String> = None;
    for (index, line) in lines {
        let taken = query(
            "UPDATE products SET stock = stock - $1, version = version + 1, updated_at = $2 \
             WHERE id = $3 AND stock >= $1 RETURNING name, price_cents, currency",
        )
        .bind(line.quantity)
        .bind(now.unix_micros())
        .bind(line.product_id.as_i64())
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = taken else {
            let available = query("SELECT stock FROM products WHERE id = $1")
                .bind(line.product_id.as_i64())
                .fetch_optional(&mut **tx)
                .await?;
            match available {
                None => {
                    unknown.push(FieldError::new(
                        format!("items[{index}].productId"),
                        "no product has this id",
                    ));
                    continue;
                }
                Some(row) => {
                    let stock: i64 = row.try_get("stock")?;
                    return Err(ShopError::Conflict {
                        slug: "insufficient-stock",
                        detail: format!(
                            "product {} has {stock} in stock, {} requested",
                            line.product_id, line.quantity
                        ),
                    });
                }
            }
        };
        let line_currency: String = row.try_get("currency")?;
        if currency.get_or_insert_with(|| line_currency.clone()) != &line_currency {
            return Err(ShopError::Unprocessable {
                slug: "mixed-currencies",
                detail: "all products of one order must be priced in the same currency".to_owned(),
                errors: vec![FieldError::new(
                    format!("items[{index}].productId"),
                    format!("is priced in {line_currency}"),
                )],
            });
        }
        let unit_price_cents: i64 = row.try_get("price_cents")?;
        items.push(OrderItem {
            product_id: line.product_id,
            product_name: row.try_get("name")?,
            quantity: line.quantity,
            unit_price_cents,
            line_total_cents: unit_price_cents.saturating_mul(line.quantity),
        });
    }
    if !unknown.is_empty() {
        return Err(ShopError::Unprocessable {
            slug: "unknown-product",
            detail: "the order names products that do not exist".to_owned(),
            errors: unknown,
        });
    }

    let order = Order {
        id: ids.next_id(),
        user_id,
        status: OrderStatus::Pending,
        total_cents: items.iter().map(|item| item.line_total_cents).sum(),
        currency: currency.unwrap_or_default(),
        callback_url: request.callback_url.clone(),
        items,
        created_at: now,
        updated_at: now,
    };
    let inserted = query(
        "INSERT INTO orders (id, user_id, status, total_cents, currency, callback_url, idempotency_key, \
         request_fingerprint, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(order.id.as_i64())
    .bind(order.user_id.as_i64())
    .bind(order.status.as_str())
    .bind(order.total_cents)
    .bind(&order.currency)
    .bind(&order.callback_url)
    .bind(idempotency.map(|i| i.key))
    .bind(idempotency.map(|i| i.fingerprint))
    .bind(order.created_at.unix_micros())
    .bind(order.updated_at.unix_micros())
    .execute(&mut **tx)
    .await;
    if let Err(error) = inserted {
        return Err(match StoreError::from(error) {
            error if error.is_unique_violation() => ShopError::Conflict {
                slug: KEY_RACE,
                detail: "a request with this Idempotency-Key is being processed".to_owned(),
            },
            other => other.into(),
        });
    }
    for item in &order.items {
        query(AssertSqlSafe(format!(
            "INSERT INTO order_items ({ITEM_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        )))
        .bind(order.id.as_i64())
        .bind(item.product_id.as_i64())
        .bind(&item.product_name)
        .bind(item.quantity)
        .bind(item.unit_price_cents)
        .bind(item.line_total_cents)
        .execute(&mut **tx)
        .await?;
    }
    Ok(order)
}

async fn items_of<'e, E>(executor: E, order_id: Id) -> Result<Vec<OrderItem>, StoreError>
where
    E: Executor<'e, Database = Any>,
{
    let rows = query(AssertSqlSafe(format!(
        "SELECT {ITEM_COLUMNS} FROM order_items WHERE order_id = $1 ORDER BY product_id"
    )))
    .bind(order_id.as_i64())
    .fetch_all(executor)
    .await?;
    Ok(rows
        .iter()
        .map(|row| item_from_row(row).map(|(_, item)| item))
        .collect::<Result<_, _>>()?)
}

/// The order with its items, whoever owns it.
pub async fn find(db: &Database, order_id: Id) -> Result<Option<Order>, StoreError> {
    let row = query(AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"
    )))
    .bind(order_id.as_i64())
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut order = order_from_row(&row)?;
    order.items = items_of(db.reader(), order.id).await?;
    Ok(Some(order))
}

/// A page of a user's orders, newest first, with their items.
pub async fn list_for_user(
    db: &Database,
    user_id: Id,
    page: PageRequest,
) -> Result<Vec<Order>, StoreError> {
    let rows = query(AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
    )))
    .bind(user_id.as_i64())
    .bind(page.after.map_or(i64::MAX, Id::as_i64))
    .bind(i64::from(page.fetch_limit()))
    .fetch_all(db.reader())
    .await?;
    let mut orders: Vec<Order> = rows.iter().map(order_from_row).collect::<Result<_, _>>()?;
    if orders.is_empty() {
        return Ok(orders);
    }
    let placeholders: Vec<String> = (1..=orders.len()).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM order_items WHERE order_id IN ({}) ORDER BY product_id",
        placeholders.join(", ")
    );
    let mut statement = query(AssertSqlSafe(sql.as_str()));
    for order in &orders {
        statement = statement.bind(order.id.as_i64());
    }
    let mut by_order: std::collections::HashMap<Id, Vec<OrderItem>> =
        std::collections::HashMap::new();
    for row in statement.fetch_all(db.reader()).await? {
        let (order_id, item) = item_from_row(&row)?;
        by_order.entry(order_id).or_default().push(item);
    }
    for order in &mut orders {
        order.items = by_order.remove(&order.id).unwrap_or_default();
    }
    Ok(orders)
}

/// Cancels a pending order and returns its stock, in one transaction; the products'
/// cached copies are evicted after the commit.
pub async fn cancel(state: &ShopState, order_id: Id) -> ShopResult<Order> {
    let now = Timestamp::now();
    let mut tx = state.db.writer().begin().await?;
    let changed = query(
        "UPDATE orders SET status = 'cancelled', updated_at = $2 WHERE id = $1 AND status = 'pending'",
    )
    .bind(order_id.as_i64())
    .bind(now.unix_micros())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed == 0 {
        let status = query("SELECT status FROM orders WHERE id = $1")
            .bind(order_id.as_i64())
            .fetch_optional(&mut *tx)
            .await?;
        return Err(match status {
            None => ShopError::NotFound("order"),
            Some(row) => {
                let status: String = row.try_get("status")?;
                ShopError::Conflict {
                    slug: "order-not-cancellable",
                    detail: format!("only pending orders can be cancelled; this one is {status}"),
                }
            }
        });
    }
    let items = items_of(&mut *tx, order_id).await?;
    for item in &items {
        // A product deleted since the order simply has nothing to return stock to.
        query(
            "UPDATE products SET stock = stock + $1, version = version + 1, updated_at = $2 WHERE id = $3",
        )
        .bind(item.quantity)
        .bind(now.unix_micros())
        .bind(item.product_id.as_i64())
        .execute(&mut *tx)
        .await?;
    }
    let row = query(AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"
    )))
    .bind(order_id.as_i64())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let products: Vec<Id> = items.iter().map(|item| item.product_id).collect();
    crate::products::cache::changed(state, &products).await;
    let mut order = order_from_row(&row)?;
    order.items = items;
    Ok(order)
}
