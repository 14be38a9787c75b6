//! Reading the jobs APIs' requests: path ids, page requests with opaque cursors, filters
//! and JSON bodies. Every failure is a [`JobApiError`] naming the offending field, never a
//! framework default.

use crate::api_error::JobApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use loadstar_core::{FieldError, Id};
use serde::de::DeserializeOwned;

/// Items per page when the client does not say.
pub const DEFAULT_PAGE_LIMIT: u32 = 20;
/// Most items a client may ask for in one page.
pub const MAX_PAGE_LIMIT: u32 = 100;

/// The `{jobId}` path parameter, parsed; a malformed one is a 400 naming `jobId`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobIdPath(pub Id);

impl<S: Send + Sync> FromRequestParts<S> for JobIdPath {
    type Rejection = JobApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = || {
            JobApiError::Validation(vec![FieldError::new(
                "jobId",
                "must be a positive 64-bit integer id",
            )])
        };
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid())?;
        raw.parse().map(JobIdPath).map_err(|_| invalid())
    }
}

/// A validated `?cursor=&limit=`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageRequest {
    /// Items after this id.
    pub after: Option<Id>,
    pub limit: u32,
}

impl PageRequest {
    /// Parses the raw query values (empty means absent), recording errors in `errors`.
    pub fn parse(cursor: Option<&str>, limit: Option<&str>, errors: &mut Vec<FieldError>) -> Self {
        let after = match cursor.filter(|raw| !raw.is_empty()) {
            None => None,
            Some(raw) => {
                let decoded = decode_cursor(raw);
                if decoded.is_none() {
                    errors.push(FieldError::new("cursor", "is not a cursor this API issued"));
                }
                decoded
            }
        };
        let limit = match limit.filter(|raw| !raw.is_empty()) {
            None => DEFAULT_PAGE_LIMIT,
            Some(raw) => match raw.parse::<u32>() {
                Ok(value) if (1..=MAX_PAGE_LIMIT).contains(&value) => value,
                _ => {
                    errors.push(FieldError::new(
                        "limit",
                        format!("must be an integer between 1 and {MAX_PAGE_LIMIT}"),
                    ));
                    DEFAULT_PAGE_LIMIT
                }
            },
        };
        Self { after, limit }
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(self) -> u32 {
        self.limit + 1
    }

    /// Trims the look-ahead row; returns the page and the cursor of the next one.
    pub fn split<T>(self, mut rows: Vec<T>, id_of: impl Fn(&T) -> Id) -> (Vec<T>, Option<String>) {
        let limit = self.limit as usize;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if has_more {
            rows.last().map(|last| encode_cursor(id_of(last)))
        } else {
            None
        };
        (rows, next_cursor)
    }
}

/// The id of the last item of a page, opaque to clients.
fn encode_cursor(id: Id) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{id}"))
}

fn decode_cursor(raw: &str) -> Option<Id> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix("v1:")?.parse().ok()
}

/// A `queue` or `kind` filter from the query string: empty means no filter.
pub(crate) fn query_filter(raw: Option<String>) -> Option<String> {
    raw.filter(|value| !value.is_empty())
}

/// A `queue` or `kind` filter from a JSON body: absent means no filter, empty is an error
/// (an operator who sends `""` meant something, and "everything" is the riskiest guess).
pub(crate) fn body_filter(
    field: &str,
    value: Option<String>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    if value.as_deref() == Some("") {
        errors.push(FieldError::new(
            field,
            "must not be empty; leave the field out to match every value",
        ));
        return None;
    }
    value
}

/// Fails with every collected error.
pub(crate) fn ensure_valid(errors: Vec<FieldError>) -> Result<(), JobApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(JobApiError::Validation(errors))
    }
}

/// A JSON request body: `application/json` or any `+json` type, else 415; syntax errors
/// are 400 `bad-request`, shape errors 400 `validation` naming the field, oversize 413.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = JobApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(&request) {
            return Err(JobApiError::UnsupportedMediaType);
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    JobApiError::PayloadTooLarge
                } else {
                    JobApiError::BadRequest("the request body could not be read".to_owned())
                }
            })?;
        parse_json(&body).map(JsonBody)
    }
}

fn has_json_content_type(request: &Request) -> bool {
    let Some(value) = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, JobApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let inner = error.inner();
        if inner.is_syntax() || inner.is_eof() {
            return JobApiError::BadRequest(format!("the body is not valid JSON: {inner}"));
        }
        let message = inner.to_string();
        let message = match message.rfind(" at line ") {
            Some(index) => message[..index].to_owned(),
            None => message,
        };
        let path = error.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        JobApiError::Validation(vec![FieldError::new(field, message)])
    })?;
    deserializer.end().map_err(|_| {
        JobApiError::BadRequest("the body has trailing data after the JSON value".to_owned())
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let id = Id::from_i64(42);
        assert_eq!(decode_cursor(&encode_cursor(id)), Some(id));
        for garbage in ["not-a-cursor", "djE6YWJj", ""] {
            assert_eq!(decode_cursor(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn limits_outside_one_to_a_hundred_are_errors() {
        for bad in ["0", "101", "-1", "x", "1.5"] {
            let mut errors = Vec::new();
            PageRequest::parse(None, Some(bad), &mut errors);
            assert_eq!(errors.len(), 1, "{bad}");
            assert_eq!(errors[0].field, "limit");
        }
        let mut errors = Vec::new();
        let page = PageRequest::parse(None, Some(""), &mut errors);
        assert!(errors.is_empty());
        assert_eq!(page.limit, DEFAULT_PAGE_LIMIT);
    }

    #[test]
    fn a_full_page_with_a_look_ahead_row_has_a_next_cursor() {
        let request = PageRequest {
            after: None,
            limit: 2,
        };
        let (items, next) = request.split(vec![1, 2, 3], |n| Id::from_i64(*n));
        assert_eq!(items, vec![1, 2]);
        assert_eq!(
            next.as_deref().and_then(decode_cursor),
            Some(Id::from_i64(2))
        );
        let (_, last) = request.split(vec![4], |n| Id::from_i64(*n));
        assert!(last.is_none());
    }
}
