//! The stack's database URLs (`postgres://user:password@host:port/database?query`, as
//! `scripts/stack.sh` writes them), taken apart and rewritten in one place.

use std::fmt::Display;
use std::path::PathBuf;

use anyhow::Context;

/// `url` naming database `name`, its query (sslmode, sslrootcert=/path/to/ca.crt) kept.
pub fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    // The query's slashes are not the path's.
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (prefix, _) = base
        .rsplit_once('/')
        .context("database URL without a path")?;
    Ok(if query.is_empty() {
        format!("{prefix}/{name}")
    } else {
        format!("{prefix}/{name}?{query}")
    })
}

/// `url` with its host and port replaced by `address` (`127.0.0.1:4321`), the rest kept.
pub fn with_address(url: &str, address: impl Display) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (userinfo, after) = rest.rsplit_once('@').expect("a URL with user info");
    let path = after.find('/').map(|i| &after[i..]).unwrap_or("");
    format!("{scheme}://{userinfo}@{address}{path}")
}

/// `url` without its query: the login and the address only, no TLS parameters.
pub fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

/// The user name and password of `url`, as written in it.
pub fn login(url: &str) -> Option<(String, String)> {
    let (_, rest) = url.split_once("://")?;
    let (userinfo, _) = rest.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The CA file a stack URL verifies its server against (its `sslrootcert`), if it names one.
pub fn sslrootcert(url: &str) -> Option<PathBuf> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("sslrootcert="))
        .map(|path| PathBuf::from(path.replace("%20", " ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str =
        "postgres://kit_search:p%40ss@127.0.0.1:56432/kit?sslmode=verify-full&sslrootcert=/a%20b/ca.crt";

    #[test]
    fn rewrites_keep_everything_else() {
        assert_eq!(
            with_database(URL, "t_1").unwrap(),
            "postgres://kit_search:p%40ss@127.0.0.1:56432/t_1?sslmode=verify-full&sslrootcert=/a%20b/ca.crt"
        );
        assert_eq!(
            with_address(URL, "127.0.0.1:9"),
            "postgres://kit_search:p%40ss@127.0.0.1:9/kit?sslmode=verify-full&sslrootcert=/a%20b/ca.crt"
        );
        assert_eq!(
            without_query(URL),
            "postgres://kit_search:p%40ss@127.0.0.1:56432/kit"
        );
    }

    #[test]
    fn reads_the_login_and_the_ca() {
        assert_eq!(
            login(URL),
            Some(("kit_search".to_owned(), "p%40ss".to_owned()))
        );
        assert_eq!(sslrootcert(URL), Some(PathBuf::from("/a b/ca.crt")));
        assert_eq!(sslrootcert(without_query(URL)), None);
    }
}
