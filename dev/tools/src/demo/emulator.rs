//! The emulator the functions run under (`cargo lambda watch`), reached two ways:
//! `cargo lambda invoke` with an event file, and a small HTTP/1.1 client for the search
//! function's Function URL (`/lambda-url/search/...`).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use kit_support::stats::millis;
use serde_json::Value;

use super::excerpt;

pub struct Emulator {
    pub address: String,
    pub port: u16,
    /// Bound on each invocation and HTTP request.
    pub timeout: Duration,
}

/// An HTTP answer from the search function.
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub client_ms: f64,
}

impl Emulator {
    /// `cargo lambda invoke <function> --data-file <payload>`; the function's JSON answer.
    pub async fn invoke(&self, function: &str, payload: &Path) -> anyhow::Result<Value> {
        let port = self.port.to_string();
        let mut command = tokio::process::Command::new("cargo");
        command
            .args(["lambda", "invoke", function])
            .args(["--invoke-address", &self.address, "--invoke-port", &port])
            .args(["--output-format", "json", "--color", "never", "--data-file"])
            .arg(payload)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(self.timeout, command.output())
            .await
            .with_context(|| {
                format!(
                    "`cargo lambda invoke {function}` did not answer within {}s",
                    self.timeout.as_secs()
                )
            })?
            .context("could not run `cargo lambda invoke`: is cargo-lambda on PATH? (make deps, then . .kit/env)")?;
        if !output.status.success() {
            bail!(
                "`cargo lambda invoke {function} --data-file {}` failed ({}): {}",
                payload.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "`cargo lambda invoke {function}` printed something that is not JSON: {}",
                excerpt(&String::from_utf8_lossy(&output.stdout))
            )
        })
    }

    /// One request to the search function's Function URL (`/lambda-url/search/...`).
    pub async fn http(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let uri = format!("/lambda-url/search{path}");
        let started = Instant::now();
        let exchange = async {
            let stream = tokio::net::TcpStream::connect((self.address.as_str(), self.port))
                .await
                .with_context(|| {
                    format!(
                        "connecting to cargo lambda watch on {}:{}",
                        self.address, self.port
                    )
                })?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            let driver = tokio::spawn(connection);
            let mut request = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header(header::HOST, format!("{}:{}", self.address, self.port));
            if body.is_some() {
                request = request.header(header::CONTENT_TYPE, "application/json");
            }
            let payload = body.map(Value::to_string).unwrap_or_default();
            let response = sender
                .send_request(request.body(Full::new(Bytes::from(payload)))?)
                .await?;
            let status = response.status();
            let bytes = response.into_body().collect().await?.to_bytes();
            driver.abort();
            anyhow::Ok((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .with_context(|| {
                format!(
                    "{method} {uri}: no answer within {}s",
                    self.timeout.as_secs()
                )
            })?
            .with_context(|| format!("{method} {uri}"))?;
        let client_ms = millis(started.elapsed());
        let body = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{method} {uri} answered {status} with a body that is not JSON: {}",
                excerpt(&String::from_utf8_lossy(&bytes))
            )
        })?;
        Ok(Reply {
            status,
            body,
            client_ms,
        })
    }
}
