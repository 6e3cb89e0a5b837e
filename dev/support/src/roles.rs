//! Login roles of a test's own, for tests that change a role's password (rotation)
//! without touching the stack's roles.
//!
//! PostgreSQL lets any role log in over verified TLS (`scripts/stack.sh` writes
//! `pg_hba.conf`), but PgBouncer knows only the roles in its `auth_file`. A [`TestRole`]
//! is a member of the NOLOGIN group [`TEST_LOGINS`]; each password change is copied into
//! PgBouncer's `auth_file` from `pg_authid`, the way the stack does it, followed by
//! `RELOAD` on the admin console.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};
use tokio::sync::Mutex;

use crate::{pgbouncer_console, pgbouncer_setting, stack_urls, TestDb};

/// The group every test login role belongs to (how their `auth_file` lines are found).
pub const TEST_LOGINS: &str = "kit_test_logins";

/// Rewrites of PgBouncer's auth file, one at a time within a test binary.
static AUTH_FILE: Mutex<()> = Mutex::const_new(());

/// A login role for one test, with the grants search and ingest need (`kit_search_group`,
/// `kit_ingest_group`), reached through PgBouncer like the stack's own roles.
pub struct TestRole {
    pub name: String,
    pub password: String,
}

impl TestRole {
    /// Creates `r_<uuid>` with `password`, lets it log in through PgBouncer, and checks
    /// that it can, on `t`'s database.
    pub async fn create(t: &TestDb, password: &str) -> anyhow::Result<Self> {
        let name = format!("r_{}", uuid::Uuid::new_v4().simple());
        let mut admin = admin_connection().await?;
        admin
            .execute(
                format!(
                    "DO $$ BEGIN
                       IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{TEST_LOGINS}') THEN
                         CREATE ROLE {TEST_LOGINS} NOLOGIN;
                       END IF;
                     EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                     END $$"
                )
                .as_str(),
            )
            .await?;
        admin
            .execute(
                format!(
                    "CREATE ROLE {name} LOGIN PASSWORD '{}' IN ROLE kit_search_group, kit_ingest_group, {TEST_LOGINS}",
                    quote(password)
                )
                .as_str(),
            )
            .await?;
        admin.close().await.ok();
        let role = Self {
            name,
            password: password.to_owned(),
        };
        sync_pgbouncer_auth_file().await?;
        role.wait_until_it_logs_in(t).await?;
        Ok(role)
    }

    /// `ALTER ROLE … PASSWORD` in PostgreSQL only (PgBouncer still has the old one).
    pub async fn set_password(&mut self, password: &str) -> anyhow::Result<()> {
        let mut admin = admin_connection().await?;
        admin
            .execute(format!("ALTER ROLE {} PASSWORD '{}'", self.name, quote(password)).as_str())
            .await?;
        admin.close().await.ok();
        self.password = password.to_owned();
        Ok(())
    }

    /// This role's URL for `t`'s database through PgBouncer.
    pub fn url(&self, t: &TestDb) -> anyhow::Result<String> {
        let bouncer: PgConnectOptions = t.app_url.parse()?;
        Ok(format!(
            "postgres://{}:{}@{}:{}/{}",
            self.name,
            self.password,
            bouncer.get_host(),
            bouncer.get_port(),
            t.name
        ))
    }

    /// Ends every PostgreSQL session of this role: PgBouncer's server connections for it
    /// are gone, the next one needs a new login. Returns how many there were.
    pub async fn terminate_sessions(&self) -> anyhow::Result<i64> {
        let mut admin = admin_connection().await?;
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1",
        )
        .bind(&self.name)
        .fetch_one(&mut admin)
        .await?;
        admin.close().await.ok();
        Ok(ended)
    }

    async fn wait_until_it_logs_in(&self, t: &TestDb) -> anyhow::Result<()> {
        let options: PgConnectOptions = self.url(t)?.parse()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let attempt = async {
                let mut conn = options.clone().connect().await?;
                conn.execute("SELECT 1").await?;
                conn.close().await
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() > deadline => {
                    bail!(
                        "test role {} cannot log in through PgBouncer: {error}",
                        self.name
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Drops the role (after the test's database is gone) and its auth_file line.
    pub async fn drop_role(self) -> anyhow::Result<()> {
        let mut admin = admin_connection().await?;
        admin
            .execute(format!("DROP ROLE IF EXISTS {}", self.name).as_str())
            .await?;
        admin.close().await.ok();
        sync_pgbouncer_auth_file().await
    }
}

/// Copies the SCRAM secrets of the test roles from `pg_authid` into PgBouncer's
/// `auth_file` (keeping the stack's own lines), then `RELOAD`s PgBouncer: what
/// `scripts/stack.sh up` does for the stack's roles, here for the test's.
pub async fn sync_pgbouncer_auth_file() -> anyhow::Result<()> {
    let _one_at_a_time = AUTH_FILE.lock().await;
    let path = pgbouncer_setting("auth_file").await?;
    let mut admin = admin_connection().await?;
    let test_lines: Vec<String> = sqlx::query_scalar(
        "SELECT format('\"%s\" \"%s\"', a.rolname, a.rolpassword) FROM pg_authid a \
         JOIN pg_auth_members m ON m.member = a.oid JOIN pg_roles g ON g.oid = m.roleid \
         WHERE g.rolname = $1 AND a.rolcanlogin ORDER BY a.rolname",
    )
    .bind(TEST_LOGINS)
    .fetch_all(&mut admin)
    .await?;
    admin.close().await.ok();

    let current = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let mut lines: Vec<String> = current
        .lines()
        .filter(|line| !line.starts_with("\"r_"))
        .map(str::to_owned)
        .collect();
    lines.extend(test_lines);
    let text = lines.join("\n") + "\n";
    // Written next to it and renamed over it, owned like the original (PgBouncer runs as
    // the postgres OS user when the stack runs as root) and readable only by that owner.
    let metadata = std::fs::metadata(&path)?;
    let tmp = format!("{path}.test.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    std::os::unix::fs::chown(&tmp, Some(metadata.uid()), Some(metadata.gid()))?;
    std::fs::rename(&tmp, &path)?;

    let mut console = pgbouncer_console().await?;
    sqlx::raw_sql("RELOAD").execute(&mut console).await?;
    console.close().await.ok();
    Ok(())
}

async fn admin_connection() -> anyhow::Result<PgConnection> {
    let (_, admin) = stack_urls()?;
    admin
        .connect()
        .await
        .context("connecting to DATABASE_ADMIN_URL")
}

/// A string for a single-quoted SQL literal (test passwords are generated, but still).
fn quote(text: &str) -> String {
    text.replace('\'', "''")
}
