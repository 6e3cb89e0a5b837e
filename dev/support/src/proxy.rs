//! A TCP proxy in front of PgBouncer that the test can cut, take down (the port is
//! closed: connection refused) and bring back, or arm to cut every connection at a
//! chosen moment of the client's byte stream.
//!
//! The stack requires verified TLS, so the proxy is a TLS endpoint on both sides when the
//! URL asks for TLS: it answers the client's `SSLRequest` with the stack's own server
//! certificate (the one PgBouncer presents, signed by the stack's CA, for 127.0.0.1), and
//! reaches PgBouncer over TLS verified against that CA. Clients keep `sslmode=verify-full`,
//! and the proxy sees the protocol in the clear, as the trips need.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// When to cut, by what the client (the handler) sends.
#[derive(Clone, Debug)]
pub enum Trip {
    /// The client's chunk holding `needle` is not forwarded: every connection is cut
    /// and the proxy goes down.
    Before(&'static [u8]),
    /// After `needle`, this many more bytes go through, then cut and down.
    After(&'static [u8], usize),
}

pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: SocketAddr,
    tls: Option<Tls>,
    listening: AtomicBool,
    listener: Mutex<Option<JoinHandle<()>>>,
    connections: Mutex<Vec<JoinHandle<()>>>,
    trip: Mutex<Option<Trip>>,
    trips: AtomicUsize,
    tripped: Notify,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards to the host and port of `database_url`.
    pub async fn start(database_url: &str) -> Self {
        let options: PgConnectOptions = database_url.parse().expect("a database URL");
        let upstream = tokio::net::lookup_host((options.get_host(), options.get_port()))
            .await
            .expect("resolvable host")
            .next()
            .expect("an address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            tls: Tls::for_url(database_url, &options),
            listening: AtomicBool::new(false),
            listener: Mutex::new(None),
            connections: Mutex::new(Vec::new()),
            trip: Mutex::new(None),
            trips: AtomicUsize::new(0),
            tripped: Notify::new(),
        });
        shared.serve(listener);
        Self { addr, shared }
    }

    /// `database_url` with its host and port replaced by the proxy's.
    pub fn url(&self, database_url: &str) -> String {
        crate::database_url::with_address(database_url, self.addr)
    }

    pub fn arm(&self, trip: Trip) {
        *self.shared.trip.lock().unwrap() = Some(trip);
    }

    pub fn trips(&self) -> usize {
        self.shared.trips.load(Ordering::SeqCst)
    }

    pub fn reset_trips(&self) {
        self.shared.trips.store(0, Ordering::SeqCst);
    }

    /// Waits until an armed trip fired.
    pub async fn tripped(&self) {
        self.shared.tripped.notified().await;
    }

    /// Cuts every connection and closes the port (new connections are refused).
    pub fn down(&self) {
        self.shared.down();
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        for _ in 0..100 {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => {
                    self.shared.serve(listener);
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        panic!("could not listen on {} again", self.addr);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.down();
    }
}

impl Shared {
    fn serve(self: &Arc<Self>, listener: TcpListener) {
        self.listening.store(true, Ordering::SeqCst);
        let shared = Arc::clone(self);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !shared.listening.load(Ordering::SeqCst) {
                    continue; // closed between down() and the task's end: drop it
                }
                let relay = tokio::spawn(Arc::clone(&shared).relay(client));
                let mut connections = shared.connections.lock().unwrap();
                connections.retain(|c| !c.is_finished());
                connections.push(relay);
            }
        });
        *self.listener.lock().unwrap() = Some(task);
    }

    fn down(&self) {
        self.listening.store(false, Ordering::SeqCst);
        if let Some(listener) = self.listener.lock().unwrap().take() {
            listener.abort();
        }
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn fire(&self) {
        self.trips.fetch_add(1, Ordering::SeqCst);
        self.down();
        self.tripped.notify_one();
    }

    async fn relay(self: Arc<Self>, client: TcpStream) {
        let Ok(server) = TcpStream::connect(self.upstream).await else {
            return;
        };
        let (client, server): (Box<dyn Stream>, Box<dyn Stream>) = match &self.tls {
            None => (Box::new(client), Box::new(server)),
            Some(tls) => match tls.terminate(client, server).await {
                Ok(pair) => pair,
                Err(_) => return,
            },
        };
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (mut server_read, mut server_write) = tokio::io::split(server);
        let shared = Arc::clone(&self);
        let upstream = async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut tail: Vec<u8> = Vec::new();
            let mut remaining: Option<usize> = None; // bytes still allowed after a needle
            loop {
                let n = match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let chunk = &buf[..n];
                let mut forward = n;
                let armed = shared.trip.lock().unwrap().clone();
                match (&armed, remaining) {
                    (Some(Trip::Before(needle)), _) if contains(&tail, chunk, needle) => {
                        shared.trip.lock().unwrap().take();
                        shared.fire();
                        return;
                    }
                    (Some(Trip::After(needle, bytes)), None) => {
                        if let Some(end) = find_end(&tail, chunk, needle) {
                            let after = n - end;
                            if after >= *bytes {
                                forward = end + bytes;
                                remaining = Some(0);
                            } else {
                                remaining = Some(bytes - after);
                            }
                        }
                    }
                    (Some(Trip::After(..)), Some(left)) => {
                        forward = n.min(left);
                        remaining = Some(left - forward);
                    }
                    _ => {}
                }
                if server_write.write_all(&chunk[..forward]).await.is_err() {
                    return;
                }
                if remaining == Some(0) {
                    shared.trip.lock().unwrap().take();
                    shared.fire();
                    return;
                }
                tail = chunk[n.saturating_sub(64)..].to_vec();
            }
        };
        let downstream = async move {
            let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        };
        tokio::select! {
            () = upstream => {}
            () = downstream => {}
        }
    }
}

