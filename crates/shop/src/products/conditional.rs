//! HTTP conditional requests (RFC 9110 §13) over product versions.

use crate::error::ShopError;
use axum::http::{header, HeaderMap};

/// Does `If-None-Match` name `etag` (weak comparison, `*` matches anything)?
pub fn if_none_match_hits(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
}

/// The version an `If-Match` header requires, if any. A tag that names no version this
/// server issued can never match: 412.
pub fn if_match_version(headers: &HeaderMap) -> Result<Option<i64>, ShopError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ShopError::PreconditionFailed)?
        .trim();
    if text == "*" {
        return Ok(None);
    }
    text.strip_prefix("\"v")
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|version| version.parse().ok())
        .map(Some)
        .ok_or(ShopError::PreconditionFailed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(name, HeaderValue::from_static(value));
        map
    }

    #[test]
    fn if_none_match_uses_weak_comparison_over_a_list() {
        let map = headers(header::IF_NONE_MATCH, "\"v1\", W/\"v3\"");
        assert!(if_none_match_hits(&map, "\"v3\""));
        assert!(!if_none_match_hits(&map, "\"v2\""));
        assert!(if_none_match_hits(
            &headers(header::IF_NONE_MATCH, "*"),
            "\"v9\""
        ));
    }

    #[test]
    fn if_match_yields_the_required_version() {
        assert_eq!(
            if_match_version(&headers(header::IF_MATCH, "\"v7\"")).unwrap(),
            Some(7)
        );
        assert_eq!(
            if_match_version(&headers(header::IF_MATCH, "*")).unwrap(),
            None
        );
        assert_eq!(if_match_version(&HeaderMap::new()).unwrap(), None);
        assert!(if_match_version(&headers(header::IF_MATCH, "\"abc\"")).is_err());
    }
}
