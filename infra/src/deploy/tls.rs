//! `kit tls issue`: the deployment's own CA and PgBouncer's server certificate.
//!
//! The functions verify PgBouncer (`sslmode=verify-full`) against a CA that belongs to the
//! deployment, not to the web PKI: the operator makes it once with this command, keeps or
//! discards its key, and stores the results in two Secrets Manager secrets (docs/deploy.md):
//!
//! - `pgbouncer-tls.json`, `{"certificate": PEM, "private_key": PEM}`: PgBouncer's
//!   certificate for kit.toml's `tls.pgbouncer_hostname`; only the PgBouncer tasks read it;
//! - `ca.crt`: the CA certificate; the functions read it (`DATABASE_CA_SECRET_ARN`).
//!
//! Keys are ECDSA P-256, made by the `openssl` command line (as `scripts/stack.sh` does for
//! the local stack): no key material passes through this process's memory, and no crate
//! is added to the build for a step an operator runs a few times a year.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use super::cli::{load, ConfigArg};

#[derive(Debug, Args)]
pub struct TlsArgs {
    #[command(subcommand)]
    pub command: TlsCommand,
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make PgBouncer's server certificate (and the CA that signs it, unless --out-dir
    /// already holds ca.crt and ca.key, as when rotating) for the functions to verify.
    Issue(IssueArgs),
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The name the functions connect to (default: kit.toml's tls.pgbouncer_hostname).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Where to write ca.crt, ca.key, server.crt, server.key and pgbouncer-tls.json.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// The server certificate's validity in days.
    #[arg(long, value_name = "N", default_value_t = SERVER_DAYS)]
    pub days: u32,
}

/// `kit tls ...`.
pub fn run(args: TlsArgs) -> anyhow::Result<()> {
    match args.command {
        TlsCommand::Issue(args) => {
            let hostname = match args.hostname {
                Some(hostname) => hostname,
                None => load(&args.config)?.0.tls.pgbouncer_hostname,
            };
            let issued = issue(&hostname, &args.out_dir, args.days)?;
            writeln!(
                std::io::stdout().lock(),
                "{}",
                next_steps(&issued, &hostname)
            )?;
            Ok(())
        }
    }
}

/// What `kit tls issue` writes into its output folder.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";
/// The PgBouncer TLS secret's value, ready for `aws secretsmanager ... --secret-string file://`.
pub const SECRET_JSON: &str = "pgbouncer-tls.json";

/// How long the CA is valid, in days (10 years: it only signs PgBouncer certificates).
pub const CA_DAYS: u32 = 3650;
/// The default validity of a server certificate, in days (rotate yearly).
pub const SERVER_DAYS: u32 = 397;

/// What [`issue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Whether a new CA was made (`false`: the one in the folder signed the certificate).
    pub new_ca: bool,
    pub dir: PathBuf,
}

/// Issues a server certificate for `hostname` into `dir`, signed by the CA in `dir`
/// (`ca.crt` + `ca.key`), or by a new CA made there when there is none.
pub fn issue(hostname: &str, dir: &Path, days: u32) -> anyhow::Result<Issued> {
    if hostname.is_empty()
        || !hostname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        bail!("--hostname {hostname:?} is not a DNS name: pass the name the functions connect to (kit.toml's tls.pgbouncer_hostname)");
    }
    if !(1..=CA_DAYS).contains(&days) {
        bail!("--days {days} is out of range: 1 to {CA_DAYS} (the CA's own validity)");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = |name: &str| dir.join(name);
    let (ca_cert, ca_key) = (path(CA_CERT), path(CA_KEY));
    let new_ca = match (ca_cert.exists(), ca_key.exists()) {
        (true, true) => false,
        (false, false) => {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                &CA_DAYS.to_string(),
                "-subj",
                &format!("/CN=pgvector-lambda-kit CA for {hostname}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE,pathlen:0",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                arg(&ca_key),
                "-out",
                arg(&ca_cert),
            ])?;
            true
        }
        _ => bail!(
            "{} holds only one of {CA_CERT} and {CA_KEY}: put both back (to sign with that CA) \
             or remove both (to make a new CA)",
            dir.display()
        ),
    };
    restrict(&ca_key)?;

    let csr = path("server.csr");
    let extensions = path("server.ext");
    std::fs::write(
        &extensions,
        format!(
            "subjectAltName=DNS:{hostname}\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )?;
    let server_key = path(SERVER_KEY);
    let server_cert = path(SERVER_CERT);
    let serial = openssl(&["rand", "-hex", "16"])?;
    let made = openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        &format!("/CN={hostname}"),
        "-keyout",
        arg(&server_key),
        "-out",
        arg(&csr),
    ])
    .and_then(|_| restrict(&server_key))
    .and_then(|_| {
        openssl(&[
            "x509",
            "-req",
            "-in",
            arg(&csr),
            "-CA",
            arg(&ca_cert),
            "-CAkey",
            arg(&ca_key),
            "-set_serial",
            &format!("0x{}", serial.trim()),
            "-days",
            &days.to_string(),
            "-extfile",
            arg(&extensions),
            "-out",
            arg(&server_cert),
        ])
    });
    let _ = std::fs::remove_file(&csr);
    let _ = std::fs::remove_file(&extensions);
    made?;
    openssl(&["verify", "-CAfile", arg(&ca_cert), arg(&server_cert)])
        .context("the new certificate does not verify against the CA")?;

    let secret = serde_json::json!({
        "certificate": std::fs::read_to_string(&server_cert)?,
        "private_key": std::fs::read_to_string(&server_key)?,
    });
    let json = path(SECRET_JSON);
    write_private(&json, &serde_json::to_vec_pretty(&secret)?)?;
    Ok(Issued {
        new_ca,
        dir: dir.to_owned(),
    })
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("kit tls issue's paths are UTF-8")
}

/// Runs `openssl args...`; returns its standard output.
fn openssl(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl (install the openssl command line tool)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Only the owner may read a key.
fn restrict(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

/// The operator's next steps, printed by `kit tls issue`.
pub fn next_steps(issued: &Issued, hostname: &str) -> String {
    let d = issued.dir.display();
    let ca = if issued.new_ca {
        format!(
            "made a new CA: {d}/{CA_CERT} (public) and {d}/{CA_KEY} (keep it offline to issue \
             the next certificate with the same CA, or delete it)"
        )
    } else {
        format!("signed with the existing CA in {d}")
    };
    format!(
        "kit tls issue: {ca}\n\
         PgBouncer's certificate for {hostname}: {d}/{SERVER_CERT}, key {d}/{SERVER_KEY}\n\
         next (docs/deploy.md, \"TLS\"):\n  \
         aws secretsmanager create-secret --name kit/pgbouncer-tls --secret-string file://{d}/{SECRET_JSON}\n  \
         aws secretsmanager create-secret --name kit/pgbouncer-ca --secret-string file://{d}/{CA_CERT}\n  \
         then deploy with PgBouncerTlsSecretArn and PgBouncerCaSecretArn set to their ARNs,\n  \
         and delete {d}/{SECRET_JSON} and {d}/{SERVER_KEY}: the secret holds them now"
    )
}
