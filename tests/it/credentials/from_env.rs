//! The exact call a function's `main` makes, `resolve_database_url` with the process
//! environment as its lookup, with the AWS settings in that environment the way Lambda (or a
//! developer) provides them, pointed at moto through `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
//!
//! The environment is a process's own: the settings are given to a child process of this
//! binary that runs only [`in_its_own_process`] (`crate::alone`), so no test ever changes the
//! environment other test threads of this binary read.

use kit_support::moto::{rds_secret_json, Moto, REGION};

use crate::alone::{is_child_for, run_alone};

const CHILD: &str = "credentials::from_env::in_its_own_process";

#[tokio::test]
async fn resolve_database_url_takes_the_aws_settings_from_the_environment() {
    let moto = Moto::start();
    let arn = moto
        .create_string_secret(
            "kit/purge",
            &rds_secret_json("kit_purge", "pw:#1", "pgb", 6432, "kit"),
        )
        .await;
    let endpoint = moto.endpoint();
    run_alone(
        CHILD,
        &[
            (credentials::DATABASE_SECRET_ARN, &arn),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", &endpoint),
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
        ],
        &[
            // The local stack's URL would (rightly) short-circuit the secret.
            credentials::DATABASE_URL,
            "AWS_ENDPOINT_URL",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_DEFAULT_REGION",
        ],
    );
}

#[tokio::test]
#[ignore = "runs in a process of its own, started by the test above"]
async fn in_its_own_process() {
    if !is_child_for(CHILD) {
        return;
    }
    let url = credentials::resolve_database_url(|name| std::env::var(name).ok())
        .await
        .expect("the secret resolves")
        .expect("a URL");
    assert_eq!(url, "postgres://kit_purge:pw%3A%231@pgb:6432/kit");
}
