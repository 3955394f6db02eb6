//! Listening and serving, the one place every service's HTTP listener goes through,
//! so the defences against hostile clients are the same everywhere:
//!
//! - **headers in time**: a client has [`HttpSettings::header_timeout_secs`] to send a
//!   request's headers, and an idle keep-alive connection is closed after as long
//!   (hyper's header read timer runs while a connection waits for its next request):
//!   a slowloris client that trickles its headers, or parks connections, loses them;
//! - **bodies in time**: a body must arrive whole within
//!   [`HttpSettings::body_timeout_secs`] of the headers; a stalled one ends the request
//!   with `408 body_timeout` and the connection. A route that reads a large body as it
//!   streams in (an import of a million lines) may ask, through the request's
//!   [`BodyDeadline`], for the deadline to be renewed with every chunk instead: the
//!   body must then keep flowing (no gap longer than the timeout), however long it is;
//! - **bounded headers**: at most [`HttpSettings::max_header_bytes`] of request line and
//!   headers (a `431` beyond), and at most 100 header fields;
//! - **bounded connections**: at most [`HttpSettings::max_connections`] open at once;
//!   past that, new connections wait in the kernel's backlog rather than in our memory,
//!   and the limits above make room within seconds.
//!
//! Each request also carries the peer's address (`ConnectInfo<SocketAddr>`) and the
//! client's, resolved through the configured proxy ([`super::client::ClientAddr`]).

use super::client::ProxyTrust;
use axum::{
    body::{Body, Bytes, HttpBody},
    extract::ConnectInfo,
    http::{Request, StatusCode},
    response::IntoResponse,
    Router,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How every service's HTTP listener treats its clients (`[http]`, `LOA_HTTP__*`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct HttpSettings {
    /// Seconds a client has to send a request's headers; also how long an idle
    /// keep-alive connection is kept.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body once its headers arrived.
    pub body_timeout_secs: u64,
    /// Most bytes of request line and headers (at least 8192).
    pub max_header_bytes: usize,
    /// Most connections open at once, per listener.
    pub max_connections: usize,
    /// The header a reverse proxy in front of Loa sets to the client's address
    /// (`x-forwarded-for`, `x-real-ip`); unset, the TCP peer is the client. Read only
    /// from the peers in `trusted_proxies`.
    pub client_ip_header: Option<String>,
    /// The proxies (addresses or networks, `10.0.0.0/8`) whose `client_ip_header` is
    /// believed.
    pub trusted_proxies: Vec<String>,
    /// Serve `/metrics` on this address instead of on each service's own listener
    /// (`LOA_HTTP__METRICS_BIND=127.0.0.1:9100`), so Prometheus can be let in where the
    /// public is not.
    pub metrics_bind: Option<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            max_header_bytes: 16 * 1024,
            max_connections: 1024,
            client_ip_header: None,
            trusted_proxies: vec!["127.0.0.1".into(), "::1".into()],
            metrics_bind: None,
        }
    }
}

impl HttpSettings {
    /// The proxy whose header tells the client's address, checked.
    pub fn proxy_trust(&self) -> Result<ProxyTrust, crate::config::ConfigError> {
        ProxyTrust::new(self.client_ip_header.as_deref(), &self.trusted_proxies).map_err(|e| {
            crate::config::ConfigError::Value {
                key: "http.trusted_proxies".into(),
                why: e.to_string(),
            }
        })
    }
}

