//! The exact call a function's `main` makes, `resolve_database_url`, with the AWS settings in
//! the process environment the way Lambda (or a developer) provides them, pointed at moto
//! through `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
//!
//! This binary holds a single test because it sets process environment variables: no other
//! test thread can be reading them. Needs moto: run scripts/install-moto.sh.

use kit_support::moto::{rds_secret_json, Moto, REGION};

#[tokio::test]
async fn resolve_database_url_takes_the_aws_settings_from_the_environment() {
    let moto = Moto::start();
    let arn = moto
        .create_string_secret(
            "kit/purge",
            &rds_secret_json("kit_purge", "pw:#1", "pgb", 6432, "kit"),
        )
        .await;

    for (name, value) in [
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.endpoint().as_str()),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        // Never fall back to the instance metadata service (a non-loopback address).
        ("AWS_EC2_METADATA_DISABLED", "true"),
        // Keep a developer's ~/.aws out of the test.
        ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        ),
    ] {
        std::env::set_var(name, value);
    }
    for name in [
        "AWS_ENDPOINT_URL",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
    ] {
        std::env::remove_var(name);
    }

    // DATABASE_* come from the lookup, as in `main`; the process env may hold the local stack's
    // DATABASE_URL, which would (rightly) short-circuit the secret.
    let lookup = |name: &str| (name == credentials::DATABASE_SECRET_ARN).then(|| arn.clone());
    let url = credentials::resolve_database_url(lookup)
        .await
        .expect("the secret resolves")
        .expect("a URL");
    assert_eq!(url, "postgres://kit_purge:pw%3A%231@pgb:6432/kit");
}
