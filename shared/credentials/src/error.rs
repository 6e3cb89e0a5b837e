//! Why the database credentials could not be read, and what to do about it.

/// A failure to turn `DATABASE_SECRET_ARN` into a database URL.
///
/// Every message names the secret's ARN and the fix. None ever contains the password or
/// any other value read from the secret (only the names of its keys), so these errors can
/// be logged and returned from `main` as they are.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "secret {arn} (DATABASE_SECRET_ARN) was not found in region {region}: check the ARN, \
         that the secret exists and is not scheduled for deletion, and AWS_REGION"
    )]
    NotFound { arn: String, region: String },

    #[error(
        "access to secret {arn} (DATABASE_SECRET_ARN) was denied: grant the function's execution \
         role secretsmanager:GetSecretValue on this secret (AWSSecretsManagerGetSecretValuePolicy \
         in the SAM template){}",
        detail_suffix(.detail)
    )]
    AccessDenied { arn: String, detail: Option<String> },

    #[error(
        "secret {arn} (DATABASE_SECRET_ARN) could not be decrypted: grant the function's execution \
         role kms:Decrypt on the secret's KMS key (needed when the secret uses a customer managed key)"
    )]
    Decryption { arn: String },

    #[error(
        "no AWS region is configured to read secret {arn} (DATABASE_SECRET_ARN): set AWS_REGION \
         (Lambda sets it; locally export it, e.g. AWS_REGION=us-east-1)"
    )]
    NoRegion { arn: String },

    #[error(
        "secret {arn} (DATABASE_SECRET_ARN) holds SecretBinary, not SecretString: store the \
         RDS-style JSON {EXPECTED_SHAPE} as the secret's string value"
    )]
    SecretBinary { arn: String },

    #[error(
        "secret {arn} (DATABASE_SECRET_ARN) has no value: put the RDS-style JSON {EXPECTED_SHAPE} \
         into it (aws secretsmanager put-secret-value --secret-string ...)"
    )]
    NoValue { arn: String },

    #[error(
        "secret {arn} (DATABASE_SECRET_ARN) is not a JSON object ({reason}): store the RDS-style \
         JSON {EXPECTED_SHAPE}"
    )]
    NotJson { arn: String, reason: String },

    #[error(
        "secret {arn} (DATABASE_SECRET_ARN) has no \"{key}\" key: add it; the kit expects the \
         RDS-style JSON {EXPECTED_SHAPE}"
    )]
    MissingKey { arn: String, key: &'static str },

    #[error(
        "secret {arn} (DATABASE_SECRET_ARN) has an invalid \"{key}\": expected {expected}; fix \
         the value in the secret"
    )]
    InvalidKey {
        arn: String,
        key: &'static str,
        expected: &'static str,
    },

    #[error(
        "secret {arn} (DATABASE_SECRET_ARN) is for engine \"{engine}\", not PostgreSQL: point \
         DATABASE_SECRET_ARN at the secret of the kit's PostgreSQL role"
    )]
    WrongEngine { arn: String, engine: String },

    #[error(
        "could not reach Secrets Manager to read secret {arn} (DATABASE_SECRET_ARN): {detail}; \
         a function in a VPC needs a route to Secrets Manager (an interface VPC endpoint for \
         secretsmanager or a NAT gateway); locally, check AWS_ENDPOINT_URL / \
         AWS_ENDPOINT_URL_SECRETS_MANAGER"
    )]
    Unreachable { arn: String, detail: String },

    #[error(
        "Secrets Manager refused to return secret {arn} (DATABASE_SECRET_ARN): {detail}; check the \
         ARN, the secret's state and the function's credentials"
    )]
    Sdk { arn: String, detail: String },

    #[error(
        "{name}={value:?} is not valid: expected {expected} (for re-reading secret {arn} \
         (DATABASE_SECRET_ARN) when the database refuses the login); unset it for the default"
    )]
    Setting {
        arn: String,
        name: &'static str,
        value: String,
        expected: &'static str,
    },

    /// Reading the CA secret (`DATABASE_CA_SECRET_ARN`) failed; `message` is the same
    /// diagnosis as for the login secret, naming that variable.
    #[error("{message}")]
    CaSecret { arn: String, message: String },

    #[error(
        "secret {arn} (DATABASE_CA_SECRET_ARN) holds no PEM certificate: store the PEM text of the \
         CA certificate(s) that signed PgBouncer's certificate as its string value (the ca.crt \
         `kit tls issue` writes; docs/deploy.md)"
    )]
    NotCertificate { arn: String },
}

/// The JSON the kit expects in the secret, for error messages (no values).
const EXPECTED_SHAPE: &str =
    r#"{"engine":"postgres","username":...,"password":...,"host":...,"port":6432,"dbname":...}"#;

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_deref()
        .map(|detail| format!(" (AWS said: {detail})"))
        .unwrap_or_default()
}

