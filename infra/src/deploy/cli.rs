//! `kit check`, `kit render`, `kit plan`, `kit build`: the deployment commands. What a
//! command produces (the check's report, the plan, the build command of a dry run) goes
//! to stdout; what it did (files written, the build's progress) to stderr.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::Args;

use super::budget::{self, Violation};
use super::model::{FunctionName, KitConfig, CONFIG_FILE};
use super::plan::{self, LoadTarget};
use super::render;
use super::worst_case::{self, WorstCase};

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The kit.toml to read (default: the nearest kit.toml in this directory or above).
    /// Rendered files live relative to its directory.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Render even when kit.toml breaks an invariant (the files are then not deployable).
    #[arg(long)]
    pub allow_violations: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Target search requests per second.
    #[arg(long, value_name = "R")]
    pub search_rps: f64,
    /// Median search duration (function, end to end), in milliseconds.
    #[arg(long, value_name = "MS")]
    pub p50_ms: f64,
    /// 99th percentile search duration in milliseconds (default: 4 × p50).
    #[arg(long, value_name = "MS")]
    pub p99_ms: Option<f64>,
    /// Time a search holds its database transaction, in milliseconds (default: p50).
    #[arg(long, value_name = "MS")]
    pub search_db_ms: Option<f64>,
    /// Target ingest messages per second.
    #[arg(long, value_name = "N", default_value_t = 0.0)]
    pub ingest_msgs_per_s: f64,
    /// Time one full ingest batch takes, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500.0)]
    pub ingest_batch_ms: f64,
    /// Multiplier applied to every derived number.
    #[arg(long, value_name = "X", default_value_t = 1.5)]
    pub headroom: f64,
    /// Transactions per second one PgBouncer instance should carry (measure yours).
    #[arg(long, value_name = "TPS", default_value_t = 2500.0)]
    pub pgbouncer_tps: f64,
    /// The plan as one JSON object on stdout instead of a kit.toml fragment:
    /// `{"derived": [{"table", "key", "value", "why"}], "violations": [{"rule", "problem",
    /// "fix"}]}`, `value` as the TOML value it stands for.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the command instead of running it.
    #[arg(long)]
    pub dry_run: bool,
}

/// The function packages `kit build` cross-compiles.
pub const FUNCTION_PACKAGES: [&str; 3] = ["ingest", "search", "purge"];

/// Resolves `--config` or finds the nearest `kit.toml` upwards from the current directory.
fn locate(arg: &ConfigArg) -> anyhow::Result<(PathBuf, PathBuf)> {
    let path = match &arg.config {
        Some(path) => path.clone(),
        None => {
            let cwd = std::env::current_dir().context("reading the current directory")?;
            cwd.ancestors()
                .map(|dir| dir.join(CONFIG_FILE))
                .find(|candidate| candidate.is_file())
                .with_context(|| {
                    format!(
                        "no {CONFIG_FILE} in {} or any parent: run kit inside the repository or pass --config",
                        cwd.display()
                    )
                })?
        }
    };
    let root = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((path, root))
}

/// Reads `--config` (or the nearest `kit.toml`): the model, its path, its directory.
pub fn load(arg: &ConfigArg) -> anyhow::Result<(KitConfig, PathBuf, PathBuf)> {
    let (path, root) = locate(arg)?;
    let config = KitConfig::load(&path)?;
    Ok((config, path, root))
}

fn print_violations(
    out: &mut impl std::io::Write,
    violations: &[Violation],
) -> std::io::Result<()> {
    for v in violations {
        writeln!(out, "✗ [{}] {}", v.rule.code(), v.problem)?;
        writeln!(out, "    fix: {}", v.fix)?;
    }
    Ok(())
}

