//! Verified TLS on both hops of the local stack, as in production: a client must use TLS
//! and must verify the server against the cluster's CA, and PgBouncer verifies PostgreSQL.
//! Each wall is shown from the outside: the connection a looser setup would accept fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kit_support::database_url::{login, without_query};
use kit_support::lookup::from_pairs;
use kit_support::{free_port, pgbouncer_setting, stack_ca, stack_urls};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection};

/// The stack's two URLs, parsed: (through PgBouncer, straight to PostgreSQL).
fn stack() -> (PgConnectOptions, PgConnectOptions) {
    let (app, admin) = stack_urls().unwrap();
    (app.parse().unwrap(), admin)
}

/// A scratch folder the database's OS user can read (tests run as root, servers as postgres).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        // Tests share this process: the name and a fresh id keep their folders apart.
        let dir = std::env::temp_dir().join(format!("kit-tls-{name}-{}", uuid::Uuid::new_v4()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        run("chmod", &["755", dir.to_str().unwrap()]);
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    /// Files written here become the database OS user's when running as root.
    fn hand_over(&self) {
        if is_root() {
            run("chown", &["-R", "postgres", self.0.to_str().unwrap()]);
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA that did not sign the stack's certificates.
fn foreign_ca(scratch: &Scratch) -> PathBuf {
    // A CA of its own, made the way `kit tls issue` makes the deployment's.
    let dir = scratch.path("foreign");
    kit::deploy::tls::issue("localhost", &dir, 1).expect("kit tls issue");
    dir.join(kit::deploy::tls::CA_CERT)
}

async fn select_one(options: PgConnectOptions) -> Result<i32, sqlx::Error> {
    let mut conn = options.connect().await?;
    let one = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
    conn.close().await?;
    Ok(one)
}

#[tokio::test]
async fn the_stack_urls_verify_the_server_and_connect() {
    let (bouncer, direct) = stack();
    for (hop, options) in [("PgBouncer", bouncer), ("PostgreSQL", direct)] {
        assert!(
            matches!(options.get_ssl_mode(), PgSslMode::VerifyFull),
            "{hop}: the stack's URL must say sslmode=verify-full"
        );
        assert_eq!(select_one(options).await.unwrap(), 1, "{hop}");
    }
}

#[tokio::test]
async fn plaintext_clients_are_refused_on_both_hops() {
    let (bouncer, direct) = stack();
    for (hop, options) in [("PgBouncer", bouncer), ("PostgreSQL", direct)] {
        let error = select_one(options.ssl_mode(PgSslMode::Disable))
            .await
            .expect_err(&format!("{hop} accepted a plaintext connection"));
        let text = error.to_string();
        assert!(
            text.contains("SSL required") || text.contains("no encryption"),
            "{hop}: {text}"
        );
    }
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let scratch = Scratch::new("client");
    let foreign = foreign_ca(&scratch);
    let (bouncer, direct) = stack();
    for (hop, options) in [("PgBouncer", bouncer), ("PostgreSQL", direct)] {
        let error = select_one(options.ssl_root_cert(&foreign))
            .await
            .expect_err(&format!(
                "{hop}: a client trusting another CA still connected"
            ));
        let text = error.to_string().to_lowercase();
        assert!(
            text.contains("certificate") || text.contains("unknownissuer"),
            "{hop}: {text}"
        );
    }
}

/// A PgBouncer of the test's own, in front of the stack's PostgreSQL, verifying its
/// certificate (`server_tls_sslmode = verify-full`) against `ca`. Clients log in without
/// a password and PgBouncer logs in to PostgreSQL as the admin role.
struct TestBouncer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl TestBouncer {
    fn start(scratch: &Scratch, ca: &Path) -> TestBouncer {
        let (_, admin) = stack();
        let admin_url = std::env::var("DATABASE_ADMIN_URL").unwrap();
        let (_, password) = login(&admin_url).expect("DATABASE_ADMIN_URL has a password");
        let user = admin.get_username().to_owned();
        let port = free_port();
        let log = scratch.path("pgbouncer.log");
        std::fs::copy(ca, scratch.path("ca.crt")).unwrap();
        std::fs::write(scratch.path("users.txt"), format!("\"{user}\" \"\"\n")).unwrap();
        std::fs::write(
            scratch.path("pgbouncer.ini"),
            format!(
                "[databases]\n\
                 * = host=127.0.0.1 port={pg_port} user={user} password={password}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {users}\n\
                 pool_mode = transaction\n\
                 max_prepared_statements = 10\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 server_tls_sslmode = verify-full\n\
                 server_tls_ca_file = {ca}\n\
                 server_login_retry = 1\n\
                 query_wait_timeout = 3\n\
                 logfile = {log}\n",
                pg_port = admin.get_port(),
                users = scratch.path("users.txt").display(),
                ca = scratch.path("ca.crt").display(),
                log = log.display(),
            ),
        )
        .unwrap();
        scratch.hand_over();
        let binary =
            PathBuf::from(std::env::var("KIT_CACHE").unwrap()).join("pgbouncer/bin/pgbouncer");
        let ini = scratch.path("pgbouncer.ini");
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&binary);
            c
        } else {
            Command::new(&binary)
        };
        let child = command
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("PgBouncer starts");
        TestBouncer { child, port, log }
    }

    async fn select_one(&self) -> Result<i32, sqlx::Error> {
        let options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(stack().1.get_username())
            .database("kit")
            .ssl_mode(PgSslMode::Disable);
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        select_one(options).await
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestBouncer {
    fn drop(&mut self) {
        // runuser forwards the signal to PgBouncer.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn pgbouncer_refuses_a_postgresql_certificate_it_cannot_verify() {
    // The control: verifying against the stack's CA, the same setup works.
    let trusted = Scratch::new("bouncer-trusted");
    let bouncer = TestBouncer::start(&trusted, &stack_ca());
    assert_eq!(
        bouncer.select_one().await.unwrap_or_else(|e| panic!(
            "PgBouncer verifying against the stack's CA: {e}\n{}",
            bouncer.log()
        )),
        1
    );
    drop(bouncer);

    let untrusted = Scratch::new("bouncer-untrusted");
    let foreign = foreign_ca(&untrusted);
    let bouncer = TestBouncer::start(&untrusted, &foreign);
    let error = bouncer
        .select_one()
        .await
        .expect_err("PgBouncer logged in to a PostgreSQL whose certificate another CA signed");
    let log = bouncer.log();
    assert!(
        log.contains("certificate verify failed"),
        "the client saw {error}; PgBouncer's log does not name the failed verification:\n{log}"
    );
}

/// The stack's own PgBouncer runs with the settings the tests above rely on: TLS required
/// of clients, PostgreSQL's certificate verified against the cluster's CA.
#[tokio::test]
async fn the_stack_pgbouncer_requires_tls_and_verifies_postgresql() {
    let setting = |key: &'static str| async move { pgbouncer_setting(key).await.unwrap() };
    assert_eq!(setting("client_tls_sslmode").await, "require");
    assert_eq!(setting("server_tls_sslmode").await, "verify-full");
    assert_eq!(
        PathBuf::from(setting("server_tls_ca_file").await),
        stack_ca()
    );
}

// As on AWS: the functions' Config gets the CA as PEM text (read from the secret
// DATABASE_CA_SECRET_ARN names) and a URL without TLS parameters (built from the login
// secret), and connects verify-full.

/// The stack's app URL without its query: what `credentials` builds from the login secret.
fn url_without_tls() -> String {
    without_query(&std::env::var("DATABASE_URL").unwrap()).to_owned()
}

/// A function's `storage::Config` from `vars`, as `main` builds it from the environment.
fn function_config(vars: &[(&str, String)]) -> Result<storage::Config, storage::ConfigError> {
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    storage::Config::from_lookup(from_pairs(&pairs))
}

async fn health(config: &storage::Config) -> Result<(), String> {
    let db = storage::Database::connect_lazy(config).map_err(|e| e.to_string())?;
    let result = db.health().await.map_err(|e| format!("{e} / {e:?}"));
    db.close().await;
    result
}

#[tokio::test]
async fn a_function_verifies_pgbouncer_against_a_ca_given_as_pem() {
    let ca = std::fs::read_to_string(stack_ca()).unwrap();
    let config = function_config(&[
        ("DATABASE_URL", url_without_tls()),
        ("DATABASE_SSLROOTCERT_PEM", ca),
    ])
    .unwrap();
    assert!(
        format!("{config:?}").contains("verify-full"),
        "verify-full is the default: {config:?}"
    );
    health(&config)
        .await
        .expect("verify-full through PgBouncer with the CA as PEM");

    let scratch = Scratch::new("function-foreign");
    let foreign = std::fs::read_to_string(foreign_ca(&scratch)).unwrap();
    let config = function_config(&[
        ("DATABASE_URL", url_without_tls()),
        ("DATABASE_SSLROOTCERT_PEM", foreign),
    ])
    .unwrap();
    let error = health(&config)
        .await
        .expect_err("a function trusting another CA still reached PgBouncer");
    let text = error.to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("unknownissuer"),
        "{error}"
    );
}

#[tokio::test]
async fn a_function_refuses_to_start_with_a_plaintext_mode() {
    for mode in ["disable", "allow", "prefer"] {
        let error = function_config(&[
            ("DATABASE_URL", url_without_tls()),
            ("DATABASE_SSLMODE", mode.to_owned()),
        ])
        .expect_err(mode)
        .to_string();
        assert!(
            error.contains(&format!("DATABASE_SSLMODE={mode}"))
                && error.contains("set DATABASE_SSLMODE=verify-full"),
            "{error}"
        );
    }
}

// ---------------------------------------------------------------------------------
// The container's entrypoint (pgbouncer/entrypoint.sh), run on this machine with the
// stack's PgBouncer binary: the certificate `kit tls issue` makes, from the PEM variables
// the ECS task maps from the TLS secret, verified by a function; PostgreSQL verified by
// PgBouncer; and the refusals when TLS cannot be what production needs.

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join(path)
}

/// The stack app role's name and password (from DATABASE_URL).
fn app_login() -> (String, String) {
    login(&std::env::var("DATABASE_URL").unwrap()).unwrap()
}

/// The entrypoint's environment as the task definition sets it, for the stack's database.
fn entrypoint_env(scratch: &Scratch, port: u16, issued: &Path) -> Vec<(String, String)> {
    let (user, password) = app_login();
    let (_, admin) = stack();
    std::fs::copy(
        repo_file("pgbouncer/entrypoint.sh"),
        scratch.path("entrypoint.sh"),
    )
    .unwrap();
    std::fs::copy(
        repo_file("pgbouncer/pgbouncer.ini"),
        scratch.path("base.ini"),
    )
    .unwrap();
    std::fs::copy(stack_ca(), scratch.path("rds-ca-bundle.pem")).unwrap();
    std::fs::create_dir_all(scratch.path("run")).unwrap();
    let read = |name: &str| std::fs::read_to_string(issued.join(name)).unwrap();
    vec![
        ("DB_HOST".into(), "127.0.0.1".into()),
        ("DB_PORT".into(), admin.get_port().to_string()),
        ("DB_NAME".into(), "kit".into()),
        ("PGBOUNCER_USERS".into(), user.clone()),
        (
            format!("PGBOUNCER_PASSWORD_{}", user.to_uppercase()),
            password,
        ),
        ("PGBOUNCER_PORT".into(), port.to_string()),
        ("PGBOUNCER_LISTEN_ADDR".into(), "127.0.0.1".into()),
        ("SERVER_TLS_SSLMODE".into(), "verify-full".into()),
        (
            "SERVER_TLS_CA_FILE".into(),
            scratch.path("rds-ca-bundle.pem").display().to_string(),
        ),
        ("CLIENT_TLS_SSLMODE".into(), "require".into()),
        (
            "CLIENT_TLS_CERT_PEM".into(),
            read(kit::deploy::tls::SERVER_CERT),
        ),
        (
            "CLIENT_TLS_KEY_PEM".into(),
            read(kit::deploy::tls::SERVER_KEY),
        ),
        (
            "PGBOUNCER_BASE_INI".into(),
            scratch.path("base.ini").display().to_string(),
        ),
        (
            "PGBOUNCER_RUN_DIR".into(),
            scratch.path("run").display().to_string(),
        ),
        (
            "PGBOUNCER_BIN".into(),
            PathBuf::from(std::env::var("KIT_CACHE").unwrap())
                .join("pgbouncer/bin/pgbouncer")
                .display()
                .to_string(),
        ),
    ]
}

/// `bash entrypoint.sh` as the database's OS user with exactly `env`.
fn entrypoint(scratch: &Scratch, env: &[(String, String)]) -> Command {
    scratch.hand_over();
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "env", "-i"]);
        c
    } else {
        let mut c = Command::new("env");
        c.arg("-i");
        c
    };
    command.arg(format!("PATH={}", std::env::var("PATH").unwrap()));
    for (key, value) in env {
        command.arg(format!("{key}={value}"));
    }
    command.arg("bash").arg(scratch.path("entrypoint.sh"));
    command
}