impl CredentialsError {
    /// The ARN of the secret this error is about.
    pub fn secret_arn(&self) -> &str {
        match self {
            Self::NotFound { arn, .. }
            | Self::AccessDenied { arn, .. }
            | Self::Decryption { arn }
            | Self::NoRegion { arn }
            | Self::SecretBinary { arn }
            | Self::NoValue { arn }
            | Self::NotJson { arn, .. }
            | Self::MissingKey { arn, .. }
            | Self::InvalidKey { arn, .. }
            | Self::WrongEngine { arn, .. }
            | Self::Unreachable { arn, .. }
            | Self::Sdk { arn, .. }
            | Self::Setting { arn, .. }
            | Self::CaSecret { arn, .. }
            | Self::NotCertificate { arn } => arn,
        }
    }

    /// Classifies an error that Secrets Manager itself returned, by its error code.
    pub(crate) fn from_service(
        arn: &str,
        region: &str,
        code: Option<&str>,
        message: Option<&str>,
    ) -> Self {
        let arn = arn.to_owned();
        match code {
            Some("ResourceNotFoundException") => Self::NotFound {
                arn,
                region: region.to_owned(),
            },
            Some("AccessDeniedException" | "AccessDenied") => Self::AccessDenied {
                arn,
                detail: message.map(str::to_owned),
            },
            Some("DecryptionFailure") => Self::Decryption { arn },
            _ => Self::Sdk {
                arn,
                detail: format!(
                    "{}: {}",
                    code.unwrap_or("unknown error"),
                    message.unwrap_or("no message")
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kit/ingest-AbCdEf";

    #[test]
    fn service_errors_are_classified_by_code() {
        let not_found = CredentialsError::from_service(
            ARN,
            "eu-west-1",
            Some("ResourceNotFoundException"),
            Some("Secrets Manager can't find the specified secret."),
        );
        assert!(matches!(not_found, CredentialsError::NotFound { .. }));
        let message = not_found.to_string();
        assert!(
            message.contains(ARN) && message.contains("eu-west-1"),
            "{message}"
        );

        let denied = CredentialsError::from_service(
            ARN,
            "eu-west-1",
            Some("AccessDeniedException"),
            Some("User: arn:aws:sts::1:assumed-role/x is not authorized"),
        );
        assert!(matches!(denied, CredentialsError::AccessDenied { .. }));
        let message = denied.to_string();
        assert!(message.contains(ARN), "{message}");
        assert!(
            message.contains("secretsmanager:GetSecretValue"),
            "{message}"
        );
        assert!(message.contains("is not authorized"), "{message}");

        let kms = CredentialsError::from_service(ARN, "eu-west-1", Some("DecryptionFailure"), None);
        assert!(matches!(kms, CredentialsError::Decryption { .. }));
        assert!(kms.to_string().contains("kms:Decrypt"));

        let other = CredentialsError::from_service(
            ARN,
            "eu-west-1",
            Some("InvalidRequestException"),
            Some("You can't perform this operation on the secret because it was marked for deletion."),
        );
        assert!(matches!(other, CredentialsError::Sdk { .. }));
        let message = other.to_string();
        assert!(
            message.contains(ARN) && message.contains("InvalidRequestException"),
            "{message}"
        );
    }

    #[test]
    fn every_variant_names_the_arn() {
        let arn = || ARN.to_owned();
        let all = [
            CredentialsError::NotFound {
                arn: arn(),
                region: "r".into(),
            },
            CredentialsError::AccessDenied {
                arn: arn(),
                detail: None,
            },
            CredentialsError::Decryption { arn: arn() },
            CredentialsError::NoRegion { arn: arn() },
            CredentialsError::SecretBinary { arn: arn() },
            CredentialsError::NoValue { arn: arn() },
            CredentialsError::NotJson {
                arn: arn(),
                reason: "EOF".into(),
            },
            CredentialsError::MissingKey {
                arn: arn(),
                key: "password",
            },
            CredentialsError::InvalidKey {
                arn: arn(),
                key: "port",
                expected: "a port",
            },
            CredentialsError::WrongEngine {
                arn: arn(),
                engine: "mysql".into(),
            },
            CredentialsError::Unreachable {
                arn: arn(),
                detail: "timeout".into(),
            },
            CredentialsError::Sdk {
                arn: arn(),
                detail: "x".into(),
            },
            CredentialsError::Setting {
                arn: arn(),
                name: "DATABASE_SECRET_REREAD_INTERVAL_MS",
                value: "1s".into(),
                expected: "milliseconds",
            },
        ];
        for error in all {
            assert_eq!(error.secret_arn(), ARN);
            assert!(error.to_string().contains(ARN), "{error}");
        }
    }
}
