//! `infra/template.yaml`: the AWS SAM template, filled from `template.yaml.in`.
//!
//! The skeleton is plain YAML with `{{name}}` placeholders so it reads like the
//! output; blocks that repeat per function (secrets, alarms) are built here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::secrets::{
    rotation, rotation_parameters, secret_outputs, secret_ref_list, secret_refs, secrets, transform,
};
use super::{fill, yaml_str, RenderError, GENERATED_MARKER};
use crate::deploy::model::{AuthMode, FunctionName, KitConfig, RDS_CA_BUNDLE_PATH};

const SKELETON: &str = include_str!("template.yaml.in");

/// Placeholder name → rendered text.
#[derive(Default)]
struct Values(BTreeMap<String, String>);

impl Values {
    fn insert(&mut self, name: impl Into<String>, value: String) {
        let name = name.into();
        assert!(
            self.0.insert(name.clone(), value).is_none(),
            "placeholder {name} set twice"
        );
    }
}

/// The rendered `infra/template.yaml`.
pub fn render_template(config: &KitConfig) -> Result<String, RenderError> {
    let mut v = Values::default();
    v.insert("marker", GENERATED_MARKER.to_owned());
    v.insert("database_name", yaml_str(&config.database.name));
    v.insert(
        "log_retention_days",
        config.aws.log_retention_days.to_string(),
    );

    for (name, f) in config.functions() {
        let key = |suffix: &str| format!("{name}_{suffix}");
        v.insert(key("memory_mb"), f.memory_mb.to_string());
        v.insert(key("timeout_s"), f.timeout_s.to_string());
        v.insert(
            key("reserved_concurrency"),
            f.reserved_concurrency.to_string(),
        );
        v.insert(
            key("connections"),
            f.connections_per_environment.to_string(),
        );
        v.insert(key("acquire_timeout_ms"), f.acquire_timeout_ms.to_string());
        v.insert(
            key("statement_timeout_ms"),
            f.statement_timeout_ms.to_string(),
        );
        v.insert(key("log_level"), yaml_str(&f.log_level));
        let provisioned = if f.provisioned_concurrency > 0 {
            format!(
                "      ProvisionedConcurrencyConfig:\n        ProvisionedConcurrentExecutions: {}\n",
                f.provisioned_concurrency
            )
        } else {
            String::new()
        };
        v.insert(key("provisioned"), provisioned);
    }

    let q = &config.queue;
    v.insert("queue_batch_size", q.batch_size.to_string());
    v.insert(
        "queue_batching_window",
        if q.batching_window_s > 0 {
            format!(
                "            MaximumBatchingWindowInSeconds: {}\n",
                q.batching_window_s
            )
        } else {
            String::new()
        },
    );
    v.insert(
        "queue_maximum_concurrency",
        q.maximum_concurrency.to_string(),
    );
    v.insert("queue_max_receive_count", q.max_receive_count.to_string());
    v.insert(
        "queue_visibility_timeout_s",
        q.visibility_timeout_s.to_string(),
    );
    v.insert(
        "queue_message_retention_s",
        q.message_retention_s.to_string(),
    );
    v.insert(
        "queue_dlq_message_retention_s",
        q.dlq_message_retention_s.to_string(),
    );
    v.insert(
        "queue_fifo",
        if q.fifo {
            "      FifoQueue: true\n".to_owned()
        } else {
            String::new()
        },
    );

    v.insert(
        "api_throttling_rate_limit",
        config.api.throttling_rate_limit.to_string(),
    );
    v.insert(
        "api_throttling_burst_limit",
        config.api.throttling_burst_limit.to_string(),
    );
    v.insert("api_p99_alarm_ms", config.api.p99_alarm_ms.to_string());
    v.insert("api_auth_mode", yaml_str(config.api.auth.as_str()));
    v.insert("api_namespace_claim", yaml_str(&config.api.namespace_claim));
    v.insert("api_auth_summary", auth_summary(config.api.auth).to_owned());
    v.insert("api_auth", api_auth(config));
    v.insert("ingest_allowed_namespaces", allowed_namespaces(config));
    v.insert("queue_policy", queue_policy(config));
    v.insert("schedule_expression", yaml_str(&config.schedule.expression));
    v.insert(
        "schedule_retention_days",
        config.schedule.retention_days.to_string(),
    );

    let p = &config.pgbouncer;
    v.insert("pgbouncer_port", p.port.to_string());
    v.insert("pgbouncer_instances", p.instances.to_string());
    v.insert("pgbouncer_task_cpu", p.task_cpu.to_string());
    v.insert("pgbouncer_task_memory_mb", p.task_memory_mb.to_string());
    v.insert(
        "pgbouncer_min_healthy_percent",
        min_healthy_percent(p.instances).to_string(),
    );
    v.insert("pgbouncer_nofile", file_descriptors(config).to_string());
    v.insert(
        "login_wait_ms",
        login_wait_ms(p.server_login_retry_s).to_string(),
    );

    let tls = &config.tls;
    v.insert("tls_client_sslmode", yaml_str(tls.client_sslmode.as_str()));
    v.insert("tls_server_sslmode", yaml_str(tls.server_sslmode.as_str()));
    v.insert("tls_server_ca_file", yaml_str(RDS_CA_BUNDLE_PATH));
    v.insert("tls_pgbouncer_hostname", yaml_str(&tls.pgbouncer_hostname));
    v.insert("tls_hosted_zone", yaml_str(tls.hosted_zone()));

    v.insert("transform", transform(config));
    v.insert("rotation_parameters", rotation_parameters(config));
    v.insert("secrets", secrets(config));
    v.insert("rotation", rotation(config));
    v.insert("secret_refs", secret_refs());
    v.insert("secret_ref_list", secret_ref_list());
    v.insert("secret_outputs", secret_outputs());
    v.insert("function_alarms", function_alarms());

    fill(SKELETON, &v.0)
}

