//! `resolve_database_ca_with` against a local Secrets Manager (moto): the CA PEM the functions
//! verify PgBouncer against, and the errors for a secret that is missing or holds no certificate.

use credentials::{
    resolve_database_ca_with, CredentialsError, DATABASE_CA_SECRET_ARN, DATABASE_SSLROOTCERT,
};
use kit_support::lookup::from_pairs as env;
use kit_support::moto::{Moto, REGION};

const CA_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBfTCCASOgAwIBAgIU\n-----END CERTIFICATE-----\n";

#[tokio::test]
async fn the_ca_secret_resolves_to_its_pem_and_bad_ones_are_named() {
    let moto = Moto::start();
    let bundle = format!("{CA_PEM}{CA_PEM}");
    let arn = moto.create_string_secret("kit/pgbouncer-ca", &bundle).await;
    let pem = resolve_database_ca_with(env(&[(DATABASE_CA_SECRET_ARN, &arn)]), moto.loader())
        .await
        .expect("the secret resolves")
        .expect("a PEM, since no CA is given directly");
    assert_eq!(pem, bundle, "both CAs of a rollover are kept");

    // A CA given as a file wins: the secret is not read.
    let local = env(&[
        (DATABASE_CA_SECRET_ARN, &arn),
        (DATABASE_SSLROOTCERT, "/ca.pem"),
    ]);
    assert_eq!(
        resolve_database_ca_with(local, moto.loader())
            .await
            .unwrap(),
        None
    );

    // A secret that holds something else (the JSON login, an ARN) is refused at cold start.
    let wrong = moto
        .create_string_secret("kit/not-a-ca", r#"{"username":"kit_search"}"#)
        .await;
    let error = resolve_database_ca_with(env(&[(DATABASE_CA_SECRET_ARN, &wrong)]), moto.loader())
        .await
        .unwrap_err();
    assert!(
        matches!(error, CredentialsError::NotCertificate { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&wrong)
            && message.contains("DATABASE_CA_SECRET_ARN")
            && message.contains("holds no PEM certificate"),
        "{message}"
    );

    // A missing secret: the same diagnosis as for the login secret, naming this variable.
    let missing = format!("arn:aws:secretsmanager:{REGION}:123456789012:secret:kit/missing-AbCdEf");
    let error = resolve_database_ca_with(env(&[(DATABASE_CA_SECRET_ARN, &missing)]), moto.loader())
        .await
        .unwrap_err();
    assert_eq!(error.secret_arn(), missing);
    let message = error.to_string();
    assert!(
        message.contains("(DATABASE_CA_SECRET_ARN) was not found")
            && !message.contains("(DATABASE_SECRET_ARN)"),
        "{message}"
    );
}
