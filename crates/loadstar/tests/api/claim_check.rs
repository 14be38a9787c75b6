//! The claim check through the whole application: a product import too big for a queue row
//! travels through object storage (`<data_dir>/objects`), is applied, and leaves no object
//! behind. On every queue backend.

use crate::harness::{header, spawn_app_with_workers, Backend, TestPaymentProvider};
use loadstar_jobs::ClaimTicket;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Regular files under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                files_under(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

async fn an_import_too_big_for_a_queue_row_travels_through_object_storage(backend: Backend) {
    let provider = TestPaymentProvider::start().await;
    let Some(app) = spawn_app_with_workers(backend, &provider, |_| {}).await else {
        return;
    };
    let admin = app.admin().await;
    let description = "a long description that makes the import heavy ".repeat(5);
    let lines: Vec<Value> = (0..1_500)
        .map(|n| {
            json!({"sku": format!("big-{n:04}"), "name": format!("Product big-{n:04}"),
                   "description": description, "priceCents": 100 + n, "currency": "EUR", "stock": 1})
        })
        .collect();
    let accepted = app
        .post_json_as(
            &admin.token,
            "/v1/product-imports",
            &json!({ "products": lines }),
        )
        .await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let location = header(&accepted, "location").unwrap();
    let job_id: i64 = location.rsplit('/').next().unwrap().parse().unwrap();

    let stored: Vec<u8> = sqlx::query_scalar("SELECT payload FROM jobs WHERE id = $1")
        .bind(job_id)
        .fetch_one(app.database.writer())
        .await
        .unwrap();
    let ticket = ClaimTicket::from_payload(&stored)
        .unwrap()
        .expect("the row holds a claim ticket, not the payload");
    assert!(ticket.size > 256 * 1024, "payload of {} bytes", ticket.size);

    app.wait_for_job(&admin, &location).await;
    let page: Value = app
        .get("/v1/products?limit=5&q=big-1499")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["items"][0]["sku"], "big-1499",
        "the import was applied"
    );
    let objects = app.config.data_dir.join("objects");
    assert!(objects.is_dir());
    // The completion is recorded first and the object deleted right after: poll for it.
    loadstar_core::test_support::poll_until(
        "the claimed object goes once the job completed",
        std::time::Duration::from_secs(10),
        || {
            let objects = objects.clone();
            async move { files_under(&objects).is_empty() }
        },
    )
    .await;
}

crate::on_every_queue_backend!(an_import_too_big_for_a_queue_row_travels_through_object_storage);
