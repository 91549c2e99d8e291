//! A loopback HTTP server with canned, possibly hostile, replies: it plays a registry, a token
//! server or a file server that sends endless bodies, announces huge sizes or goes silent.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::TestkitError;

/// What the canned server sends for one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete answer.
    Full {
        /// The status code.
        status: u16,
        /// Extra headers (`Content-Length` and `Connection: close` are always sent).
        headers: Vec<(String, String)>,
        /// The body (not sent to a `HEAD`).
        body: Vec<u8>,
    },
    /// `200` with a chunked body that never ends (until the client hangs up).
    Endless {
        /// The status code.
        status: u16,
    },
    /// `200` announcing `length` bytes, then nothing: the client must refuse it unread.
    Announce {
        /// The announced `Content-Length`.
        length: u64,
    },
    /// Reads the request and never answers.
    Silent,
}

impl Reply {
    /// `200` with `Content-Type: content_type` and `body`.
    pub fn ok(content_type: &str, body: Vec<u8>) -> Reply {
        Reply::Full {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
        }
    }

    /// `status` with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply::Full {
            status,
            headers: vec![],
            body: vec![],
        }
    }
}

type Handler = dyn Fn(&str, &str) -> Reply + Send + Sync;

/// A loopback HTTP/1.1 server with one connection per request (`Connection: close`), answering
/// each request with what its handler returns for `(method, path)`. A TLS `ClientHello` is
/// hung up on, so clients that probe HTTPS first fall back to plain HTTP at once.
pub struct CannedServer {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl CannedServer {
    /// Starts serving on a free loopback port; stops answering when dropped.
    pub fn start(
        handler: impl Fn(&str, &str) -> Reply + Send + Sync + 'static,
    ) -> Result<CannedServer, TestkitError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| TestkitError::io("binding a loopback port for the canned server", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| TestkitError::io("the canned server's address", e))?
            .port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (seen, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (handler, seen, stopped) = (handler.clone(), seen.clone(), stopped.clone());
                std::thread::spawn(move || serve(conn, &*handler, &seen, &stopped));
            }
        });
        Ok(CannedServer {
            port,
            requests,
            stop,
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `METHOD /path` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for CannedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(mut conn: TcpStream, handler: &Handler, seen: &Mutex<Vec<String>>, stop: &AtomicBool) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
        // A TLS ClientHello (the client probes HTTPS first on loopback): hang up.
        if head == [0x16] {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!("{method} {path}"));
    match handler(method, path) {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut text = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                text.push_str(&format!("{k}: {v}\r\n"));
            }
            text.push_str("\r\n");
            let _ = conn.write_all(text.as_bytes());
            if method != "HEAD" {
                let _ = conn.write_all(&body);
            }
        }
        Reply::Endless { status } => {
            let _ = conn.write_all(
                format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            let chunk = vec![b'['; 64 << 10];
            let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
            frame.extend_from_slice(&chunk);
            frame.extend_from_slice(b"\r\n");
            while !stop.load(Ordering::SeqCst) && conn.write_all(&frame).is_ok() {}
        }
        Reply::Announce { length } => {
            let _ = conn.write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n").as_bytes(),
            );
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Reply::Silent => {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