/// A PgBouncer started by the entrypoint; stopped on drop.
struct Container {
    child: Child,
    log: PathBuf,
}

impl Container {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_container_serves_the_issued_certificate_to_verifying_functions() {
    let scratch = Scratch::new("container");
    let issued = scratch.path("issued");
    kit::deploy::tls::issue("localhost", &issued, 1).unwrap();
    let port = free_port();
    let env = entrypoint_env(&scratch, port, &issued);
    let log = scratch.path("container.log");
    let child = entrypoint(&scratch, &env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let container = Container { child, log };
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The key the entrypoint wrote from CLIENT_TLS_KEY_PEM is its user's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(scratch.path("run/client-tls.key"))
        .unwrap_or_else(|e| panic!("{e}\n{}", container.log()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "client-tls.key mode {mode:o}");

    let (user, password) = app_login();
    let ca = std::fs::read_to_string(issued.join(kit::deploy::tls::CA_CERT)).unwrap();
    let url = |host: &str| format!("postgres://{user}:{password}@{host}:{port}/kit");
    let config = |host: &str, mode: &str, ca: &str| {
        function_config(&[
            ("DATABASE_URL", url(host)),
            ("DATABASE_SSLMODE", mode.to_owned()),
            ("DATABASE_SSLROOTCERT_PEM", ca.to_owned()),
        ])
        .unwrap()
    };
    health(&config("localhost", "verify-full", &ca))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "verify-full against the issued CA, through the container's PgBouncer \
                 (which verifies PostgreSQL): {e}\n{}",
                container.log()
            )
        });

