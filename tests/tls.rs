//! Verified TLS on both hops of the local stack, as in production: a client must use TLS
//! and must verify the server against the cluster's CA, and PgBouncer verifies PostgreSQL.
//! Each wall is shown from the outside: the connection a looser setup would accept fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kit_tests::stack_urls;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection};

/// The stack's two URLs, parsed: (through PgBouncer, straight to PostgreSQL).
fn stack() -> (PgConnectOptions, PgConnectOptions) {
    let (app, admin) = stack_urls().unwrap();
    (app.parse().unwrap(), admin)
}

/// The CA file the stack's URLs verify against (`sslrootcert`).
fn stack_ca() -> PathBuf {
    let url = std::env::var("DATABASE_URL").unwrap();
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let ca = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("sslrootcert="))
        .expect("DATABASE_URL names its CA with sslrootcert (scripts/stack.sh)");
    PathBuf::from(ca.replace("%20", " "))
}

/// A scratch folder the database's OS user can read (tests run as root, servers as postgres).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("kit-tls-{name}-{}", std::process::id()));
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
    let cert = scratch.path("foreign-ca.crt");
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=not the stack's CA",
            "-keyout",
            scratch.path("foreign-ca.key").to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    cert
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
        let password = admin_url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .and_then(|(userinfo, _)| userinfo.split_once(':'))
            .map(|(_, password)| password.to_owned())
            .expect("DATABASE_ADMIN_URL has a password");
        let user = admin.get_username().to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
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
    let (bouncer, admin) = stack();
    let mut console = admin
        .host(bouncer.get_host())
        .port(bouncer.get_port())
        .database("pgbouncer")
        .connect()
        .await
        .expect("PgBouncer's admin console (admin_users)");
    let rows = sqlx::raw_sql("SHOW CONFIG")
        .fetch_all(&mut console)
        .await
        .unwrap();
    let setting = |key: &str| -> String {
        use sqlx::Row;
        rows.iter()
            .find(|row| row.get::<String, _>("key") == key)
            .map(|row| row.get::<String, _>("value"))
            .unwrap_or_else(|| panic!("SHOW CONFIG has no {key}"))
    };
    assert_eq!(setting("client_tls_sslmode"), "require");
    assert_eq!(setting("server_tls_sslmode"), "verify-full");
    assert_eq!(PathBuf::from(setting("server_tls_ca_file")), stack_ca());
}
