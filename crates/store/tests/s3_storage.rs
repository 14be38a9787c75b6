//! The S3 backend of object storage against a real S3-compatible server (feature `s3`):
//! `LOADSTAR_TEST_S3_URL=s3://<existing bucket>`, with the endpoint and credentials in the
//! standard `AWS_*` variables (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP=true`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`). Without the URL the test says so and passes.
#![cfg(feature = "s3")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use loadstar_core::config::StorageConfig;
use loadstar_store::object_store::path::Path;
use loadstar_store::object_store::{ObjectStoreExt, PutPayload};
use std::path::Path as FsPath;

#[tokio::test]
async fn an_object_put_to_s3_reads_back_and_deletes() {
    let Ok(url) = std::env::var("LOADSTAR_TEST_S3_URL") else {
        eprintln!("LOADSTAR_TEST_S3_URL is not set: S3 test not run");
        return;
    };
    let store = loadstar_store::object_storage::open(&StorageConfig { url }, FsPath::new("unused"))
        .expect("the S3 store opens");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let path = Path::from(format!("loadstar-test/{nanos}"));
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    store
        .put(&path, PutPayload::from(body.clone()))
        .await
        .unwrap();
    let read = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert!(read.as_ref() == body.as_slice());
    store.delete(&path).await.unwrap();
    assert!(matches!(
        store.head(&path).await,
        Err(loadstar_store::object_store::Error::NotFound { .. })
    ));
}
