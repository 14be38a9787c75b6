//! Collects every field error of a request before answering, so a client fixes all of
//! them in one round trip.

use crate::error::ShopError;
use loadstar_core::FieldError;

/// Accumulates field errors; [`Validator::finish`] turns a non-empty list into a 400.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `message` against `field` unless `ok`.
    pub fn check(&mut self, ok: bool, field: &str, message: &str) -> &mut Self {
        if !ok {
            self.errors.push(FieldError::new(field, message));
        }
        self
    }

    /// Checks that `value` (after trimming) has between `min` and `max` characters.
    pub fn text_length(&mut self, field: &str, value: &str, min: usize, max: usize) -> &mut Self {
        let length = value.trim().chars().count();
        if length < min || length > max {
            let message = if min == 0 {
                format!("must be at most {max} characters")
            } else {
                format!("must be between {min} and {max} characters")
            };
            self.errors.push(FieldError::new(field, message));
        }
        self
    }

    /// Checks that `value` is within `min..=max`.
    pub fn range(&mut self, field: &str, value: i64, min: i64, max: i64) -> &mut Self {
        if value < min || value > max {
            self.errors.push(FieldError::new(
                field,
                format!("must be between {min} and {max}"),
            ));
        }
        self
    }

    pub fn push(&mut self, field: &str, message: impl Into<String>) -> &mut Self {
        self.errors.push(FieldError::new(field, message));
        self
    }

    pub fn finish(&mut self) -> Result<(), ShopError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ShopError::Validation(std::mem::take(&mut self.errors)))
        }
    }
}

/// Fails with every collected error.
pub fn ensure_valid(errors: Vec<FieldError>) -> Result<(), ShopError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ShopError::Validation(errors))
    }
}

/// An email address good enough to send to: one `@`, something on each side, a dot in
/// the domain, no whitespace, at most 254 characters (RFC 5321's path limit).
pub fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// An ISO 4217 code shape: three ASCII capitals.
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validator_collects_every_failure() {
        let mut validator = Validator::new();
        validator
            .text_length("name", "", 1, 10)
            .range("quantity", 0, 1, 5)
            .check(true, "ok", "never");
        let Err(ShopError::Validation(errors)) = validator.finish() else {
            panic!("expected errors");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "quantity"]);
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(is_plausible_email("ada@example.com"));
        for bad in [
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "a da@example.com",
            "a@b@c.com",
        ] {
            assert!(!is_plausible_email(bad), "{bad}");
        }
    }

    #[test]
    fn currencies_are_three_capitals() {
        assert!(is_currency_code("EUR"));
        assert!(!is_currency_code("eur"));
        assert!(!is_currency_code("EURO"));
    }
}
