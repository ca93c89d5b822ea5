//! A minimal HTTP/1.x server for `GET /metrics`: one request per
//! connection, answered and closed.
use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpListener,
    task::{JoinHandle, JoinSet},
    time::timeout,
};

use super::Metrics;

/// What Prometheus asks for first and parses as OpenMetrics.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The longest request head (request line and headers) read.
const MAX_HEAD: usize = 8 << 10;
/// How long a client may take to send its request head, and to take the
/// response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed as soon as accepted.
const MAX_CONNECTIONS: usize = 16;
/// After answering, how long and how much of the client's leftover input
/// is read and discarded, so closing does not reset the connection before
/// the client has read the response.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 << 10;

/// Serves `GET /metrics` on `addr` until the returned task is aborted (or
/// the runtime stops); aborting it also ends the connections in progress.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(accept_loop(listener, metrics)))
}

async fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>) {
    // Dropped with this task, which aborts every connection task.
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors, or the peer gave up: wait, retry.
                log::warn!("metrics: accepting a connection: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_CONNECTIONS {
            continue; // dropping the stream closes it
        }
        let metrics = Arc::clone(&metrics);
        connections.spawn(async move {
            if let Err(err) = handle(stream, &metrics).await {
                log::debug!("metrics: connection: {err}");
            }
        });
    }
}