/// How the template's description names the search API's authentication.
fn auth_summary(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::Jwt => "every route behind a JWT authorizer",
        AuthMode::Lambda => "every route behind a Lambda authorizer",
        AuthMode::Iam => "every route behind AWS_IAM (SigV4) authorization",
        AuthMode::None => "no authorization (allow_unauthenticated)",
    }
}

/// The `Auth` block of the HTTP API: every route behind the configured authorizer.
fn api_auth(config: &KitConfig) -> String {
    let api = &config.api;
    let list = |items: &[String], indent: &str| -> String {
        items
            .iter()
            .map(|item| format!("{indent}- {}\n", yaml_str(item)))
            .collect()
    };
    match api.auth {
        AuthMode::Jwt => {
            let scopes = if api.authorization_scopes.is_empty() {
                String::new()
            } else {
                format!(
                    "            AuthorizationScopes:\n{}",
                    list(&api.authorization_scopes, "              ")
                )
            };
            format!(
                "      Auth:
        DefaultAuthorizer: JwtAuthorizer
        Authorizers:
          JwtAuthorizer:
            IdentitySource: $request.header.Authorization
{scopes}            JwtConfiguration:
              issuer: {issuer}
              audience:
{audience}",
                issuer = yaml_str(api.jwt_issuer.as_deref().unwrap_or_default()),
                audience = list(&api.jwt_audience, "                "),
            )
        }
        AuthMode::Lambda => format!(
            "      Auth:
        DefaultAuthorizer: LambdaAuthorizer
        Authorizers:
          LambdaAuthorizer:
            FunctionArn: {arn}
            AuthorizerPayloadFormatVersion: \"2.0\"
            EnableSimpleResponses: true
            EnableFunctionDefaultPermissions: true
            Identity:
              Headers:
                - Authorization
              ReauthorizeEvery: 300
",
            arn = yaml_str(api.lambda_authorizer_arn.as_deref().unwrap_or_default()),
        ),
        AuthMode::Iam => "      Auth:
        EnableIamAuthorizer: true
        DefaultAuthorizer: AWS_IAM
"
        .to_owned(),
        AuthMode::None => String::new(),
    }
}

/// `ALLOWED_NAMESPACES` of ingest, when kit.toml narrows the queue to some namespaces.
fn allowed_namespaces(config: &KitConfig) -> String {
    if config.queue.namespaces.is_empty() {
        return String::new();
    }
    format!(
        "          ALLOWED_NAMESPACES: {}\n",
        yaml_str(&config.queue.namespaces.join(","))
    )
}

