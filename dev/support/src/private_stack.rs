//! A stack of one's own for tests (and tools) that restart, kill or pause the servers:
//! PostgreSQL + pgvector behind PgBouncer, with TLS and durability as in the shared
//! stack, started by `scripts/stack.sh up` with its own cluster directory, env file and
//! free ports, so that the other tests running against the shared stack never see the
//! faults. Torn down (stopped and deleted) when dropped.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use kit_support::private_stack::{PrivateStack, Shutdown};
//! use storage::Function;
//!
//! let stack = PrivateStack::shared().await?; // this process's one private stack, your turn
//! let db = stack.create_database().await?; // migrated, empty
//! let config = stack.config(Function::Ingest, &db); // through PgBouncer, as kit_ingest
//! stack.restart_postgres(Shutdown::Immediate)?; // a crash, recovered at start
//! stack.kill_pgbouncer()?;
//! stack.start_pgbouncer()?;
//! stack.pgbouncer_admin("PAUSE").await?;
//! # Ok(()) }
//! ```
//!
//! - [`PrivateStack::shared`] hands out the process's one private stack, one caller at a
//!   time (a turn ends when the [`Turn`] is dropped), so only one extra cluster runs. It
//!   starts the stack on first use, heals it at the start of every turn (servers
//!   running, PgBouncer resumed and its configuration reloaded, undoing `SET`s), and
//!   tears it down when the last caller is done.
//! - Starting needs a built `kit` binary (the stack's migrations and login roles), as
//!   `cargo test` holds the target directory's lock while tests run: `KIT_BIN`, or
//!   `kit` beside the running executable (`cargo test --workspace` builds it; after a
//!   narrower build, `cargo build --locked -p kit`).
//! - The cluster lives beside the shared stack's (`scripts/stack.sh dir`), suffixed
//!   `-private-<pid>`; one left by a process that was killed is deleted by the next.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

use anyhow::{bail, Context};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};
use storage::{Config, Function};

/// How PostgreSQL is shut down before it starts again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// `pg_ctl -m fast`: sessions are terminated (`57P01`), then a clean shutdown.
    Fast,
    /// `pg_ctl -m immediate`: a crash; recovery from the WAL at the next start.
    Immediate,
}

/// A private PostgreSQL + PgBouncer (see the module documentation).
pub struct PrivateStack {
    root: PathBuf,
    dir: PathBuf,
    env_file: PathBuf,
    kit_bin: PathBuf,
    pg_port: u16,
    pgbouncer_port: u16,
    /// The variables `stack.sh up` wrote (`DATABASE_ADMIN_URL`, `SEARCH_DATABASE_URL`, …).
    env: HashMap<String, String>,
}

/// A turn at the process's shared private stack ([`PrivateStack::shared`]).
pub struct Turn {
    stack: Arc<PrivateStack>,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for Turn {
    type Target = PrivateStack;

    fn deref(&self) -> &PrivateStack {
        &self.stack
    }
}

static SHARED: Mutex<Weak<PrivateStack>> = Mutex::new(Weak::new());
static TURNS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl PrivateStack {
    /// This process's one private stack, for the caller alone until the [`Turn`] drops.
    pub async fn shared() -> anyhow::Result<Turn> {
        // Held while waiting for the turn, so the stack outlives the gap between turns.
        let stack = {
            let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            match shared.upgrade() {
                Some(stack) => stack,
                None => {
                    let stack = Arc::new(PrivateStack::start()?);
                    *shared = Arc::downgrade(&stack);
                    stack
                }
            }
        };
        let turn = TURNS.lock().await;
        stack.heal().await?;
        Ok(Turn { stack, _turn: turn })
    }

    /// Starts a new private stack (blocking, about ten seconds for a fresh cluster).
    pub fn start() -> anyhow::Result<PrivateStack> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .context("dev/support lies two levels below the checkout")?
            .to_path_buf();
        let shared_dir = stack_output(&root, &["dir"], &[])?;
        let prefix = format!("{}-private-", shared_dir.trim());
        let kit_bin = kit_binary(&root)?;
        delete_orphans(&root, &prefix, &kit_bin);
        let dir = PathBuf::from(format!("{prefix}{}", std::process::id()));
        let mut stack = PrivateStack {
            env_file: dir.join("env"),
            root,
            dir,
            kit_bin,
            pg_port: crate::free_port(),
            pgbouncer_port: crate::free_port(),
            env: HashMap::new(),
        };
        stack.stack(&["wipe"])?; // a leftover of this pid's namesake
        stack.stack(&["up"])?;
        stack.env = read_env_file(&stack.env_file)?;
        Ok(stack)
    }