fn print_budget(out: &mut impl std::io::Write, config: &KitConfig) -> std::io::Result<()> {
    writeln!(
        out,
        "  client connections: {} of {} (Σ reserved_concurrency × connections_per_environment ≤ {} instances × max_client_conn {})",
        config.client_connection_demand(),
        config.client_connection_capacity(),
        config.pgbouncer.instances,
        config.pgbouncer.max_client_conn
    )?;
    writeln!(
        out,
        "  server connections: {} of {} ({} instances × {} pools × ({} + {}) ≤ max_connections {} − {} reserved)",
        config.server_connection_demand(),
        config.database.pgbouncer_budget(),
        config.pgbouncer.instances,
        config.pools(),
        config.pgbouncer.default_pool_size,
        config.pgbouncer.reserve_pool_size,
        config.database.max_connections,
        config.database.unavailable_to_pgbouncer()
    )?;
    writeln!(
        out,
        "  ingest: queue.maximum_concurrency {} ≤ reserved {}; visibility {} s ≥ {} s",
        config.queue.maximum_concurrency,
        config.functions.ingest.reserved_concurrency,
        config.queue.visibility_timeout_s,
        config.required_visibility_timeout_s()
    )?;
    let shortest = config
        .functions()
        .iter()
        .map(|(_, f)| f.timeout_s)
        .chain([budget::API_GATEWAY_TIMEOUT_S])
        .min()
        .unwrap_or(budget::API_GATEWAY_TIMEOUT_S);
    writeln!(
        out,
        "  query_wait_timeout: {} s < shortest caller timeout {} s",
        config.pgbouncer.query_wait_timeout_s, shortest
    )?;
    writeln!(
        out,
        "  worst case: attempts × (acquire + query_wait_timeout + statement) + reserve ≤ timeout"
    )?;
    for function in FunctionName::ALL {
        writeln!(out, "    {}", WorstCase::of(config, function))?;
    }
    writeln!(
        out,
        "  outage absorbed before a valid message reaches the DLQ: {}",
        worst_case::outage_line(config)
    )
}

/// `kit check`: every invariant, then drift of the rendered files.
pub fn check(args: CheckArgs) -> anyhow::Result<()> {
    let (config, path, root) = load(&args.config)?;
    let violations = budget::check(&config);
    let warnings = budget::warnings(&config);
    let drift = render::drift(&config, &root)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "kit check: {}", path.display())?;
    print_budget(&mut out, &config)?;
    print_violations(&mut out, &violations)?;
    for w in &warnings {
        writeln!(out, "⚠ [{}] {}", w.rule.code(), w.problem)?;
        writeln!(out, "    fix: {}", w.fix)?;
    }
    for d in &drift {
        writeln!(out, "✗ [drift] {} {}", d.path, d.what)?;
        writeln!(out, "    fix: run `kit render` and commit the result")?;
    }
    let problems = violations.len() + drift.len();
    if problems > 0 {
        bail!(
            "kit check: {problems} problem(s) in {} ({} invariant violation(s), {} stale rendered file(s))",
            path.display(),
            violations.len(),
            drift.len()
        );
    }
    writeln!(
        out,
        "ok: every invariant holds and the rendered files match kit.toml{}",
        match warnings.len() {
            0 => String::new(),
            n => format!(" ({n} warning(s) above)"),
        }
    )?;
    Ok(())
}

/// `kit render`: writes infra/template.yaml and pgbouncer/pgbouncer.ini.
pub fn render(args: RenderArgs) -> anyhow::Result<()> {
    let (config, path, root) = load(&args.config)?;
    let violations = budget::check(&config);
    if !violations.is_empty() {
        print_violations(&mut std::io::stderr().lock(), &violations)?;
        if !args.allow_violations {
            bail!(
                "kit render: {} breaks {} invariant(s); fix them (or pass --allow-violations to render anyway)",
                path.display(),
                violations.len()
            );
        }
    }
    let changed = render::write_all(&config, &root)?;
    let mut err = std::io::stderr().lock();
    for file in [render::TEMPLATE_PATH, render::PGBOUNCER_INI_PATH] {
        let state = if changed.contains(&file) {
            "wrote"
        } else {
            "unchanged"
        };
        writeln!(err, "{state} {}", root.join(file).display())?;
    }
    Ok(())
}

/// `kit plan`: sizes for a target load, as a kit.toml fragment, checked.
pub fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let (config, path, _root) = load(&args.config)?;
    let target = LoadTarget {
        search_rps: args.search_rps,
        search_p50_ms: args.p50_ms,
        search_p99_ms: args.p99_ms.unwrap_or(4.0 * args.p50_ms),
        search_db_ms: args.search_db_ms.unwrap_or(args.p50_ms),
        ingest_msgs_per_s: args.ingest_msgs_per_s,
        ingest_batch_ms: args.ingest_batch_ms,
        headroom: args.headroom,
        pgbouncer_tps: args.pgbouncer_tps,
    };
    let plan = plan::plan(&config, &target)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", plan_json(&plan)?)?;
        if !plan.violations.is_empty() {
            bail!(
                "kit plan: the planned sizes still break {} invariant(s) (\"violations\")",
                plan.violations.len()
            );
        }
        return Ok(());
    }
    write!(out, "{}", plan.fragment())?;
    writeln!(out)?;
    writeln!(out, "# with the rest of {}:", path.display())?;
    for line in budget_lines(&plan.config)? {
        writeln!(out, "#{line}")?;
    }
    if !plan.violations.is_empty() {
        print_violations(&mut out, &plan.violations)?;
        bail!(
            "kit plan: the planned sizes still break {} invariant(s); apply the fixes above to kit.toml",
            plan.violations.len()
        );
    }
    writeln!(
        out,
        "# every invariant holds: merge the fragment into kit.toml, then run `kit render`"
    )?;
    Ok(())
}

