//! The typed model of `kit.toml`: every deployment size in one place.
//!
//! Parsing is strict (`deny_unknown_fields`): a misspelt key is an error that
//! names the key, not a silently ignored setting. Whether the numbers fit
//! together is [`super::budget`]'s job.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod tls;

pub use tls::{SslMode, Tls, RDS_CA_BUNDLE_PATH};

/// The file name of the model, at the repository root.
pub const CONFIG_FILE: &str = "kit.toml";

/// Why `kit.toml` could not be turned into a [`KitConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}; run kit from the repository root or pass --config")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid kit.toml: {message}")]
    Parse { path: PathBuf, message: String },
}

/// The whole of `kit.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KitConfig {
    pub aws: Aws,
    pub database: Database,
    pub pgbouncer: PgBouncer,
    pub functions: Functions,
    /// The SQS queue that feeds `ingest`.
    pub queue: Queue,
    /// The HTTP API in front of `search`.
    pub api: Api,
    /// The EventBridge schedule that triggers `purge`.
    pub schedule: Schedule,
    /// TLS on both hops (functions → PgBouncer → PostgreSQL); verify-full when omitted.
    #[serde(default)]
    pub tls: Tls,
    /// Secrets Manager's alternating-users rotation of the three roles' secrets.
    #[serde(default)]
    pub rotation: Rotation,
}

/// Account-level facts the template has to respect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aws {
    /// The account's Lambda concurrency quota in the target region (1000 by default).
    pub account_concurrency_limit: u32,
    /// How long CloudWatch keeps the logs of the functions, the API and PgBouncer.
    pub log_retention_days: u32,
}

/// The PostgreSQL server behind the PgBouncer tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// Database name; PgBouncer exposes it under the same name.
    pub name: String,
    /// PostgreSQL's `max_connections`.
    pub max_connections: u32,
    /// PostgreSQL's `superuser_reserved_connections`.
    pub superuser_reserved_connections: u32,
    /// PostgreSQL 16+'s `reserved_connections` (0 before 16).
    #[serde(default)]
    pub reserved_connections: u32,
    /// Connections kept free for people and tools that bypass PgBouncer:
    /// migrations, admin sessions, monitoring, replication.
    pub headroom: u32,
    /// Row-level security on `embeddings` (default on): a search sees only the rows of
    /// the namespace its own statement declares. Applied by `kit roles apply`.
    #[serde(default = "yes")]
    pub row_level_security: bool,
}

fn yes() -> bool {
    true
}

impl Database {
    /// Connections PostgreSQL will not hand to the PgBouncer tier.
    pub fn unavailable_to_pgbouncer(&self) -> u32 {
        self.superuser_reserved_connections + self.reserved_connections + self.headroom
    }

    /// Server connections the PgBouncer tier may open in all (saturating at 0).
    pub fn pgbouncer_budget(&self) -> u32 {
        self.max_connections
            .saturating_sub(self.unavailable_to_pgbouncer())
    }
}

/// The PgBouncer tier: `instances` identical processes behind one NLB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgBouncer {
    /// ECS tasks (each one PgBouncer process) behind the load balancer.
    pub instances: u32,
    /// Fargate task size: vCPU units (256 = 0.25 vCPU).
    pub task_cpu: u32,
    /// Fargate task size: memory in MiB.
    pub task_memory_mb: u32,
    pub port: u16,
    pub pool_mode: String,
    pub max_client_conn: u32,
    pub default_pool_size: u32,
    pub min_pool_size: u32,
    pub reserve_pool_size: u32,
    pub reserve_pool_timeout_s: u32,
    pub max_prepared_statements: u32,
    /// PgBouncer's packet buffer in bytes: a search's `Bind` message (4 bytes per vector
    /// dimension, plus about 250) that fits is relayed to PostgreSQL in two writes
    /// instead of three.
    pub pkt_buf: u32,
    pub query_wait_timeout_s: u32,
    /// 0 disables it: statement timeouts are set per function instead.
    pub query_timeout_s: u32,
    pub idle_transaction_timeout_s: u32,
    pub client_idle_timeout_s: u32,
    pub client_login_timeout_s: u32,
    pub server_idle_timeout_s: u32,
    pub server_lifetime_s: u32,
    pub server_connect_timeout_s: u32,
    pub server_login_retry_s: u32,
}

/// The three functions, each with its own database role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Functions {
    pub ingest: Lambda,
    pub search: Lambda,
    pub purge: Lambda,
}

