//! JSON request bodies whose every failure is a precise problem, not a framework default.

use crate::problem::{FieldError, Problem};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// Why a request's input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("the body is not JSON")]
    UnsupportedMediaType,
    #[error("the body is too large")]
    PayloadTooLarge,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
}

impl InputError {
    pub fn to_problem(&self) -> Problem {
        match self {
            InputError::UnsupportedMediaType => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            )
            .with_detail("send the body as application/json"),
            InputError::PayloadTooLarge => Problem::for_status(StatusCode::PAYLOAD_TOO_LARGE),
            InputError::BadRequest(detail) => Problem::bad_request(detail.clone()),
            InputError::Validation(errors) => Problem::validation(errors.clone()),
        }
    }
}

impl IntoResponse for InputError {
    fn into_response(self) -> Response {
        self.to_problem().into_response()
    }
}

/// A JSON request body. Accepts `application/json` and any `+json` type (so
/// `application/merge-patch+json` works), maps syntax errors to 400 `bad-request`, type and
/// shape errors to 400 `validation` naming the field, oversize bodies to 413 and other
/// media types to 415.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = InputError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(&request) {
            return Err(InputError::UnsupportedMediaType);
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    InputError::PayloadTooLarge
                } else {
                    InputError::BadRequest("the request body could not be read".to_owned())
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

/// Deserialises `body`, reporting the path of the first offending field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, InputError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let inner = error.inner();
        if inner.is_syntax() || inner.is_eof() {
            return InputError::BadRequest(format!("the body is not valid JSON: {inner}"));
        }
        let message = strip_position(&inner.to_string());
        let path = error.path().to_string();
        let field = match missing_field(&message) {
            Some(name) if path == "." => name.to_owned(),
            Some(name) => format!("{path}.{name}"),
            None if path == "." => "body".to_owned(),
            None => path,
        };
        InputError::Validation(vec![FieldError::new(field, message)])
    })?;
    deserializer.end().map_err(|_| {
        InputError::BadRequest("the body has trailing data after the JSON value".to_owned())
    })?;
    Ok(value)
}

/// The field named by serde's "missing field `x`" message: the error sits on the object
/// that lacks it, so the path alone would blame the parent.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// `serde_json` appends " at line L column C" to data errors; clients want the reason.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        quantity: u32,
    }

    #[test]
    fn syntax_errors_are_bad_requests() {
        let error = parse_json::<Sample>(b"{\"name\": ").unwrap_err();
        assert!(matches!(error, InputError::BadRequest(_)), "{error:?}");
    }

    #[test]
    fn type_errors_name_the_nested_field() {
        let error =
            parse_json::<Sample>(br#"{"name":"a","items":[{"quantity":"x"}]}"#).unwrap_err();
        let InputError::Validation(errors) = error else {
            panic!("expected validation error, got {error:?}");
        };
        assert_eq!(errors[0].field, "items[0].quantity");
        assert!(!errors[0].message.contains("line"), "{}", errors[0].message);
    }

    #[test]
    fn missing_fields_are_named_with_their_path() {
        let InputError::Validation(errors) = parse_json::<Sample>(br#"{"items":[]}"#).unwrap_err()
        else {
            panic!("expected validation error");
        };
        assert_eq!(errors[0].field, "name");
        let InputError::Validation(errors) =
            parse_json::<Sample>(br#"{"name":"a","items":[{}]}"#).unwrap_err()
        else {
            panic!("expected validation error");
        };
        assert_eq!(errors[0].field, "items[0].quantity");
    }
}