/// Reads one request from `stream`, answers it and closes.
async fn handle<S>(mut stream: S, metrics: &Metrics) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = Vec::with_capacity(1024);
    let response = match timeout(IO_TIMEOUT, read_head(&mut stream, &mut head)).await {
        Err(_) => Response::error(408, "Request Timeout"),
        Ok(Err(err)) => return Err(err),
        Ok(Ok(Head::Closed)) => return Ok(()),
        Ok(Ok(Head::TooLarge)) => Response::error(431, "Request Header Fields Too Large"),
        Ok(Ok(Head::Complete(len))) => match route(&head[..len]) {
            Route::Metrics => Response {
                status: (200, "OK"),
                content_type: CONTENT_TYPE,
                body: metrics.encode(),
            },
            Route::NotFound => Response::error(404, "Not Found"),
            Route::MethodNotAllowed => Response {
                // No body: it would be wrong for HEAD.
                body: String::new(),
                ..Response::error(405, "Method Not Allowed")
            },
            Route::BadRequest => Response::error(400, "Bad Request"),
        },
    };
    let bytes = response.to_bytes();
    timeout(IO_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "writing the response"))??;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    let _ = timeout(LINGER, async {
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The head is the first this many bytes of the buffer.
    Complete(usize),
    TooLarge,
    /// The client closed before sending a whole head.
    Closed,
}

/// Reads into `buf` until the blank line ending the request head.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> io::Result<Head> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = head_end(buf) {
            return Ok(Head::Complete(end));
        }
        if buf.len() >= MAX_HEAD {
            return Ok(Head::TooLarge);
        }
        let room = (MAX_HEAD - buf.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The length of the head up to and including its blank line (CRLF, or a
/// bare LF as RFC 9112 allows).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// What to answer to request head `head`; only its request line matters.
fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return Route::BadRequest;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if method.is_empty() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Route::BadRequest;
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path != "/metrics" {
        Route::NotFound
    } else if method != "GET" {
        Route::MethodNotAllowed
    } else {
        Route::Metrics
    }
}

struct Response {
    status: (u16, &'static str),
    content_type: &'static str,
    body: String,
}

impl Response {
    fn error(code: u16, reason: &'static str) -> Response {
        Response {
            status: (code, reason),
            content_type: "text/plain; charset=utf-8",
            body: format!("{reason}\n"),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let (code, reason) = self.status;
        let allow = if code == 405 { "Allow: GET\r\n" } else { "" };
        let mut out = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             {allow}Connection: close\r\n\r\n",
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{DuplexStream, duplex};

    /// Sends `request` to a connection handler; returns the whole response.
    async fn exchange(request: &[u8]) -> String {
        let metrics = Metrics::new();
        let (mut client, server) = duplex(64 << 10);
        let (_, response) = tokio::join!(handle(server, &metrics), async {
            client.write_all(request).await.expect("request");
            client.shutdown().await.expect("shutdown");
            read_all(&mut client).await
        });
        response
    }

    async fn read_all(client: &mut DuplexStream) -> String {
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.expect("response");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn routes() {
        let cases: [(&[u8], Route); 10] = [
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Route::Metrics),
            (b"GET /metrics?name[]=x HTTP/1.0\n\n", Route::Metrics),
            (b"HEAD /metrics HTTP/1.1\r\n\r\n", Route::MethodNotAllowed),
            (b"POST /metrics HTTP/1.1\r\n\r\n", Route::MethodNotAllowed),
            (b"GET / HTTP/1.1\r\n\r\n", Route::NotFound),
            (b"GET /metrics/ HTTP/1.1\r\n\r\n", Route::NotFound),
            (b"GET /metrics HTTP/2.0\r\n\r\n", Route::BadRequest),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", Route::BadRequest),
            (b"GET http://x/metrics HTTP/1.1\r\n\r\n", Route::BadRequest),
            (b"\xff /metrics HTTP/1.1\r\n\r\n", Route::BadRequest),
        ];
        for (head, want) in cases {
            assert_eq!(route(head), want, "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn finds_the_end_of_the_head() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    #[tokio::test]
    async fn serves_metrics() {
        let response = exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (head, body) = response.split_once("\r\n\r\n").expect("head");
        assert_eq!(
            head.lines().collect::<Vec<_>>(),
            [
                "HTTP/1.1 200 OK",
                "Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8",
                &format!("Content-Length: {}", body.len()),
                "Connection: close",
            ]
        );
        assert!(body.contains("\nsocktrace_ring_drops_total 0\n"));
        assert!(body.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn answers_other_requests_with_errors() {
        let status = |r: String| r.lines().next().unwrap_or_default().to_string();
        assert_eq!(
            status(exchange(b"GET /other HTTP/1.1\r\n\r\n").await),
            "HTTP/1.1 404 Not Found"
        );
        let head = exchange(b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(head.contains("\r\nAllow: GET\r\n"));
        assert_eq!(
            status(exchange(b"nonsense\r\n\r\n").await),
            "HTTP/1.1 400 Bad Request"
        );
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 100, b'a');
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            status(exchange(&big).await),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        // A client that closes before a whole head gets no answer.
        assert_eq!(exchange(b"GET /metrics HTTP/1.1\r\n").await, "");
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_a_silent_client() {
        let metrics = Metrics::new();
        let (mut client, server) = duplex(1024);
        let started = tokio::time::Instant::now();
        let (result, response) = tokio::join!(handle(server, &metrics), async {
            client
                .write_all(b"GET /metrics HTTP/1.1\r\n")
                .await
                .expect("write");
            read_all(&mut client).await
        });
        result.expect("handled");
        assert!(response.starts_with("HTTP/1.1 408 Request Timeout\r\n"));
        assert!(started.elapsed() >= IO_TIMEOUT);
    }

    /// A real socket: the server answers, refuses connections beyond its
    /// limit, and stops listening once aborted.
    #[tokio::test]
    async fn serves_on_loopback_within_the_connection_limit() {
        use tokio::net::TcpStream;

        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let server = serve(addr, Arc::new(Metrics::new())).await.expect("serve");
        // Connections that send nothing hold every slot.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut extra = TcpStream::connect(addr).await.expect("connect");
        let mut buf = Vec::new();
        let read = timeout(Duration::from_secs(2), extra.read_to_end(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "connection beyond the limit was not closed: {read:?}"
        );
        drop(idle);
        tokio::time::sleep(Duration::from_millis(100)).await;

        let mut client = TcpStream::connect(addr).await.expect("connect");
        client
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        let mut response = String::new();
        client.read_to_string(&mut response).await.expect("read");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("# EOF\n"));

        server.abort();
        assert!(server.await.expect_err("aborted").is_cancelled());
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    }
}
