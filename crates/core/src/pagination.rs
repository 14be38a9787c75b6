//! Keyset pagination for every list endpoint: `?cursor=&limit=` in, `{items, nextCursor}`
//! out.
//!
//! The cursor is the id of the last item of the page, opaque to clients (base64url, with a
//! version tag). Ids are time-ordered, so `WHERE id > cursor ORDER BY id` pages are stable
//! under inserts: a row added while a client pages never shifts or repeats the rows it has
//! yet to see.

use crate::ids::Id;
use crate::problem::FieldError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;

/// Items per page when the client does not say.
pub const DEFAULT_PAGE_LIMIT: u32 = 20;
/// Most items a client may ask for in one page.
pub const MAX_PAGE_LIMIT: u32 = 100;

/// One page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// Return items after this id (in the list's order).
    pub after: Option<Id>,
    pub limit: u32,
}

impl PageRequest {
    /// Parses the raw `cursor` and `limit` query values (empty means absent), recording
    /// errors in `errors` so a handler reports every bad parameter at once.
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
    pub fn fetch_limit(&self) -> u32 {
        self.limit + 1
    }

    /// Trims the look-ahead row and builds the page.
    pub fn into_page<T>(self, mut rows: Vec<T>, id_of: impl Fn(&T) -> Id) -> Page<T> {
        let limit = self.limit as usize;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if has_more {
            rows.last().map(|last| encode_cursor(id_of(last)))
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

fn encode_cursor(id: Id) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{id}"))
}

fn decode_cursor(raw: &str) -> Option<Id> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix("v1:")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let id = Id::from_i64(42);
        assert_eq!(decode_cursor(&encode_cursor(id)), Some(id));
        assert_eq!(decode_cursor("not-a-cursor"), None);
    }

    #[test]
    fn limits_outside_one_to_a_hundred_are_errors_and_empty_means_default() {
        for bad in ["0", "101", "-1", "x"] {
            let mut errors = Vec::new();
            PageRequest::parse(None, Some(bad), &mut errors);
            assert_eq!(errors.len(), 1, "{bad}");
        }
        let mut errors = Vec::new();
        let page = PageRequest::parse(Some(""), Some(""), &mut errors);
        assert!(errors.is_empty());
        assert_eq!((page.after, page.limit), (None, DEFAULT_PAGE_LIMIT));
    }

    #[test]
    fn a_full_page_with_a_look_ahead_row_has_a_next_cursor() {
        let request = PageRequest {
            after: None,
            limit: 2,
        };
        let page = request.into_page(vec![1, 2, 3], |n| Id::from_i64(*n));
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(
            page.next_cursor.as_deref().and_then(decode_cursor),
            Some(Id::from_i64(2))
        );
        let last = request.into_page(vec![4], |n| Id::from_i64(*n));
        assert!(last.next_cursor.is_none());
    }
}
