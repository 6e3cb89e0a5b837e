//! `resolve_database_url_with` against a local Secrets Manager (moto): the URL built from an
//! RDS-style secret, and the errors for a missing secret and malformed ones.

use credentials::{resolve_database_url_with, CredentialsError, DATABASE_SECRET_ARN, DATABASE_URL};
use kit_support::lookup::from_pairs;
use kit_support::moto::{rds_secret_json, Moto, REGION};
use percent_encoding::percent_decode_str;

/// The environment a deployed function sees: only DATABASE_SECRET_ARN (plus `extra`).
fn function_env(
    arn: &str,
    extra: &[(&str, &str)],
) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    from_pairs(&[&[(DATABASE_SECRET_ARN, arn)], extra].concat())
}

#[tokio::test]
async fn resolves_the_rds_secret_into_a_database_url() {
    let moto = Moto::start();
    let password = "p@ss:w/o?r#d%41 é";
    let arn = moto
        .create_string_secret(
            "kit/ingest-url",
            &rds_secret_json(
                "kit_ingest",
                password,
                "pgbouncer.internal.example",
                6432,
                "kit",
            ),
        )
        .await;

    let url = resolve_database_url_with(function_env(&arn, &[]), moto.loader())
        .await
        .expect("the secret resolves")
        .expect("a URL, since DATABASE_URL is not set");
    assert_eq!(
        url,
        "postgres://kit_ingest:p%40ss%3Aw%2Fo%3Fr%23d%2541%20%C3%A9@pgbouncer.internal.example:6432/kit"
    );

    // What sqlx will see: the url crate's parse, then percent-decoding of the password.
    let parsed = url::Url::parse(&url).expect("the URL parses");
    assert_eq!(parsed.scheme(), "postgres");
    assert_eq!(parsed.username(), "kit_ingest");
    let decoded = percent_decode_str(parsed.password().expect("a password"))
        .decode_utf8()
        .expect("UTF-8");
    assert_eq!(decoded, password);
    assert_eq!(parsed.host_str(), Some("pgbouncer.internal.example"));
    assert_eq!(parsed.port(), Some(6432));
    assert_eq!(parsed.path(), "/kit");

    // With DATABASE_URL set, the secret is not needed and not read.
    let local = function_env(&arn, &[(DATABASE_URL, "postgres://u:p@127.0.0.1:6432/kit")]);
    assert_eq!(
        resolve_database_url_with(local, moto.loader())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_missing_secret_is_reported_with_its_arn() {
    let moto = Moto::start();
    // Another secret exists: the server is warm and the lookup really is for a missing one.
    moto.create_string_secret("kit/other", &rds_secret_json("u", "p", "h", 6432, "d"))
        .await;
    let arn = format!("arn:aws:secretsmanager:{REGION}:123456789012:secret:kit/missing-AbCdEf");

    let error = resolve_database_url_with(function_env(&arn, &[]), moto.loader())
        .await
        .unwrap_err();
    assert!(
        matches!(error, CredentialsError::NotFound { .. }),
        "{error:?}"
    );
    assert_eq!(error.secret_arn(), arn);
    let message = error.to_string();
    assert!(message.contains(&arn), "{message}");
    assert!(
        message.contains(REGION) && message.contains("AWS_REGION"),
        "{message}"
    );
}

#[tokio::test]
async fn malformed_secrets_name_the_problem_and_never_the_password() {
    let moto = Moto::start();

    let no_password = moto
        .create_string_secret(
            "kit/no-password",
            r#"{"engine":"postgres","username":"kit_search","host":"h","port":6432,"dbname":"kit"}"#,
        )
        .await;
    let error = resolve_database_url_with(function_env(&no_password, &[]), moto.loader())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, CredentialsError::MissingKey { key: "password", arn } if *arn == no_password),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("\"password\"") && message.contains(&no_password),
        "{message}"
    );

    let not_json = moto
        .create_string_secret("kit/not-json", "postgres://kit:SECRETVALUE@h:6432/kit")
        .await;
    let error = resolve_database_url_with(function_env(&not_json, &[]), moto.loader())
        .await
        .unwrap_err();
    assert!(
        matches!(error, CredentialsError::NotJson { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&not_json) && !message.contains("SECRETVALUE"),
        "{message}"
    );

    let binary = moto
        .create_binary_secret(
            "kit/binary",
            rds_secret_json("u", "SECRETVALUE", "h", 6432, "d").as_bytes(),
        )
        .await;
    let error = resolve_database_url_with(function_env(&binary, &[]), moto.loader())
        .await
        .unwrap_err();
    assert!(
        matches!(error, CredentialsError::SecretBinary { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&binary) && message.contains("SecretString"),
        "{message}"
    );
    assert!(!format!("{error:?}").contains("SECRETVALUE"), "{error:?}");
}

/// The HTTPS client (rustls with ring, the system's roots) really speaks TLS: against moto's
/// made-up self-signed certificate the handshake runs and certificate verification refuses it.
#[tokio::test]
async fn https_endpoints_get_verified_tls() {
    let moto = Moto::start_with_tls();
    let arn = format!("arn:aws:secretsmanager:{REGION}:123456789012:secret:kit/tls-AbCdEf");
    let error = resolve_database_url_with(function_env(&arn, &[]), moto.loader())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, CredentialsError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(message.contains(&arn), "{message}");
    assert!(message.to_lowercase().contains("certificate"), "{message}");
}

#[tokio::test]
async fn the_proxy_override_replaces_the_secrets_database_endpoint_at_cold_start_and_on_reread() {
    let moto = Moto::start();
    // The standard RDS shape: the secret names the database itself (the rotation logs in
    // there); the function must connect to PgBouncer.
    let arn = moto
        .create_string_secret(
            "kit/search-proxy",
            &rds_secret_json("kit_search", "pw1", "kit.cluster.example", 5432, "kit"),
        )
        .await;
    let proxy = [
        (
            credentials::DATABASE_PROXY_HOST,
            "pgbouncer.internal.example",
        ),
        (credentials::DATABASE_PROXY_PORT, "6432"),
    ];
    let through_pgbouncer = "postgres://kit_search:pw1@pgbouncer.internal.example:6432/kit";

    let url = resolve_database_url_with(function_env(&arn, &proxy), moto.loader())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(url, through_pgbouncer);
    let direct = resolve_database_url_with(function_env(&arn, &[]), moto.loader())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        direct,
        "postgres://kit_search:pw1@kit.cluster.example:5432/kit"
    );

    let env = credentials::Environment::load_with(function_env(&arn, &proxy), moto.loader())
        .await
        .unwrap();
    assert_eq!(env.get(DATABASE_URL).as_deref(), Some(through_pgbouncer));
    let reread = env.secret_source().unwrap().reread().await.unwrap();
    assert_eq!(reread, through_pgbouncer, "the re-read keeps the override");
}