/// `kit plan --json`: the derived settings (each value as the TOML value it stands for)
/// and the violations that remain.
fn plan_json(plan: &plan::Plan) -> anyhow::Result<serde_json::Value> {
    let derived = plan
        .derived
        .iter()
        .map(|d| {
            let value: toml::Table =
                toml::from_str(&format!("value = {}", d.value)).with_context(|| {
                    format!("{}.{} = {} is not a TOML value", d.table, d.key, d.value)
                })?;
            Ok(serde_json::json!({
                "table": d.table,
                "key": d.key,
                "value": value["value"],
                "why": d.why,
            }))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let violations: Vec<serde_json::Value> = plan
        .violations
        .iter()
        .map(|v| serde_json::json!({"rule": v.rule.code(), "problem": v.problem, "fix": v.fix}))
        .collect();
    Ok(serde_json::json!({"derived": derived, "violations": violations}))
}

fn budget_lines(config: &KitConfig) -> anyhow::Result<Vec<String>> {
    let mut buf = Vec::new();
    print_budget(&mut buf, config)?;
    Ok(String::from_utf8(buf)?.lines().map(str::to_owned).collect())
}

/// The `cargo lambda` command line `kit build` runs: `--locked`, so the deployed binaries are
/// built from exactly the committed Cargo.lock (cargo fails instead of re-resolving).
pub fn build_command() -> Vec<String> {
    let mut cmd: Vec<String> = [
        "cargo",
        "lambda",
        "build",
        "--locked",
        "--release",
        "--arm64",
    ]
    .map(str::to_owned)
    .to_vec();
    for package in FUNCTION_PACKAGES {
        cmd.push("--package".to_owned());
        cmd.push(package.to_owned());
    }
    cmd
}

/// PATH with the kit's cargo-lambda venv in front, when that venv exists.
fn path_with_kit_venv() -> Option<std::ffi::OsString> {
    let cache =
        std::env::var_os("KIT_CACHE").unwrap_or_else(|| "/var/cache/pgvector-lambda-kit".into());
    let bin = PathBuf::from(cache).join("venv").join("bin");
    if !bin.join("cargo-lambda").is_file() {
        return None;
    }
    let mut dirs = vec![bin];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).ok()
}

/// `kit build`: `cargo lambda build --locked --release --arm64` for the three function packages.
pub fn build(args: BuildArgs) -> anyhow::Result<()> {
    let (_config, _path, root) = load(&args.config)?;
    let argv = build_command();
    if args.dry_run {
        writeln!(std::io::stdout().lock(), "{}", argv.join(" "))?;
        return Ok(());
    }
    let mut err = std::io::stderr().lock();
    writeln!(err, "{}", argv.join(" "))?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(&root);
    if let Some(path) = path_with_kit_venv() {
        cmd.env("PATH", path);
    }
    let probe = {
        let mut p = Command::new("cargo");
        p.args(["lambda", "--version"]);
        if let Some(path) = path_with_kit_venv() {
            p.env("PATH", path);
        }
        p.output()
    };
    match probe {
        Ok(o) if o.status.success() => {}
        _ => bail!(
            "`cargo lambda` is not installed: run scripts/install-deps.sh (it puts cargo-lambda in \
             ${{KIT_CACHE:-/var/cache/pgvector-lambda-kit}}/venv) or add cargo-lambda to PATH"
        ),
    }
    let status = cmd.status().context("running cargo lambda build")?;
    if !status.success() {
        bail!("cargo lambda build failed ({status}); its output above says why");
    }
    writeln!(
        err,
        "built: {}",
        FUNCTION_PACKAGES
            .map(|p| format!("target/lambda/{p}/bootstrap"))
            .join(", ")
    )?;
    Ok(())
}
