//! Keeping secrets out of what loadstar prints: logs, `loadstar config`, errors.

/// Masks the password of a connection URL (`postgres://user:pw@host/db` →
/// `postgres://user:***@host/db`) so operators still see where it points.
pub fn redact_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // set_password only fails for URLs that cannot carry credentials.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_but_hosts_stay_visible() {
        assert_eq!(
            redact_url_password("postgres://app:s3cret@db.internal:5432/shop"),
            "postgres://app:***@db.internal:5432/shop"
        );
        assert_eq!(
            redact_url_password("sqlite://var/x.db"),
            "sqlite://var/x.db"
        );
    }
}
