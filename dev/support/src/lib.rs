//! Dev-only helpers shared by the integration tests (`tests/it`) and the tooling: one copy
//! of each. [`TestStack`] is a test's own database plus the three functions on it, each
//! logged in as its own role and invoked with real Lambda event JSON: the way tests talk
//! to the functions. Beside it: [`TestDb`] (a fresh database per test, cloned from a
//! migrated template, reached through the real PgBouncer), the AWS sample events
//! (`events`), corpora, the fault proxy, moto, test login roles and database URLs.
//!
//! Tests read `DATABASE_URL` (through PgBouncer, the ingest role), the functions' own
//! `INGEST_DATABASE_URL`, `SEARCH_DATABASE_URL` and `PURGE_DATABASE_URL`, and
//! `DATABASE_ADMIN_URL` (direct) from the environment, as `make test` sets them from
//! `.kit/env`. A test connects as the role of the function it tests ([`TestDb::config_as`]).

pub mod corpus;
pub mod database_url;
pub mod events;
pub mod lookup;
pub mod moto;
pub mod private_stack;
pub mod proxy;
pub mod roles;
pub mod scratch;
pub mod search_corpus;
pub mod stack;
pub mod stats;
pub mod text;

pub use database_url::sslrootcert;
pub use stack::{IngestFn, PurgeFn, Reply, SearchFn, TestStack};

use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool};
use storage::{Config, Database, Function, MIGRATOR};

use database_url::with_database;

/// [`TestDb::row_snapshot`]: `(namespace, id) → (version, xmin, updated_at)`.
pub type RowSnapshot = std::collections::BTreeMap<(String, uuid::Uuid), (i64, String, String)>;

/// A database of its own for one test, reached through PgBouncer like production.
pub struct TestDb {
    pub name: String,
    /// Through PgBouncer, as `DATABASE_URL`'s role (the ingest role locally).
    pub app_url: String,
    /// Straight to PostgreSQL, as the admin role.
    pub admin_url: String,
    pub db: Database,
    config: Config,
    admin: PgConnectOptions,
}

impl TestDb {
    /// Creates `t_<uuid>` from the migrated template and connects to it.
    pub async fn new() -> anyhow::Result<Self> {
        Self::with_config(|c| c).await
    }

    /// Like [`TestDb::new`], with the storage configuration adjusted by `adjust`.
    pub async fn with_config(adjust: impl FnOnce(Config) -> Config) -> anyhow::Result<Self> {
        telemetry::init();
        // The handlers' EMF lines would interleave with the tests' own output.
        telemetry::set_metrics_sink(telemetry::MetricsSink::Discard);
        let (app, admin) = stack_urls()?;
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        scratch::create_database(&admin, &name).await?;

        let app_url = with_database(&app, &name)?;
        let admin_url = with_database(&std::env::var("DATABASE_ADMIN_URL")?, &name)?;
        let mut config = Config::from_lookup(|k| (k == "DATABASE_URL").then(|| app_url.clone()))?;
        // Seeding thousands of 1536-d rows into an HNSW index on a busy 2-core CI machine
        // can outlast the 5 s production default; no test depends on that default.
        config.statement_timeout = Duration::from_secs(60);
        let config = adjust(config);
        Ok(Self {
            db: Database::connect_lazy(&config)?,
            config,
            name: name.clone(),
            app_url,
            admin_url,
            admin: admin.database(&name),
        })
    }

    /// A direct admin pool on this test's database (for assertions, EXPLAIN, ANALYZE).
    pub async fn admin_pool(&self) -> anyhow::Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(2)
            .connect_with(self.admin.clone())
            .await?)
    }

    /// `ANALYZE embeddings` over a direct connection: after a bulk load the planner
    /// needs statistics before it trusts the HNSW index (docs/search.md).
    pub async fn analyze(&self) -> anyhow::Result<()> {
        let admin = self.admin_pool().await?;
        sqlx::query("ANALYZE embeddings").execute(&admin).await?;
        admin.close().await;
        Ok(())
    }

    /// The rows in `embeddings`, counted as the admin straight from PostgreSQL.
    pub async fn count_rows(&self) -> anyhow::Result<i64> {
        let admin = self.admin_pool().await?;
        let n = sqlx::query_scalar("SELECT count(*) FROM embeddings")
            .fetch_one(&admin)
            .await?;
        admin.close().await;
        Ok(n)
    }

    /// Every row as `(namespace, id) → (version, xmin, updated_at)`, read as the admin: a
    /// write that rewrote a row, even with the same values, changed its `xmin`.
    pub async fn row_snapshot(&self) -> anyhow::Result<RowSnapshot> {
        use sqlx::Row;
        let admin = self.admin_pool().await?;
        let rows = sqlx::query(
            "SELECT namespace, id, version, xmin::text AS xmin, updated_at::text AS updated_at
             FROM embeddings",
        )
        .fetch_all(&admin)
        .await?;
        admin.close().await;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    (r.get("namespace"), r.get("id")),
                    (r.get("version"), r.get("xmin"), r.get("updated_at")),
                )
            })
            .collect())
    }

    /// Storage configuration pointing at this test's database through PgBouncer (the
    /// one `db` uses).
    pub fn config(&self) -> Config {
        self.config.clone()
    }

    /// This test's database through PgBouncer as `function`'s own login role
    /// (`SEARCH_DATABASE_URL`, ...; `DATABASE_URL` when it is not set), with this test's
    /// other settings: the one way a test connects as the function it tests.
    pub fn config_as(&self, function: Function) -> Config {
        let function_url = Config::for_function(function, |name| std::env::var(name).ok())
            .map(|c| c.database_url)
            .expect("DATABASE_URL is set (TestDb::new checked)");
        let url = with_database(&function_url, &self.name).expect("a database URL with a path");
        self.config.with_url(url)
    }

    /// A [`Database`] on this test's database as `function`'s login role.
    pub fn db_as(&self, function: Function) -> Database {
        Database::connect_lazy(&self.config_as(function)).expect("a valid URL")
    }

    /// A [`Database`] on this test's database as the admin role, straight to PostgreSQL
    /// (table owner: retention policies, setup the functions' roles may not do).
    pub fn admin_db(&self) -> Database {
        Database::connect_lazy(&self.config.with_url(self.admin_url.clone())).expect("a valid URL")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let (_, admin) = match stack_urls() {
            Ok(urls) => urls,
            Err(_) => return,
        };
        // Drop runs outside any async context guarantee: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async move {
                    let _ = scratch::drop_database(&admin, &name).await;
                });
            }
        })
        .join();
    }
}

