//! Cache failures in the caller's terms.

/// What went wrong in the cache.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The Redis tier failed or timed out; the caller's read goes to the source instead.
    #[error("redis tier unavailable: {0}")]
    Unavailable(String),
    /// The loader of a missing value failed (the source itself).
    #[error("loading the value failed: {0}")]
    Load(String),
    /// The configuration cannot work (a bad Redis URL).
    #[error("invalid cache configuration: {0}")]
    Config(String),
}
