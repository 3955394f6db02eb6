//! Hostile HTTP clients against the shared `serve`: raw TCP clients that trickle their
//! headers (slowloris), stall their bodies, park idle connections or send oversized
//! headers. Each must cost the service a bounded time and never lock out a client
//! that behaves.

use axum::{body::Body, extract::Extension, routing::post, Router};
use futures_util::StreamExt;
use loa_platform::http::{serve, serve::BodyDeadline, HttpSettings, JsonBody};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

/// Short limits, so the test takes seconds.
fn limits() -> HttpSettings {
    HttpSettings {
        header_timeout_secs: 1,
        body_timeout_secs: 1,
        max_header_bytes: 8192,
        max_connections: 4,
        ..HttpSettings::default()
    }
}

struct Server {
    addr: std::net::SocketAddr,
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(settings: HttpSettings) -> Self {
        async fn echo(JsonBody(v): JsonBody<Value>) -> axum::Json<Value> {
            axum::Json(v)
        }
        /// Counts a body's bytes as they stream in, its deadline renewed per chunk.
        async fn count(Extension(deadline): Extension<BodyDeadline>, body: Body) -> String {
            deadline.renew_per_chunk();
            let mut stream = body.into_data_stream();
            let mut n = 0;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) => n += bytes.len(),
                    Err(e) if loa_platform::http::serve::is_body_timeout(&e) => {
                        return "body_timeout".to_owned()
                    }
                    Err(e) => return e.to_string(),
                }
            }
            format!("{n} bytes")
        }
        let router = Router::new()
            .route("/echo", post(echo))
            .route("/count", post(count))
            .merge(loa_platform::http::ops_router(
                loa_platform::http::Readiness::new(),
            ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let handle = tokio::spawn(async move { serve(listener, router, c, &settings).await });
        Self {
            addr,
            cancel,
            handle,
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.handle)
            .await
            .expect("the server stops within 5 s")
            .unwrap()
            .unwrap();
    }
}

/// Reads until the peer closes (or `limit` passes): what it answered.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

async fn healthz(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("answered")
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off_after_the_header_timeout() {
    // Arrange
    let server = Server::start(limits()).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let started = Instant::now();

    // Act: one header byte every 200 ms, for up to 5 s.
    let mut closed_at = None;
    for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaa".iter().cycle().take(25) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow.write_all(&[*byte]).await.is_err() {
            closed_at = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 256];
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await
        {
            closed_at = Some(started.elapsed());
            break;
        }
    }

    // Assert: closed after about one second, not after five.
    let closed_at = closed_at.expect("the slow client was cut off");
    assert!(closed_at < Duration::from_secs(3), "{closed_at:?}");
    assert!(healthz(server.addr).await.starts_with("HTTP/1.1 200"));
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_stalls_ends_its_request_with_408() {
    // Arrange
    let server = Server::start(limits()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();

    // Act: ten bytes of a hundred, then nothing.
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"a\": \"bbb",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("the connection ends");

    // Assert
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"body_timeout\""), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
    server.stop().await;
}

/// Sends `chunks` chunks of ten bytes to `path`, one every `every`, then ends the
/// body (chunked encoding); what the server answered.
async fn send_slowly(
    addr: std::net::SocketAddr,
    path: &str,
    chunks: usize,
    every: Duration,
) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..chunks {
        tokio::time::sleep(every).await;
        if s.write_all(b"a\r\n0123456789\r\n").await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("the connection ends")
}

#[tokio::test]
async fn a_streaming_route_may_take_longer_than_the_body_timeout_while_its_body_keeps_flowing() {
    // Arrange: a 1 s body timeout; bodies that take 2.5 s, a chunk every 250 ms.
    let server = Server::start(limits()).await;
    let every = Duration::from_millis(250);

    // Act
    let streamed = send_slowly(server.addr, "/count", 10, every).await;
    let whole = send_slowly(server.addr, "/echo", 10, every).await;
    let stalled = send_slowly(server.addr, "/count", 1, Duration::from_millis(2_500)).await;

    // Assert: the renewing route read all 100 bytes; the other still has its
    // whole-body deadline; a gap longer than the timeout still ends the body.
    assert!(streamed.starts_with("HTTP/1.1 200"), "{streamed}");
    assert!(streamed.ends_with("100 bytes"), "{streamed}");
    assert!(whole.starts_with("HTTP/1.1 408"), "{whole}");
    assert!(stalled.ends_with("body_timeout"), "{stalled}");
    server.stop().await;
}

#[tokio::test]
async fn oversized_headers_are_refused_with_431() {
    // Arrange
    let server = Server::start(limits()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let big = "a".repeat(64 * 1024);

    // Act
    let request = format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n");
    let _ = s.write_all(request.as_bytes()).await;
    let answer = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("the connection ends");

    // Assert
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_beyond_the_limit_do_not_lock_out_a_real_client() {
    // Arrange: twice as many idle connections as the listener holds.
    let server = Server::start(limits()).await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }

    // Act: a real client arrives while they sit there.
    let started = Instant::now();
    let answer = healthz(server.addr).await;

    // Assert: served once the idle ones were timed out (about a second each round).
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let mut closed = 0;
    for mut s in idle {
        if read_until_closed(&mut s, Duration::from_secs(5))
            .await
            .is_some()
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 8, "every idle connection is closed by the server");
    server.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_that_goes_quiet_is_closed() {
    // Arrange
    let server = Server::start(limits()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    // Act: say nothing more.
    let started = Instant::now();
    let rest = read_until_closed(&mut s, Duration::from_secs(5)).await;

    // Assert
    assert!(rest.is_some(), "the server closed the quiet connection");
    assert!(started.elapsed() < Duration::from_secs(3));
    server.stop().await;
}

#[tokio::test]
async fn metrics_moved_to_their_own_listener_are_not_served_on_the_service_port() {
    // Arrange
    let server = Server::start(HttpSettings {
        metrics_bind: Some("127.0.0.1:0".into()),
        ..limits()
    })
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();

    // Act
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .unwrap();

    // Assert
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    server.stop().await;
}
