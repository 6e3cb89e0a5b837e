//! Settings read through a lookup: defaults, names in every error, redaction.

use super::*;
use std::collections::HashMap;

fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn defaults_suit_lambda() {
    let c = config(&[("DATABASE_URL", "postgres://u:p@h/db")]).unwrap();
    assert_eq!(c.max_connections, 1);
    assert_eq!(c.acquire_timeout, Duration::from_secs(2));
    assert_eq!(c.statement_timeout, Duration::from_secs(5));
    assert!(c.read_url.is_none());
}

#[test]
fn a_function_s_own_url_wins_over_database_url() {
    let map: HashMap<&str, &str> = [
        ("DATABASE_URL", "postgres://kit_ingest:p@h/db"),
        ("SEARCH_DATABASE_URL", "postgres://kit_search:p@h/db"),
        ("PURGE_DATABASE_URL", " "),
    ]
    .into();
    let lookup = |k: &str| map.get(k).map(|v| v.to_string());
    let url = |f| Config::for_function(f, lookup).unwrap().database_url;
    assert_eq!(url(Function::Search), "postgres://kit_search:p@h/db");
    assert_eq!(url(Function::Purge), "postgres://kit_ingest:p@h/db");
    assert_eq!(
        Config::from_lookup(lookup).unwrap().database_url,
        "postgres://kit_ingest:p@h/db"
    );
}

#[test]
fn missing_url_names_the_variable() {
    let err = config(&[]).unwrap_err().to_string();
    assert!(err.contains("DATABASE_URL"), "{err}");
}

#[test]
fn bad_numbers_name_the_variable_and_the_range() {
    let err = config(&[
        ("DATABASE_URL", "postgres://h/db"),
        ("DB_MAX_CONNECTIONS", "0"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("DB_MAX_CONNECTIONS") && err.contains("1 to 100"),
        "{err}"
    );
}

#[test]
fn debug_output_hides_passwords() {
    let c = config(&[("DATABASE_URL", "postgres://app:s3cret@h:6432/db")]).unwrap();
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("app:***@h:6432/db"),
        "{shown}"
    );
}

/// Every way a password can be written in a URL sqlx accepts, and a few it does
/// not: the secret is never shown, the rest of the URL is.
#[test]
fn passwords_in_query_parameters_are_hidden_too() {
    for (url, secret, shown) in [
        (
            "postgres://h:6432/db?user=app&password=s3cret",
            "s3cret",
            "postgres://h:6432/db?user=app&password=***",
        ),
        (
            "postgres://h/db?sslpassword=s3cret&sslmode=require",
            "s3cret",
            "postgres://h/db?sslpassword=***&sslmode=require",
        ),
        // Percent-encoded names and values: sqlx decodes both.
        (
            "postgres://h/db?%70assword=s3cret",
            "s3cret",
            "postgres://h/db?password=***",
        ),
        (
            "postgres://h/db?pass%77ord=s3cr%65t",
            "s3cr",
            "postgres://h/db?password=***",
        ),
        (
            "postgres://h/db?password=s3cr%65t",
            "s3cr",
            "postgres://h/db?password=***",
        ),
        (
            "postgres://h/db?ssl%70assword=s3cret",
            "s3cret",
            "postgres://h/db?sslpassword=***",
        ),
        (
            "postgres://h/db?PASSWORD=s3cret",
            "s3cret",
            "postgres://h/db?PASSWORD=***",
        ),
        (
            "postgres://h/db?password=s3+cret",
            "cret",
            "postgres://h/db?password=***",
        ),
        // A query value may hold '@', '/', '?', which fooled a split on '@'.
        (
            "postgres://h/db?user=u&password=s3cr@t/x?y",
            "s3cr",
            "postgres://h/db?user=u&password=***",
        ),
        (
            "postgres://u:s3cret@h/db?password=s3cret2",
            "s3cret",
            "postgres://u:***@h/db?password=***",
        ),
        ("postgres://u:s3%40cret@h/db", "s3", "postgres://u:***@h/db"),
        (
            "postgres://u:s3cret@h/db#s3cret",
            "s3cret",
            "postgres://u:***@h/db",
        ),
        (
            "postgres://u@h/db?application_name=kit&authtoken=s3cret",
            "s3cret",
            "postgres://u@h/db?application_name=kit&authtoken=***",
        ),
        // Not a URL sqlx can use: nothing of it is shown.
        ("host=h user=u password=s3cret", "s3cret", "***"),
        ("postgres://u:s3?cret@h/db", "cret", "***"),
    ] {
        let c = config(&[("DATABASE_URL", url), ("DATABASE_READ_URL", url)]).unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains(secret), "{url}: {debug}");
        assert_eq!(redact(url), shown, "{url}");
        assert!(debug.contains(shown), "{url}: {debug}");
    }
    // Nothing that is not a secret is hidden.
    let plain = "postgres://app@h:6432/db?sslmode=require&application_name=kit";
    assert_eq!(redact(plain), plain);
}

#[test]
fn the_connect_url_keeps_what_sqlx_reads_and_drops_the_rest() {
    let url = connect_url(
        "postgres://u:p@h/db?sslmode=require&sslpassword=s3cret&connect_timeout=5&options[search_path]=kit&password=x",
    )
    .unwrap();
    assert_eq!(
        url.as_str(),
        "postgres://u:p@h/db?sslmode=require&options%5Bsearch_path%5D=kit&password=x"
    );
    let url = connect_url("postgres://u:p@h/db?sslpassword=s3cret").unwrap();
    assert_eq!(url.as_str(), "postgres://u:p@h/db");
    let err = connect_url("postgres://u:s3?cret@h/db")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("cret"), "{err}");
}

/// What the logs show while a handle is built from a URL with secrets in its query:
/// sqlx logs every parameter it ignores with its value, so `sslpassword` (which it
/// does not support) must be dropped before sqlx reads the URL.
#[tokio::test]
async fn building_a_handle_never_logs_a_secret() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let url =
        "postgres://app:s3cret1@h:6432/db?sslpassword=s3cret2&%70assword=s3cret3&connect_timeout=5";
    let c = config(&[("DATABASE_URL", url), ("DATABASE_READ_URL", url)]).unwrap();
    tracing::info!(config = ?c, "cold start");
    let db = crate::Database::connect_lazy(&c).unwrap();
    tracing::info!(?db, "handle built");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("sslpassword") && logs.contains("connect_timeout"),
        "the ignored parameters are named: {logs}"
    );
    assert!(!logs.contains("s3cret"), "{logs}");
}
