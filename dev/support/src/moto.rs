//! Test support: a local Secrets Manager (moto's server) per test, and RDS-style secrets in it.
//!
//! Each [`Moto`] is its own `moto_server` process on a free 127.0.0.1 port, killed when the
//! guard drops (also when the test panics), so tests share nothing and run in any order.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use credentials::aws_config::timeout::TimeoutConfig;
use credentials::aws_config::{self, Region};
use credentials::aws_sdk_secretsmanager::config::Credentials;
use credentials::aws_sdk_secretsmanager::primitives::Blob;
use credentials::aws_sdk_secretsmanager::Client;

use crate::free_port;

pub const REGION: &str = "us-east-1";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);

/// `$KIT_CACHE/venv-moto/bin/moto_server`, as installed by scripts/install-moto.sh.
fn moto_server_binary() -> PathBuf {
    let cache = std::env::var_os("KIT_CACHE")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/pgvector-lambda-kit"));
    let binary = cache.join("venv-moto/bin/moto_server");
    assert!(
        binary.is_file(),
        "{} is missing: run scripts/install-moto.sh (installs moto[server], the local Secrets \
         Manager these tests run against, into $KIT_CACHE/venv-moto)",
        binary.display()
    );
    binary
}

/// A running `moto_server`; killed on drop.
pub struct Moto {
    child: Child,
    port: u16,
    tls: bool,
    log: PathBuf,
}

impl Moto {
    /// Starts a fresh moto server (plain HTTP) and waits until it serves.
    pub fn start() -> Self {
        Self::spawn(false)
    }

    /// Starts a fresh moto server speaking HTTPS with a self-signed certificate it makes up.
    pub fn start_with_tls() -> Self {
        Self::spawn(true)
    }

    fn spawn(tls: bool) -> Self {
        let binary = moto_server_binary();
        let mut last_log = String::new();
        // A free port can be taken by someone else between our probe and moto's bind: retry.
        for _ in 0..3 {
            let port = free_port();
            let log =
                std::env::temp_dir().join(format!("kit-moto-{}-{port}.log", std::process::id()));
            let output = File::create(&log).expect("create the moto log file");
            let mut command = Command::new(&binary);
            command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            if tls {
                command.arg("--ssl");
            }
            let child = command
                .stdin(Stdio::null())
                .stdout(output.try_clone().expect("clone the log file handle"))
                .stderr(output)
                .spawn()
                .unwrap_or_else(|error| panic!("could not start {}: {error}", binary.display()));
            let mut moto = Self {
                child,
                port,
                tls,
                log,
            };
            match moto.wait_until_listening() {
                Ok(()) => return moto,
                Err(log) => last_log = log, // dropping `moto` kills the process
            }
        }
        panic!("moto_server did not start; its last log:\n{last_log}");
    }

    fn wait_until_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("(exited with {status})\n{}", self.log_text()));
            }
            // Werkzeug logs "Running on ..." once moto's own socket is bound: a bare connect
            // could reach another process that took the port first.
            if self.log_text().contains("Running on")
                && TcpStream::connect_timeout(&address.into(), Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "(not listening after {STARTUP_TIMEOUT:?})\n{}",
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The crate's own loader pointed at this server, with dummy credentials and a region set
    /// on the SDK config (not in the process environment). Its timeouts are relaxed: moto on
    /// a busy 2-core machine is slower than Secrets Manager, and timeouts are not under test.
    pub fn loader(&self) -> aws_config::ConfigLoader {
        credentials::aws_config_loader()
            .endpoint_url(self.endpoint())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            )
    }

    /// A Secrets Manager client for setting up secrets.
    pub async fn client(&self) -> Client {
        Client::new(&self.loader().load().await)
    }

    /// Creates a secret with a string value; returns its ARN.
    pub async fn create_string_secret(&self, name: &str, value: &str) -> String {
        let created = self
            .client()
            .await
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap_or_else(|error| panic!("create secret {name} in moto: {error:?}"));
        created.arn().expect("moto returns the ARN").to_owned()
    }

    /// Creates a secret with a binary value; returns its ARN.
    pub async fn create_binary_secret(&self, name: &str, value: &[u8]) -> String {
        let created = self
            .client()
            .await
            .create_secret()
            .name(name)
            .secret_binary(Blob::new(value))
            .send()
            .await
            .unwrap_or_else(|error| panic!("create secret {name} in moto: {error:?}"));
        created.arn().expect("moto returns the ARN").to_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// An RDS-style secret value as the SAM template generates it.
pub fn rds_secret_json(
    username: &str,
    password: &str,
    host: &str,
    port: u16,
    dbname: &str,
) -> String {
    serde_json::json!({
        "engine": "postgres",
        "username": username,
        "password": password,
        "host": host,
        "port": port,
        "dbname": dbname,
    })
    .to_string()
}
