//! Object storage: where bytes too big for a database row or a queue message live.
//!
//! Everything above this module talks to [`object_store::ObjectStore`], so a local
//! directory (the embedded default) and an S3-compatible store are one code path; this
//! module only turns `[storage] url` into a store. S3 is built only with the `s3` cargo
//! feature (signing and TLS with ring).

use crate::error::StoreError;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The directory used when `[storage] url` is empty.
pub fn default_local_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("objects")
}

/// Opens the store `config` names; a local directory is created if missing.
pub fn open(
    config: &loadstar_core::config::StorageConfig,
    data_dir: &Path,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let directory = if config.url.is_empty() {
        default_local_dir(data_dir)
    } else if let Some(path) = config.url.strip_prefix("file://") {
        PathBuf::from(path)
    } else if config.url.starts_with("s3://") {
        return s3(&config.url);
    } else {
        return Err(StoreError::Config(
            "storage.url must be empty, file:///absolute/path or s3://bucket".to_owned(),
        ));
    };
    local_directory(&directory)
}

/// An S3-compatible bucket: `s3://bucket`, with credentials, region and endpoint from the
/// standard `AWS_*` environment variables (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP=true` for a
/// plain-HTTP endpoint such as a local MinIO).
#[cfg(feature = "s3")]
fn s3(url: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    // TLS comes from rustls with ring (aws-lc-rs would need cmake); installing it twice
    // is harmless, the first one stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = object_store::aws::AmazonS3Builder::from_env()
        .with_url(url)
        .build()
        .map_err(|error| StoreError::Config(format!("object storage: {error}")))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "s3"))]
fn s3(_url: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    Err(StoreError::Config(
        "storage.url names S3, but this build has no S3 support (cargo feature `s3`)".to_owned(),
    ))
}

/// A store in `directory` (created if missing).
pub fn local_directory(directory: &Path) -> Result<Arc<dyn ObjectStore>, StoreError> {
    std::fs::create_dir_all(directory).map_err(|error| {
        StoreError::Config(format!(
            "cannot create the object directory {}: {error}",
            directory.display()
        ))
    })?;
    let store = LocalFileSystem::new_with_prefix(directory)
        .map_err(|error| StoreError::Config(format!("object storage: {error}")))?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadstar_core::config::StorageConfig;

    #[test]
    fn an_empty_url_means_a_directory_under_the_data_dir() {
        let data_dir =
            std::env::temp_dir().join(format!("loadstar-objects-{}", std::process::id()));
        let opened = open(&StorageConfig::default(), &data_dir);
        assert!(opened.is_ok());
        assert!(default_local_dir(&data_dir).is_dir());
        let _ = std::fs::remove_dir_all(&data_dir);
    }

    #[test]
    fn an_unsupported_url_is_a_configuration_error() {
        let config = StorageConfig {
            url: "ftp://bucket".to_owned(),
        };
        assert!(matches!(
            open(&config, Path::new("unused")),
            Err(StoreError::Config(_))
        ));
    }
}