/// A kit.toml ARN as a YAML value: through `Fn::Sub` when it holds `${AWS::…}`.
fn arn_value(arn: &str, indent: &str) -> String {
    if arn.contains("${") {
        format!("{indent}- Fn::Sub: {}\n", yaml_str(arn))
    } else {
        format!("{indent}- {}\n", yaml_str(arn))
    }
}

/// Only the listed producers may send to the ingest queue: an Allow for them, and a
/// Deny for every other principal (an Allow alone would not stop identities of the
/// account whose own IAM policies grant `sqs:SendMessage`).
fn queue_policy(config: &KitConfig) -> String {
    let producers: String = config
        .queue
        .producers
        .iter()
        .map(|arn| arn_value(arn, "                "))
        .collect();
    let principals: String = config
        .queue
        .producers
        .iter()
        .map(|arn| arn_value(arn, "                  "))
        .collect();
    format!(
        "  IngestQueuePolicy:
    Type: AWS::SQS::QueuePolicy
    Properties:
      Queues:
        - Ref: IngestQueue
      PolicyDocument:
        Version: \"2012-10-17\"
        Statement:
          - Sid: ProducersMaySend
            Effect: Allow
            Principal:
              AWS:
{producers}            Action: sqs:SendMessage
            Resource:
              Fn::GetAtt: [IngestQueue, Arn]
          - Sid: NoOneElseMaySend
            Effect: Deny
            Principal: \"*\"
            Action: sqs:SendMessage
            Resource:
              Fn::GetAtt: [IngestQueue, Arn]
            Condition:
              ArnNotEquals:
                aws:PrincipalArn:
{principals}
"
    )
}

/// ECS replaces tasks one at a time without ever running more than `instances`.
fn min_healthy_percent(instances: u32) -> u32 {
    if instances <= 1 {
        0
    } else {
        100 - 100u32.div_ceil(instances)
    }
}

/// `DATABASE_LOGIN_WAIT_MS`: after re-reading rotated credentials, a function waits this
/// long for PgBouncer to try them. PgBouncer refuses a role's clients with its cached error
/// for `server_login_retry` after a refused server login; two seconds more cover the
/// refused attempt that makes it log in again and the next one.
fn login_wait_ms(server_login_retry_s: u32) -> u64 {
    (u64::from(server_login_retry_s) + 2) * 1000
}

/// Every client and server connection is a file descriptor, plus some for PgBouncer itself.
fn file_descriptors(config: &KitConfig) -> u64 {
    let p = &config.pgbouncer;
    let servers = u64::from(config.pools()) * u64::from(p.default_pool_size + p.reserve_pool_size);
    (u64::from(p.max_client_conn) + servers + 64).max(4096)
}

fn function_alarms() -> String {
    let mut out = String::new();
    for name in FunctionName::ALL {
        for (metric, what) in [
            (
                "Errors",
                "failed invocations (the handler returned an error or crashed)",
            ),
            (
                "Throttles",
                "throttled invocations (reserved concurrency exhausted)",
            ),
        ] {
            let _ = write!(
                out,
                "  {id}{metric}Alarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: {name} had {what}.
      Namespace: AWS/Lambda
      MetricName: {metric}
      Dimensions:
        - Name: FunctionName
          Value:
            Ref: {id}Function
      Statistic: Sum
      Period: 300
      EvaluationPeriods: 1
      Threshold: 0
      ComparisonOperator: GreaterThanThreshold
      TreatMissingData: notBreaching
      AlarmActions:
        - Ref: AlarmTopic

",
                id = name.logical_id(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploys_replace_one_task_at_a_time() {
        assert_eq!(min_healthy_percent(1), 0);
        assert_eq!(min_healthy_percent(2), 50);
        assert_eq!(min_healthy_percent(3), 66);
        assert_eq!(min_healthy_percent(10), 90);
    }

    #[test]
    fn functions_wait_out_pgbouncers_login_retry() {
        assert_eq!(login_wait_ms(5), 7_000);
        assert_eq!(login_wait_ms(0), 2_000);
    }
}