    // verify-full checks the name: the certificate is for localhost, not 127.0.0.1.
    let error = health(&config("127.0.0.1", "verify-full", &ca))
        .await
        .expect_err("verify-full accepted a certificate issued for another name");
    assert!(error.contains("not valid for name"), "{error}");

    // Another CA's certificate is refused.
    let foreign = std::fs::read_to_string(foreign_ca(&scratch)).unwrap();
    health(&config("localhost", "verify-full", &foreign))
        .await
        .expect_err("a function trusting another CA reached the container's PgBouncer");
}

/// Runs the entrypoint with `change` applied to a complete environment; returns its stderr.
fn refused_start(change: impl FnOnce(&mut Vec<(String, String)>)) -> String {
    let scratch = Scratch::new("container-refused");
    let issued = scratch.path("issued");
    kit::deploy::tls::issue("localhost", &issued, 1).unwrap();
    let mut env = entrypoint_env(&scratch, free_port(), &issued);
    // Nothing may start: a PgBouncer that did would be a failure of the test, not a hang.
    env.retain(|(key, _)| key != "PGBOUNCER_BIN");
    env.push(("PGBOUNCER_BIN".into(), "false".into()));
    change(&mut env);
    let out = entrypoint(&scratch, &env).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "the entrypoint accepted it: {stderr}"
    );
    assert!(
        stderr.starts_with("entrypoint: "),
        "refused before exec: {stderr}"
    );
    stderr
}

fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    if !value.is_empty() {
        env.push((key.to_owned(), value.to_owned()));
    }
}

#[test]
fn the_container_refuses_to_start_without_verified_tls() {
    let stderr = refused_start(|env| {
        set(env, "CLIENT_TLS_CERT_PEM", "");
        set(env, "CLIENT_TLS_KEY_PEM", "");
    });
    assert!(
        stderr.contains("no TLS certificate for clients") && stderr.contains("kit tls issue"),
        "{stderr}"
    );
    let stderr = refused_start(|env| set(env, "CLIENT_TLS_KEY_PEM", ""));
    assert!(stderr.contains("come together"), "{stderr}");
    for mode in ["disable", "allow", "prefer"] {
        let stderr = refused_start(|env| set(env, "SERVER_TLS_SSLMODE", mode));
        assert!(
            stderr.contains(&format!("SERVER_TLS_SSLMODE='{mode}'")),
            "{stderr}"
        );
        let stderr = refused_start(|env| set(env, "CLIENT_TLS_SSLMODE", mode));
        assert!(
            stderr.contains(&format!("CLIENT_TLS_SSLMODE='{mode}'")),
            "{stderr}"
        );
    }
    let stderr = refused_start(|env| set(env, "SERVER_TLS_CA_FILE", "/nonexistent/rds.pem"));
    assert!(stderr.contains("is missing or empty"), "{stderr}");
    // A key from another issue: the secret was updated by halves.
    let stderr = refused_start(|env| {
        let other = std::env::temp_dir().join(format!("kit-tls-other-{}", uuid::Uuid::new_v4()));
        kit::deploy::tls::issue("localhost", &other, 1).unwrap();
        let key = std::fs::read_to_string(other.join(kit::deploy::tls::SERVER_KEY)).unwrap();
        let _ = std::fs::remove_dir_all(&other);
        set(env, "CLIENT_TLS_KEY_PEM", &key);
    });
    assert!(
        stderr.contains("does not belong to its certificate"),
        "{stderr}"
    );
}