/// Which of the three functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FunctionName {
    Ingest,
    Search,
    Purge,
}

impl FunctionName {
    pub const ALL: [FunctionName; 3] = [
        FunctionName::Ingest,
        FunctionName::Search,
        FunctionName::Purge,
    ];

    /// The crate, the binary and the `kit.toml` key: `ingest`, `search`, `purge`.
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionName::Ingest => "ingest",
            FunctionName::Search => "search",
            FunctionName::Purge => "purge",
        }
    }

    /// The CloudFormation logical id prefix: `Ingest`, `Search`, `Purge`.
    pub fn logical_id(self) -> &'static str {
        match self {
            FunctionName::Ingest => "Ingest",
            FunctionName::Search => "Search",
            FunctionName::Purge => "Purge",
        }
    }
}

impl std::fmt::Display for FunctionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn one() -> u32 {
    1
}

fn default_log_level() -> String {
    "info".to_owned()
}

/// One Lambda function's size and database settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lambda {
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub reserved_concurrency: u32,
    /// Pre-initialised environments; omit (or 0) for none.
    #[serde(default)]
    pub provisioned_concurrency: u32,
    /// Database connections one execution environment may open (`DB_MAX_CONNECTIONS`).
    #[serde(default = "one")]
    pub connections_per_environment: u32,
    /// The PostgreSQL role this function logs in as; one PgBouncer pool per role.
    pub db_role: String,
    /// `DB_ACQUIRE_TIMEOUT_MS`: how long a handler waits for its connection.
    pub acquire_timeout_ms: u32,
    /// `DB_STATEMENT_TIMEOUT_MS`: the server-side limit on one statement.
    pub statement_timeout_ms: u32,
    /// `RUST_LOG`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
}

/// The SQS queue feeding `ingest`, its dead-letter queue and the event source mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    #[serde(default)]
    pub fifo: bool,
    pub batch_size: u32,
    pub batching_window_s: u32,
    /// The event source mapping's `ScalingConfig.MaximumConcurrency`.
    pub maximum_concurrency: u32,
    /// Deliveries before a message moves to the DLQ (the redrive policy's `maxReceiveCount`).
    pub max_receive_count: u32,
    pub visibility_timeout_s: u32,
    pub message_retention_s: u32,
    pub dlq_message_retention_s: u32,
    /// The IAM roles and users allowed to `sqs:SendMessage` to the queue (ARNs; the
    /// rendered queue policy denies everyone else). Whoever can send may write any
    /// namespace, unless `namespaces` narrows it. `${AWS::AccountId}` and
    /// `${AWS::Partition}` are substituted at deploy time.
    #[serde(default)]
    pub producers: Vec<String>,
    /// `ALLOWED_NAMESPACES` of the ingest function: the namespaces this queue's records
    /// may write (empty: any namespace).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// `kit check` warns when a database outage shorter than this dead-letters valid
    /// messages (`deploy::worst_case::outage_absorbed_ms`).
    #[serde(default = "default_outage_floor_minutes")]
    pub outage_floor_minutes: u32,
}

fn default_outage_floor_minutes() -> u32 {
    super::worst_case::DEFAULT_OUTAGE_FLOOR_MINUTES
}

/// The HTTP API in front of `search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// Stage-wide steady request rate (requests per second).
    pub throttling_rate_limit: u32,
    pub throttling_burst_limit: u32,
    /// The search p99 duration alarm fires above this many milliseconds.
    pub p99_alarm_ms: u32,
    /// How callers authenticate (`AUTH_MODE` of the search function).
    #[serde(default)]
    pub auth: AuthMode,
    /// `NAMESPACE_CLAIM`: the JWT claim or authorizer context key naming the caller's
    /// namespace.
    #[serde(default = "default_namespace_claim")]
    pub namespace_claim: String,
    /// `auth = "jwt"`: the issuer URL the JWT authorizer trusts.
    #[serde(default)]
    pub jwt_issuer: Option<String>,
    /// `auth = "jwt"`: the accepted audiences (`aud`, or `client_id` of access tokens).
    #[serde(default)]
    pub jwt_audience: Vec<String>,
    /// `auth = "jwt"`: scopes a token must hold (any one of them) on every route.
    #[serde(default)]
    pub authorization_scopes: Vec<String>,
    /// `auth = "lambda"`: the Lambda authorizer function's ARN.
    #[serde(default)]
    pub lambda_authorizer_arn: Option<String>,
    /// `auth = "none"` is refused unless this is written as `true`.
    #[serde(default)]
    pub allow_unauthenticated: bool,
}

