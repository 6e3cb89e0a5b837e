//! The CA certificate the functions verify PgBouncer against, read once at cold start.
//!
//! On AWS the template gives each function `DATABASE_CA_SECRET_ARN`: a Secrets Manager secret
//! whose string value is the PEM text of the CA certificate(s) that signed PgBouncer's
//! certificate (`kit tls issue`'s `ca.crt`; two certificates while a new CA is rolled in).
//! [`resolve_database_ca_with`] reads it and [`crate::Environment`] hands it to
//! `storage::Config` as `DATABASE_SSLROOTCERT_PEM`:
//!
//! | environment | result |
//! | --- | --- |
//! | `DATABASE_SSLROOTCERT_PEM` or `DATABASE_SSLROOTCERT` set | `Ok(None)`: storage reads them |
//! | else `DATABASE_CA_SECRET_ARN` set | `Ok(Some(pem))`, checked to hold a certificate |
//! | neither | `Ok(None)`: storage uses the URL's `sslrootcert` or the public roots |

use aws_config::ConfigLoader;
use aws_sdk_secretsmanager::Client;

use crate::{aws_config_loader, classify, CredentialsError, DATABASE_SECRET_ARN};

/// The variable with the ARN (or name) of the secret holding the CA certificate(s).
pub const DATABASE_CA_SECRET_ARN: &str = "DATABASE_CA_SECRET_ARN";
/// Where storage reads the CA as PEM text (what the secret resolves to).
pub const DATABASE_SSLROOTCERT_PEM: &str = "DATABASE_SSLROOTCERT_PEM";
/// Where storage reads the CA as a file path (local use).
pub const DATABASE_SSLROOTCERT: &str = "DATABASE_SSLROOTCERT";

const PEM_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";

/// The CA certificate(s) to verify PgBouncer against, if there is a secret to read.
pub async fn resolve_database_ca(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, CredentialsError> {
    resolve_database_ca_with(lookup, aws_config_loader()).await
}

/// [`resolve_database_ca`] with an explicit `aws-config` loader (tests: an emulator).
pub async fn resolve_database_ca_with(
    lookup: impl Fn(&str) -> Option<String>,
    loader: ConfigLoader,
) -> Result<Option<String>, CredentialsError> {
    let Some(secret_arn) = ca_secret_to_fetch(&lookup) else {
        return Ok(None);
    };
    let client = Client::new(&loader.load().await);
    fetch_database_ca(&client, &secret_arn).await.map(Some)
}

/// Reads the secret `secret_arn` with `client`: PEM text holding at least one certificate.
pub async fn fetch_database_ca(
    client: &Client,
    secret_arn: &str,
) -> Result<String, CredentialsError> {
    let about_ca = |error: CredentialsError| CredentialsError::CaSecret {
        arn: secret_arn.to_owned(),
        message: error.to_string().replace(
            &format!("({DATABASE_SECRET_ARN})"),
            &format!("({DATABASE_CA_SECRET_ARN})"),
        ),
    };
    let region = client
        .config()
        .region()
        .map(ToString::to_string)
        .ok_or_else(|| {
            about_ca(CredentialsError::NoRegion {
                arn: secret_arn.to_owned(),
            })
        })?;
    let output = client
        .get_secret_value()
        .secret_id(secret_arn)
        .send()
        .await
        .map_err(|error| about_ca(classify(secret_arn, &region, error)))?;
    let pem = output
        .secret_string()
        .filter(|text| text.contains(PEM_CERTIFICATE))
        .ok_or_else(|| CredentialsError::NotCertificate {
            arn: secret_arn.to_owned(),
        })?;
    tracing::info!(
        secret_arn,
        certificates = pem.matches(PEM_CERTIFICATE).count(),
        "PgBouncer's CA read from Secrets Manager"
    );
    Ok(pem.to_owned())
}

/// `DATABASE_CA_SECRET_ARN` when no CA is given directly (blank values count as unset).
pub(crate) fn ca_secret_to_fetch(lookup: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let non_blank = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
    if non_blank(DATABASE_SSLROOTCERT_PEM).is_some() || non_blank(DATABASE_SSLROOTCERT).is_some() {
        return None;
    }
    non_blank(DATABASE_CA_SECRET_ARN).map(|arn| arn.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_given_directly_wins_over_the_secret() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kit/ca-AbCdEf";
        assert_eq!(
            ca_secret_to_fetch(&env(&[(DATABASE_CA_SECRET_ARN, " x ")])).as_deref(),
            Some("x")
        );
        assert_eq!(
            ca_secret_to_fetch(&env(&[
                (DATABASE_CA_SECRET_ARN, "x"),
                (DATABASE_SSLROOTCERT, "/ca.pem")
            ])),
            None
        );
        assert_eq!(
            ca_secret_to_fetch(&env(&[
                (DATABASE_CA_SECRET_ARN, "x"),
                (DATABASE_SSLROOTCERT_PEM, "pem")
            ])),
            None
        );
        assert_eq!(
            ca_secret_to_fetch(&env(&[(DATABASE_CA_SECRET_ARN, "  ")])),
            None
        );
        let _ = arn;
    }
}