/// Why a service could not listen on its address, saying which setting moves it: the
/// message is all an operator sees (`loa run` prints it as one line).
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another process listens there already.
    #[error(
        "{addr} is already in use by another process; stop it, or move {service} with \
         {env}=<host:port> (for example {env}={example})"
    )]
    Taken {
        /// The address asked for.
        addr: SocketAddr,
        /// The service (`intake`).
        service: String,
        /// The environment variable of the setting (`LOA_INTAKE__BIND`).
        env: String,
        /// Another address to suggest.
        example: SocketAddr,
    },
    /// Anything else: a foreign address, a privileged port.
    #[error("cannot listen on {addr} ({source}); set {env}=<host:port>")]
    Other {
        /// The address asked for.
        addr: SocketAddr,
        /// The environment variable of the setting.
        env: String,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Binds a service's HTTP listener on `addr`, the value of the setting `key`
/// (`intake.bind`). A taken port is a [`ListenError`] naming `LOA_INTAKE__BIND`.
pub async fn listen(key: &str, addr: SocketAddr) -> Result<TcpListener, ListenError> {
    let (service, field) = key.split_once('.').unwrap_or((key, ""));
    let env = if field.is_empty() {
        format!("LOA_{}", service.to_uppercase())
    } else {
        format!("LOA_{}__{}", service.to_uppercase(), field.to_uppercase())
    };
    TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            let mut example = addr;
            example.set_port(addr.port().checked_add(10_000).unwrap_or(0));
            ListenError::Taken {
                addr,
                service: service.to_owned(),
                env,
                example,
            }
        } else {
            ListenError::Other { addr, env, source }
        }
    })
}

/// A body that must arrive whole before its deadline (or, once its route asked
/// through [`BodyDeadline`], with no gap between chunks longer than the timeout).
struct TimedBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    per_chunk: Arc<AtomicBool>,
}

/// A request's hold on its body deadline, in its extensions (requests served by
/// [`serve`] have one). A handler that consumes a long body as it streams, writing
/// as it reads, calls [`Self::renew_per_chunk`] so a slow but steady upload is not
/// cut at the whole-body deadline; a stalled one still ends with `408 body_timeout`.
#[derive(Debug, Clone, Default)]
pub struct BodyDeadline {
    per_chunk: Arc<AtomicBool>,
}

impl BodyDeadline {
    /// From now on, every chunk that arrives gives the body another full timeout.
    pub fn renew_per_chunk(&self) {
        self.per_chunk.store(true, Ordering::Relaxed);
    }
}

/// The error a [`TimedBody`] ends with when its client stalls;
/// [`super::JsonBody`] answers it with `408 body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            if matches!(frame, Some(Ok(_))) && self.per_chunk.load(Ordering::Relaxed) {
                let renewed = tokio::time::Instant::now() + self.timeout;
                self.deadline.as_mut().reset(renewed);
            }
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `router` on `listener` with the limits of `settings` until `cancel` fires,
/// then lets in-flight requests finish and closes idle connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
    settings: &HttpSettings,
) -> anyhow::Result<()> {
    let trust = Arc::new(settings.proxy_trust()?);
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let body_timeout = Duration::from_secs(settings.body_timeout_secs.max(1));
    let metrics_moved = settings.metrics_bind.is_some();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(settings.header_timeout_secs.max(1)))
        .max_buf_size(settings.max_header_bytes.max(8192))
        .max_headers(100)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            () = cancel.cancelled() => break,
            permit = slots.clone().acquire_owned() => permit?,
        };
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error.message = %e, "Could not accept a connection.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (router, trust, builder, cancel) = (
            router.clone(),
            trust.clone(),
            builder.clone(),
            cancel.clone(),
        );
        connections.spawn(async move {
            let _permit = permit;
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (mut parts, body) = request.into_parts();
                    let client = trust.client_of(peer.ip(), &parts.headers);
                    parts.extensions.insert(ConnectInfo(peer));
                    parts.extensions.insert(client);
                    let deadline = BodyDeadline::default();
                    let body = Body::new(TimedBody {
                        inner: Body::new(body),
                        deadline: Box::pin(tokio::time::sleep(body_timeout)),
                        timeout: body_timeout,
                        per_chunk: Arc::clone(&deadline.per_chunk),
                    });
                    parts.extensions.insert(deadline);
                    let request = Request::from_parts(parts, body);
                    let router = router.clone();
                    async move {
                        if metrics_moved && request.uri().path() == "/metrics" {
                            return Ok(super::fallback().await.into_response());
                        }
                        router.oneshot(request).await
                    }
                });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = cancel.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error.message = %e, "Connection closed with an error.");
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Whether an extractor's error chain ends in a stalled body ([`BodyTimedOut`]).
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A `408` for a body that did not arrive in time.
pub fn body_timeout_error() -> super::ApiError {
    super::ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        "the request body did not arrive in time",
    )
    .with_field("body")
}