    /// The cluster's directory (data, logs, the env file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `function`'s URL through PgBouncer, as its own login role, to database `database`.
    pub fn url(&self, function: Function, database: &str) -> String {
        with_database(&self.env[function.url_variable()], database)
    }

    /// Straight to PostgreSQL as the admin role (a superuser), to database `database`.
    pub fn admin_url(&self, database: &str) -> String {
        with_database(&self.env["DATABASE_ADMIN_URL"], database)
    }

    /// The functions' storage configuration for `function` on `database`, with the
    /// production defaults (`DB_*` timeouts) unless the caller changes them.
    pub fn config(&self, function: Function, database: &str) -> Config {
        let url = self.url(function, database);
        Config::from_lookup(crate::lookup::from_pairs(&[("DATABASE_URL", &url)]))
            .expect("the stack's URLs are valid")
    }

    /// A new, migrated database (`f_<uuid>`); it goes with the cluster.
    pub async fn create_database(&self) -> anyhow::Result<String> {
        let name = format!("f_{}", uuid::Uuid::new_v4().simple());
        let mut admin = self.admin("postgres").await?;
        admin
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await?;
        admin.close().await.ok();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(self.admin_options(&name)?)
            .await?;
        storage::migrate::up(&pool).await?;
        pool.close().await;
        Ok(name)
    }

    /// A direct connection as the admin role.
    pub async fn admin(&self, database: &str) -> anyhow::Result<PgConnection> {
        Ok(self.admin_options(database)?.connect().await?)
    }

    /// PgBouncer's admin console (`SHOW POOLS`, `SHOW STATS`, …; it answers in text).
    pub async fn pgbouncer_console(&self) -> anyhow::Result<PgConnection> {
        self.admin_options("pgbouncer")?
            .port(self.pgbouncer_port)
            .connect()
            .await
            .context("PgBouncer's admin console")
    }

    /// Runs one command on PgBouncer's admin console (`PAUSE`, `RESUME`, `RELOAD`,
    /// `SET server_idle_timeout = 2`, `KILL kit`, …).
    pub async fn pgbouncer_admin(&self, command: &str) -> anyhow::Result<()> {
        let mut console = self.pgbouncer_console().await?;
        sqlx::raw_sql(command)
            .execute(&mut console)
            .await
            .with_context(|| format!("PgBouncer's console refused {command:?}"))?;
        console.close().await.ok();
        Ok(())
    }

