//! SQL for the `products` table.

use super::{Product, ProductInput};
use loadstar_core::pagination::PageRequest;
use loadstar_core::{Id, Timestamp};
use loadstar_store::sql::{query, AnyRow, AssertSqlSafe, Error, Row};
use loadstar_store::{Database, StoreError};

const COLUMNS: &str =
    "id, sku, name, description, price_cents, currency, stock, version, created_at, updated_at";

pub(crate) fn from_row(row: &AnyRow) -> Result<Product, Error> {
    Ok(Product {
        id: Id::from_i64(row.try_get("id")?),
        sku: row.try_get("sku")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        price_cents: row.try_get("price_cents")?,
        currency: row.try_get("currency")?,
        stock: row.try_get("stock")?,
        version: row.try_get("version")?,
        created_at: Timestamp::from_unix_micros(row.try_get("created_at")?),
        updated_at: Timestamp::from_unix_micros(row.try_get("updated_at")?),
    })
}

/// Filters of the product list.
#[derive(Debug, Default, Clone)]
pub struct ProductFilter {
    pub min_price_cents: Option<i64>,
    pub max_price_cents: Option<i64>,
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
}

pub async fn insert(db: &Database, id: Id, input: &ProductInput) -> Result<Product, StoreError> {
    let now = Timestamp::now();
    let product = Product {
        id,
        sku: input.sku.clone(),
        name: input.name.clone(),
        description: input.description.clone(),
        price_cents: input.price_cents,
        currency: input.currency.clone(),
        stock: input.stock,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    query(AssertSqlSafe(format!(
        "INSERT INTO products ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    )))
    .bind(product.id.as_i64())
    .bind(&product.sku)
    .bind(&product.name)
    .bind(&product.description)
    .bind(product.price_cents)
    .bind(&product.currency)
    .bind(product.stock)
    .bind(product.version)
    .bind(product.created_at.unix_micros())
    .bind(product.updated_at.unix_micros())
    .execute(db.writer())
    .await?;
    Ok(product)
}

pub async fn find(db: &Database, id: Id) -> Result<Option<Product>, StoreError> {
    let row = query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM products WHERE id = $1"
    )))
    .bind(id.as_i64())
    .fetch_optional(db.reader())
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// A value bound to a numbered placeholder of a dynamically built query.
enum Param {
    Int(i64),
    Text(String),
}

/// One page in id order, after `page.after`, with the look-ahead row.
pub async fn list(
    db: &Database,
    filter: &ProductFilter,
    page: PageRequest,
) -> Result<Vec<Product>, StoreError> {
    let mut conditions: Vec<String> = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    let mut add = |condition: &str, param: Param| {
        params.push(param);
        conditions.push(condition.replace('?', &format!("${}", params.len())));
    };
    if let Some(after) = page.after {
        add("id > ?", Param::Int(after.as_i64()));
    }
    if let Some(min) = filter.min_price_cents {
        add("price_cents >= ?", Param::Int(min));
    }
    if let Some(max) = filter.max_price_cents {
        add("price_cents <= ?", Param::Int(max));
    }
    if let Some(text) = &filter.name_contains {
        add(
            "lower(name) LIKE ? ESCAPE '\\'",
            Param::Text(like_pattern(text)),
        );
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM products {where_clause} ORDER BY id LIMIT ${}",
        params.len() + 1
    );
    let mut statement = query(AssertSqlSafe(sql.as_str()));
    for param in params {
        statement = match param {
            Param::Int(value) => statement.bind(value),
            Param::Text(value) => statement.bind(value),
        };
    }
    let rows = statement
        .bind(i64::from(page.fetch_limit()))
        .fetch_all(db.reader())
        .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// `%text%`, lower-cased, with LIKE wildcards in the user's text escaped.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Outcome of a conditional write.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Written(Product),
    NotFound,
    VersionMismatch,
}

/// Replaces every writable field, bumping the version. With `expected_version`, writes
/// only if the stored version still equals it.
pub async fn replace(
    db: &Database,
    id: Id,
    input: &ProductInput,
    expected_version: Option<i64>,
) -> Result<WriteOutcome, StoreError> {
    let row = query(AssertSqlSafe(format!(
        "UPDATE products SET sku = $2, name = $3, description = $4, price_cents = $5, currency = $6, \
         stock = $7, version = version + 1, updated_at = $8 \
         WHERE id = $1 AND ($9 = 0 OR version = $10) RETURNING {COLUMNS}"
    )))
    .bind(id.as_i64())
    .bind(&input.sku)
    .bind(&input.name)
    .bind(&input.description)
    .bind(input.price_cents)
    .bind(&input.currency)
    .bind(input.stock)
    .bind(Timestamp::now().unix_micros())
    .bind(i64::from(expected_version.is_some()))
    .bind(expected_version.unwrap_or(0))
    .fetch_optional(db.writer())
    .await?;
    match row {
        Some(row) => Ok(WriteOutcome::Written(from_row(&row)?)),
        None => missing_or_mismatch(db, id).await,
    }
}

/// Deletes the product (optionally only at `expected_version`).
pub async fn delete(
    db: &Database,
    id: Id,
    expected_version: Option<i64>,
) -> Result<WriteOutcome, StoreError> {
    let row = query(AssertSqlSafe(format!(
        "DELETE FROM products WHERE id = $1 AND ($2 = 0 OR version = $3) RETURNING {COLUMNS}"
    )))
    .bind(id.as_i64())
    .bind(i64::from(expected_version.is_some()))
    .bind(expected_version.unwrap_or(0))
    .fetch_optional(db.writer())
    .await?;
    match row {
        Some(row) => Ok(WriteOutcome::Written(from_row(&row)?)),
        None => missing_or_mismatch(db, id).await,
    }
}

async fn missing_or_mismatch(db: &Database, id: Id) -> Result<WriteOutcome, StoreError> {
    let exists = query("SELECT 1 AS present FROM products WHERE id = $1")
        .bind(id.as_i64())
        .fetch_optional(db.consistent_reader())
        .await?
        .is_some();
    Ok(if exists {
        WriteOutcome::VersionMismatch
    } else {
        WriteOutcome::NotFound
    })
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_escape_wildcards_typed_by_users() {
        assert_eq!(like_pattern("50%_Off"), "%50\\%\\_off%");
    }
}