/// Whether `needle` occurs in `tail ++ chunk` (so a needle split across reads counts).
fn contains(tail: &[u8], chunk: &[u8], needle: &[u8]) -> bool {
    find_end(tail, chunk, needle).is_some()
}

/// Where in `chunk` the first occurrence of `needle` in `tail ++ chunk` ends.
fn find_end(tail: &[u8], chunk: &[u8], needle: &[u8]) -> Option<usize> {
    let joined: Vec<u8> = tail.iter().chain(chunk).copied().collect();
    joined
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|start| (start + needle.len()).saturating_sub(tail.len()))
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// PostgreSQL's `SSLRequest`: length 8, then the code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Both ends of the proxy's TLS: the stack's server certificate towards the client, the
/// stack's CA towards PgBouncer.
struct Tls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    upstream_name: ServerName<'static>,
}

impl Tls {
    /// `None` for a URL that does not use TLS. The certificate and key are the ones the
    /// stack keeps beside its CA (`sslrootcert`): scripts/stack.sh's `tls/` folder.
    fn for_url(url: &str, options: &PgConnectOptions) -> Option<Tls> {
        if matches!(options.get_ssl_mode(), PgSslMode::Disable) {
            return None;
        }
        let ca = crate::sslrootcert(url).expect("a TLS URL names its CA with sslrootcert");
        let dir = ca.parent().expect("the CA file's folder");
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.join("server.crt"))
                .expect("the stack's server certificate")
                .collect::<Result<_, _>>()
                .expect("a PEM certificate");
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key"))
            .expect("the stack's server key (readable by root)");
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("the stack's certificate and key match");

        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&ca).expect("the stack's CA") {
            roots.add(cert.expect("a PEM certificate")).unwrap();
        }
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let upstream_name = ServerName::try_from(options.get_host().to_owned())
            .expect("the upstream host is a valid TLS name");
        Some(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            upstream_name,
        })
    }

    /// Answers the client's `SSLRequest` and accepts its TLS; asks PgBouncer for TLS and
    /// verifies it.
    async fn terminate(
        &self,
        mut client: TcpStream,
        mut server: TcpStream,
    ) -> std::io::Result<(Box<dyn Stream>, Box<dyn Stream>)> {
        let mut request = [0u8; 8];
        client.read_exact(&mut request).await?;
        if request != SSL_REQUEST {
            return Err(std::io::Error::other("the client did not ask for TLS"));
        }
        client.write_all(b"S").await?;
        let client = self.acceptor.accept(client).await?;

        server.write_all(&SSL_REQUEST).await?;
        let mut answer = [0u8; 1];
        server.read_exact(&mut answer).await?;
        if answer != *b"S" {
            return Err(std::io::Error::other("PgBouncer refused TLS"));
        }
        let server = self
            .connector
            .connect(self.upstream_name.clone(), server)
            .await?;
        Ok((Box::new(client), Box::new(server)))
    }
}
