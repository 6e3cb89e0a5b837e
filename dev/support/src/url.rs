//! Database URLs pointed at another database: the one rewrite every helper uses.

use anyhow::Context;

/// `url` with its database (the last path segment) replaced by `name`; the user, host,
/// port and query (`sslmode`, `sslrootcert=/path/to/ca.crt`: slashes that are not the
/// path's) are kept. A URL without a database part (`postgres://host`) is an error, not
/// a URL whose host became the database.
pub fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (prefix, _) = base
        .rsplit_once('/')
        .filter(|(prefix, _)| prefix.contains("://") && !prefix.ends_with('/'))
        .context("the database URL has no /database part")?;
    Ok(match query {
        Some(query) => format!("{prefix}/{name}?{query}"),
        None => format!("{prefix}/{name}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:6432/kit", "x").unwrap(),
            "postgres://u:p@h:6432/x"
        );
        assert_eq!(
            with_database(
                "postgres://u:p@h/kit?sslmode=verify-full&sslrootcert=/a/b/ca.crt",
                "x"
            )
            .unwrap(),
            "postgres://u:p@h/x?sslmode=verify-full&sslrootcert=/a/b/ca.crt"
        );
    }

    #[test]
    fn a_url_without_a_database_is_refused() {
        assert!(with_database("postgres://h", "x").is_err());
        assert!(with_database("postgres://h?sslmode=require", "x").is_err());
        assert!(with_database("kit", "x").is_err());
    }
}
