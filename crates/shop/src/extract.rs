//! Path parameters whose every failure is a precise problem. (JSON bodies:
//! `loadstar_core::json_body::JsonBody`.)

use crate::error::ShopError;
use loadstar_core::{FieldError, Id};

/// Parses an id taken from the path; `name` is the path parameter's name for the error.
pub fn path_id(name: &str, raw: &str) -> Result<Id, ShopError> {
    raw.parse().map_err(|_| {
        ShopError::Validation(vec![FieldError::new(
            name,
            "must be a positive 64-bit integer id",
        )])
    })
}