/// How the search API authenticates callers, and where the function takes a request's
/// namespace from (docs/security.md, "Tenant isolation").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// An HTTP API JWT authorizer; the namespace is a string claim of the token.
    #[default]
    Jwt,
    /// A Lambda authorizer; the namespace is a string key of its context.
    Lambda,
    /// `AWS_IAM` routes: SigV4-signed, trusted callers name the namespace in the request.
    Iam,
    /// No authentication (local development only): the request names the namespace.
    None,
}

impl AuthMode {
    /// The `AUTH_MODE` value, as in kit.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Jwt => "jwt",
            AuthMode::Lambda => "lambda",
            AuthMode::Iam => "iam",
            AuthMode::None => "none",
        }
    }
}

fn default_namespace_claim() -> String {
    "namespace".to_owned()
}

/// The EventBridge schedule and retention of `purge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// An EventBridge `cron(...)` or `rate(...)` expression (UTC).
    pub expression: String,
    /// `RETENTION_DAYS`: the default retention when a namespace has no override.
    pub retention_days: u32,
}

/// Rotation of the functions' secrets with Secrets Manager's hosted `PostgreSQLMultiUser`
/// function (alternating users: `R` and `R_clone`; docs/security-rotation.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// Render a `RotationSchedule` per secret (and the `DatabaseMasterSecretArn` parameter).
    pub enabled: bool,
    /// The schedule's `ScheduleExpression`: `rate(N days)` or `cron(...)` (UTC).
    #[serde(default = "default_rotation_schedule")]
    pub schedule: String,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            enabled: false,
            schedule: default_rotation_schedule(),
        }
    }
}

fn default_rotation_schedule() -> String {
    "rate(30 days)".to_owned()
}

impl KitConfig {
    /// Reads and parses `kit.toml` (no invariant checks: see [`super::budget::check`]).
    pub fn load(path: &Path) -> Result<KitConfig, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Read {
            path: path.to_owned(),
            source,
        })?;
        KitConfig::parse(&text, path)
    }

    /// Parses the text of a `kit.toml`; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<KitConfig, ModelError> {
        toml::from_str(text).map_err(|err| ModelError::Parse {
            path: path.to_owned(),
            message: err.to_string().trim_end().to_owned(),
        })
    }

    pub fn function(&self, name: FunctionName) -> &Lambda {
        match name {
            FunctionName::Ingest => &self.functions.ingest,
            FunctionName::Search => &self.functions.search,
            FunctionName::Purge => &self.functions.purge,
        }
    }

    pub fn function_mut(&mut self, name: FunctionName) -> &mut Lambda {
        match name {
            FunctionName::Ingest => &mut self.functions.ingest,
            FunctionName::Search => &mut self.functions.search,
            FunctionName::Purge => &mut self.functions.purge,
        }
    }

    /// The three functions in a fixed order.
    pub fn functions(&self) -> [(FunctionName, &Lambda); 3] {
        FunctionName::ALL.map(|name| (name, self.function(name)))
    }

    /// PgBouncer pools per instance: one per (database, role), and there is one database.
    pub fn pools(&self) -> u32 {
        let mut roles: Vec<&str> = self
            .functions()
            .iter()
            .map(|(_, f)| f.db_role.as_str())
            .collect();
        roles.sort_unstable();
        roles.dedup();
        roles.len() as u32
    }

    /// Client connections the functions can hold at their reserved concurrency.
    pub fn client_connection_demand(&self) -> u64 {
        self.functions()
            .iter()
            .map(|(_, f)| {
                u64::from(f.reserved_concurrency) * u64::from(f.connections_per_environment)
            })
            .sum()
    }

    /// Client connections the PgBouncer tier accepts.
    pub fn client_connection_capacity(&self) -> u64 {
        u64::from(self.pgbouncer.instances) * u64::from(self.pgbouncer.max_client_conn)
    }

    /// Server connections the PgBouncer tier can open to PostgreSQL.
    pub fn server_connection_demand(&self) -> u64 {
        u64::from(self.pgbouncer.instances)
            * u64::from(self.pools())
            * (u64::from(self.pgbouncer.default_pool_size)
                + u64::from(self.pgbouncer.reserve_pool_size))
    }

    /// The smallest visibility timeout AWS recommends for the ingest queue.
    pub fn required_visibility_timeout_s(&self) -> u64 {
        6 * u64::from(self.functions.ingest.timeout_s) + u64::from(self.queue.batching_window_s)
    }
}
