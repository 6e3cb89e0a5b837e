//! A TCP proxy in front of PgBouncer that the test can cut, take down (the port is
//! closed: connection refused) and bring back, or arm to cut every connection at a
//! chosen moment of the client's byte stream. It can also fall silent: stop forwarding
//! in both directions while keeping every socket open and accepting new ones, as a
//! black-holed network path does ([`Proxy::go_silent`]); and forget connections idle
//! longer than a load balancer's idle timeout ([`Proxy::set_idle_timeout`]).
//!
//! The stack requires verified TLS, so the proxy is a TLS endpoint on both sides when the
//! URL asks for TLS: it answers the client's `SSLRequest` with the stack's own server
//! certificate (the one PgBouncer presents, signed by the stack's CA, for 127.0.0.1), and
//! reaches PgBouncer over TLS verified against that CA. Clients keep `sslmode=verify-full`,
//! and the proxy sees the protocol in the clear, as the trips need.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// The client's chunk holding `needle` is swallowed and the proxy goes silent
    /// ([`Proxy::go_silent`]): the path stops answering in the middle of an operation.
    SilenceBefore(&'static [u8]),
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
    /// Forward nothing, answer nothing, keep every socket open.
    silent: AtomicBool,
    /// Connections idle at least this long are forgotten (silenced for good).
    idle_timeout: Mutex<Option<Duration>>,
    accepted: AtomicUsize,
    /// Silenced connections whose client has since closed them.
    abandoned: AtomicUsize,
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
            silent: AtomicBool::new(false),
            idle_timeout: Mutex::new(None),
            accepted: AtomicUsize::new(0),
            abandoned: AtomicUsize::new(0),
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

    /// Stops forwarding, in both directions, on every connection, and accepts new ones
    /// without answering them: bytes go in, nothing comes back, no socket is closed (a
    /// black-holed path: a load balancer that lost its flows, a dead NAT entry, a
    /// stopped PgBouncer). Connections silenced stay silent for good, as their bytes are
    /// lost; [`Proxy::speak`] forwards again on new connections.
    pub fn go_silent(&self) {
        self.shared.silent.store(true, Ordering::SeqCst);
    }

    /// Ends [`Proxy::go_silent`] for connections accepted from now on.
    pub fn speak(&self) {
        self.shared.silent.store(false, Ordering::SeqCst);
    }

    /// Models a load balancer's idle timeout: a connection that carried no byte for
    /// `idle` is forgotten, and whatever its client sends next goes nowhere (silenced,
    /// as by [`Proxy::go_silent`], but only that connection). `None` turns it off.
    pub fn set_idle_timeout(&self, idle: Option<Duration>) {
        *self.shared.idle_timeout.lock().unwrap() = idle;
    }

    /// Client connections accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Silenced connections (by [`Proxy::go_silent`] or the idle timeout) that their
    /// client has since closed, as it should once it gave up on them.
    pub fn silenced_connections_closed(&self) -> usize {
        self.shared.abandoned.load(Ordering::SeqCst)
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
                shared.accepted.fetch_add(1, Ordering::SeqCst);
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
        if self.silent.load(Ordering::SeqCst) {
            return self.swallow(client).await;
        }
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
        let flow = Arc::new(Flow {
            silenced: AtomicBool::new(false),
            last_byte: Mutex::new(Instant::now()),
        });
        let shared = Arc::clone(&self);
        let client_flow = Arc::clone(&flow);
        let upstream = async move {
            let flow = client_flow;
            let mut buf = vec![0u8; 64 * 1024];
            let mut tail: Vec<u8> = Vec::new();
            let mut remaining: Option<usize> = None; // bytes still allowed after a needle
            loop {
                let n = match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        if flow.silenced.load(Ordering::SeqCst) {
                            shared.abandoned.fetch_add(1, Ordering::SeqCst);
                        }
                        return;
                    }
                    Ok(n) => n,
                };
                if flow.silence_if(&shared) {
                    continue; // swallowed
                }
                let chunk = &buf[..n];
                let mut forward = n;
                let armed = shared.trip.lock().unwrap().clone();
                match (&armed, remaining) {
                    (Some(Trip::Before(needle)), _) if contains(&tail, chunk, needle) => {
                        shared.trip.lock().unwrap().take();
                        shared.fire();
                        return;
                    }
                    (Some(Trip::SilenceBefore(needle)), _) if contains(&tail, chunk, needle) => {
                        shared.trip.lock().unwrap().take();
                        shared.silent.store(true, Ordering::SeqCst);
                        flow.silenced.store(true, Ordering::SeqCst);
                        shared.trips.fetch_add(1, Ordering::SeqCst);
                        shared.tripped.notify_one();
                        continue;
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
                flow.touch();
                if remaining == Some(0) {
                    shared.trip.lock().unwrap().take();
                    shared.fire();
                    return;
                }
                tail = chunk[n.saturating_sub(64)..].to_vec();
            }
        };
        let shared = Arc::clone(&self);
        let server_flow = Arc::clone(&flow);
        let downstream = async move {
            let flow = server_flow;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match server_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if flow.silence_if(&shared) {
                    continue; // swallowed
                }
                if client_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                flow.touch();
            }
        };
        tokio::pin!(upstream);
        tokio::select! {
            () = &mut upstream => {}
            () = downstream => {
                // A silenced client never learns that the server went away: its socket
                // stays open until it closes it itself.
                if flow.silenced.load(Ordering::SeqCst) {
                    upstream.await;
                }
            }
        }
    }

    /// A connection accepted while silent: read and drop everything, answer nothing,
    /// until the client closes it.
    async fn swallow(self: Arc<Self>, mut client: TcpStream) {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = client.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        self.abandoned.fetch_add(1, Ordering::SeqCst);
    }
}

/// One relayed connection's state, shared by its two directions.
struct Flow {
    /// Nothing is forwarded any more, in either direction.
    silenced: AtomicBool,
    /// When a byte last went through, for the idle timeout.
    last_byte: Mutex<Instant>,
}

impl Flow {
    /// Whether the connection is (now) silenced: the proxy went silent, or the
    /// connection sat idle past the idle timeout.
    fn silence_if(&self, shared: &Shared) -> bool {
        if self.silenced.load(Ordering::SeqCst) {
            return true;
        }
        let idle = self.last_byte.lock().unwrap().elapsed();
        let forgotten = shared
            .idle_timeout
            .lock()
            .unwrap()
            .is_some_and(|limit| idle >= limit);
        if forgotten || shared.silent.load(Ordering::SeqCst) {
            self.silenced.store(true, Ordering::SeqCst);
            return true;
        }
        false
    }

    fn touch(&self) {
        *self.last_byte.lock().unwrap() = Instant::now();
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