/// `DATABASE_URL` and `DATABASE_ADMIN_URL`, or an error that says how to get them.
pub fn stack_urls() -> anyhow::Result<(String, PgConnectOptions)> {
    let read = |name: &str| {
        std::env::var(name).with_context(|| {
            format!("{name} is not set: run the tests with `make test` (it starts the local stack), or `make up && . .kit/env` first")
        })
    };
    let app = read("DATABASE_URL")?;
    let admin: PgConnectOptions = read("DATABASE_ADMIN_URL")?
        .parse()
        .context("DATABASE_ADMIN_URL does not parse")?;
    Ok((app, admin.disable_statement_logging()))
}

/// The template holding the current migrations, named by their checksums so a changed
/// migration gets a fresh template. Created once, under an advisory lock, by whichever
/// test process gets there first.
async fn ensure_template(admin: &PgConnectOptions) -> anyhow::Result<String> {
    let mut digest: u64 = 0xcbf29ce484222325;
    for m in MIGRATOR.iter() {
        for byte in m.version.to_le_bytes().iter().chain(m.checksum.iter()) {
            digest = (digest ^ u64::from(*byte)).wrapping_mul(0x100000001b3);
        }
    }
    let template = format!("kit_tpl_{digest:016x}");
    let mut conn = admin
        .connect()
        .await
        .context("connecting to DATABASE_ADMIN_URL")?;
    conn.execute("SELECT pg_advisory_lock(hashtext('kit-test-template'))")
        .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let building = format!("{template}_building");
        conn.execute(format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)").as_str())
            .await?;
        conn.execute(format!("CREATE DATABASE \"{building}\"").as_str())
            .await?;
        {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(admin.clone().database(&building))
                .await?;
            storage::migrate::up(&pool)
                .await
                .context("migrating the test template")?;
            pool.close().await;
        }
        conn.execute(format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\"").as_str())
            .await?;
    }
    conn.execute("SELECT pg_advisory_unlock(hashtext('kit-test-template'))")
        .await?;
    conn.close().await.ok();
    Ok(template)
}

async fn create_from_template(
    conn: &mut PgConnection,
    name: &str,
    template: &str,
) -> anyhow::Result<()> {
    let statement = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"");
    for attempt in 0..50 {
        match conn.execute(statement.as_str()).await {
            Ok(_) => return Ok(()),
            // 55006: the template is briefly in use by a concurrent CREATE DATABASE.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55006") => {
                tokio::time::sleep(Duration::from_millis(50 + 20 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!("the test template {template} stayed busy; is a session connected to it?")
}

/// PgBouncer's admin console, reached at PgBouncer's address as the admin role
/// (`admin_users`): `SHOW STATS`, `SHOW CONFIG`, `RELOAD`, … (it answers in text).
pub async fn pgbouncer_console() -> anyhow::Result<PgConnection> {
    let (app, admin) = stack_urls()?;
    let bouncer: PgConnectOptions = app.parse().context("DATABASE_URL does not parse")?;
    admin
        .host(bouncer.get_host())
        .port(bouncer.get_port())
        .database("pgbouncer")
        .connect()
        .await
        .context("PgBouncer's admin console (admin_users)")
}

/// One of the running PgBouncer's settings, from `SHOW CONFIG`.
pub async fn pgbouncer_setting(key: &str) -> anyhow::Result<String> {
    use sqlx::Row;
    let mut console = pgbouncer_console().await?;
    let rows = sqlx::raw_sql("SHOW CONFIG").fetch_all(&mut console).await?;
    console.close().await.ok();
    rows.iter()
        .find(|row| row.try_get::<String, _>("key").ok().as_deref() == Some(key))
        .and_then(|row| row.try_get::<String, _>("value").ok())
        .with_context(|| format!("PgBouncer's SHOW CONFIG has no {key}"))
}

/// The local stack's CA: what every stack URL verifies against.
pub fn stack_ca() -> std::path::PathBuf {
    let url = std::env::var("DATABASE_URL").unwrap_or_default();
    sslrootcert(&url).expect("DATABASE_URL names its CA with sslrootcert (scripts/stack.sh)")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for a server the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("bind a free port on 127.0.0.1")
}