    /// Ends every backend serving `role` (`pg_terminate_backend`); returns how many.
    pub async fn terminate_backends(&self, role: &str) -> anyhow::Result<i64> {
        let mut admin = self.admin("postgres").await?;
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1",
        )
        .bind(role)
        .fetch_one(&mut admin)
        .await?;
        admin.close().await.ok();
        Ok(ended)
    }

    /// `pg_ctl restart -m fast|immediate` (blocking until PostgreSQL accepts again).
    pub fn restart_postgres(&self, shutdown: Shutdown) -> anyhow::Result<()> {
        let mode = match shutdown {
            Shutdown::Fast => "fast",
            Shutdown::Immediate => "immediate",
        };
        self.stack(&["pg-restart", mode])
    }

    /// Kills PgBouncer (`SIGKILL`): every client connection drops at once.
    pub fn kill_pgbouncer(&self) -> anyhow::Result<()> {
        self.stack(&["pgbouncer-kill"])
    }

    /// Starts whatever is not running (`stack.sh up`, blocking).
    pub fn start_pgbouncer(&self) -> anyhow::Result<()> {
        self.stack(&["up"])
    }

    /// Both servers running, PgBouncer resumed and its configuration as the files say.
    async fn heal(&self) -> anyhow::Result<()> {
        if self.stack(&["status"]).is_err() {
            self.stack(&["up"])?;
        }
        // Not paused: "RESUME" fails then, which is fine.
        self.pgbouncer_admin("RESUME").await.ok();
        self.pgbouncer_admin("RELOAD").await
    }

    fn admin_options(&self, database: &str) -> anyhow::Result<PgConnectOptions> {
        let options: PgConnectOptions = self.env["DATABASE_ADMIN_URL"]
            .parse()
            .context("the private stack's DATABASE_ADMIN_URL")?;
        Ok(options.database(database).disable_statement_logging())
    }

    /// Runs `scripts/stack.sh` on this stack; its output goes to the caller's.
    fn stack(&self, args: &[&str]) -> anyhow::Result<()> {
        let ports = [
            ("KIT_PG_PORT", self.pg_port.to_string()),
            ("KIT_PGBOUNCER_PORT", self.pgbouncer_port.to_string()),
        ];
        let mut command = stack_command(&self.root, args, &self.dir, &self.env_file);
        command.env("KIT_BIN", &self.kit_bin).envs(ports);
        let out = command.output().context("running scripts/stack.sh")?;
        if !out.status.success() {
            bail!(
                "scripts/stack.sh {} failed on the private stack ({}):\n{}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PrivateStack {
    fn drop(&mut self) {
        if let Err(error) = self.stack(&["wipe"]) {
            eprintln!(
                "the private stack in {} was not torn down: {error:#}",
                self.dir.display()
            );
        }
    }
}

/// `scripts/stack.sh` with a private stack's cluster directory and env file.
fn stack_command(root: &Path, args: &[&str], dir: &Path, env_file: &Path) -> Command {
    let mut command = Command::new(root.join("scripts/stack.sh"));
    command
        .args(args)
        .current_dir(root)
        .env("KIT_CLUSTER_DIR", dir)
        .env("KIT_ENV_FILE", env_file);
    command
}

/// The output of `scripts/stack.sh ARGS` for the shared stack (`dir`).
fn stack_output(root: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<String> {
    let out = Command::new(root.join("scripts/stack.sh"))
        .args(args)
        .current_dir(root)
        .env_remove("KIT_ENV_FILE")
        .envs(env.iter().copied())
        .output()
        .context("running scripts/stack.sh")?;
    if !out.status.success() {
        bail!(
            "scripts/stack.sh {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Deletes the private clusters of processes that no longer run (killed before their
/// stack was torn down).
fn delete_orphans(root: &Path, prefix: &str, kit_bin: &Path) {
    let prefix_path = Path::new(prefix);
    let (Some(parent), Some(stem)) = (prefix_path.parent(), prefix_path.file_name()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&*stem.to_string_lossy()) else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists() {
            continue;
        }
        let dir = entry.path();
        let _ = stack_command(root, &["wipe"], &dir, &dir.join("env"))
            .env("KIT_BIN", kit_bin)
            .output();
    }
}

/// `KIT_BIN`, or the `kit` built beside the running executable (in `target/debug`, its
/// `deps/` for a test binary), no older than the migrations it applies.
fn kit_binary(root: &Path) -> anyhow::Result<PathBuf> {
    let bin = match std::env::var_os("KIT_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => {
            let exe = std::env::current_exe()?;
            exe.ancestors()
                .skip(1)
                .take(2)
                .map(|dir| dir.join("kit"))
                .find(|candidate| candidate.is_file())
                .with_context(|| {
                    format!(
                        "no kit binary beside {}: build it first (`cargo build --locked -p kit`; \
                         `cargo test` holds the target directory's lock while tests run), or set KIT_BIN",
                        exe.display()
                    )
                })?
        }
    };
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .with_context(|| format!("reading {}", bin.display()))?;
    for migration in std::fs::read_dir(root.join("migrations"))?.flatten() {
        if migration.metadata()?.modified()? > built {
            bail!(
                "{} is older than {}: rebuild it (`cargo build --locked -p kit`)",
                bin.display(),
                migration.path().display()
            );
        }
    }
    Ok(bin)
}

/// The `export NAME='value'` lines of a stack env file.
fn read_env_file(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the private stack's {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.trim_matches('\'').to_owned()))
        .collect())
}

/// `url` with its database replaced by `database`, its query (TLS settings) kept.
fn with_database(url: &str, database: &str) -> String {
    crate::database_url::with_database(url, database).expect("a stack URL has a database path")
}
