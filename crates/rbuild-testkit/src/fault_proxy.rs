//! An HTTP/1.1 proxy that sits between a client and a real registry and injects faults into
//! the first N requests that match a rule: error statuses (with `Retry-After`), connections
//! dropped in the middle of a response body, stalls, and connections closed before answering.

use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::http::{
    copy_body, read_head, request_body_kind, response_body_kind, write_response, Copied,
};
use crate::TestkitError;

/// What to do to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status without asking the registry (`Retry-After` seconds if given).
    Status {
        /// The status, e.g. 500, 503, 429.
        code: u16,
        /// A `Retry-After` header value in seconds.
        retry_after: Option<u64>,
    },
    /// Forward the request, then cut the connection after this many response body bytes.
    DropResponseAfter(u64),
    /// Forward the request, send this many response body bytes, then go silent for the given
    /// time before closing (a stalled connection).
    StallResponse {
        /// Body bytes sent before the stall.
        after_bytes: u64,
        /// How long nothing is sent.
        duration: Duration,
    },
    /// Close the connection as soon as the request head arrives.
    CloseBeforeResponse,
    /// Forward the request without its `Range` header, like a server that cannot resume.
    IgnoreRange,
    /// Take the request (body included) and answer nothing for the given time, then close.
    StallBeforeResponse(Duration),
    /// Answer this status with this registry error (`{"errors":[{"code","message"}]}`)
    /// without asking the registry, as a registry with immutable tags refuses a manifest.
    ErrorBody {
        /// The status, e.g. 400.
        code: u16,
        /// The error code, e.g. `TAG_INVALID`.
        error_code: String,
        /// The error message.
        message: String,
    },
}

/// A fault applied to the first `times` requests whose method and path match.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// The method to match (`None`: any).
    pub method: Option<String>,
    /// A substring the request target must contain (`None`: any).
    pub path_contains: Option<String>,
    /// The fault.
    pub fault: Fault,
    /// How many matching requests get it.
    pub times: usize,
    /// How many matching requests pass untouched before the fault applies
    /// ([`FaultRule::after`]).
    pub skip: usize,
}

impl FaultRule {
    /// A rule for `method` requests whose path contains `path_contains`.
    pub fn new(method: &str, path_contains: &str, fault: Fault, times: usize) -> FaultRule {
        FaultRule {
            method: Some(method.to_owned()),
            path_contains: Some(path_contains.to_owned()),
            fault,
            times,
            skip: 0,
        }
    }

    /// The same rule, applied only after `n` matching requests went through untouched (to
    /// break an upload in the middle: the third `PATCH`, not the first).
    pub fn after(mut self, n: usize) -> FaultRule {
        self.skip = n;
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.times > 0
            && self.method.as_deref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

struct Shared {
    upstream: SocketAddr,
    rules: Mutex<Vec<FaultRule>>,
    events: Mutex<Vec<String>>,
}

impl Shared {
    fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let rule = rules.iter_mut().find(|r| r.matches(method, path))?;
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        rule.times -= 1;
        Some(rule.fault.clone())
    }

    fn log(&self, event: String) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }
}

/// The running proxy (plain HTTP on a loopback port); stops accepting when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` with `rules` (first matching rule wins).
    pub fn start(upstream: SocketAddr, rules: Vec<FaultRule>) -> Result<FaultProxy, TestkitError> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| TestkitError::io("bind proxy", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| TestkitError::io("proxy address", e))?;
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::new(rules),
            events: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = crate::http::spawn_accept_loop(listener, stop.clone(), shared.clone(), handle);
        Ok(FaultProxy {
            addr,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:PORT`, to use as the registry host.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// What the proxy saw and did, one line per request (`PUT /v2/… -> 503 injected`).
    pub fn events(&self) -> Vec<String> {
        self.shared
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The events once `done` holds for them, or when `timeout` has passed: a response is
    /// logged after its last byte is sent, which the client may have read (and returned)
    /// before the proxy's thread gets to log it.
    pub fn events_when(
        &self,
        done: impl Fn(&[String]) -> bool,
        timeout: std::time::Duration,
    ) -> Vec<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let events = self.events();
            if done(&events) || std::time::Instant::now() >= deadline {
                return events;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// How many injected faults are still to come.
    pub fn faults_left(&self) -> usize {
        self.shared
            .rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|r| r.times)
            .sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(shared: &Shared, client: TcpStream) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut client_writer = client.try_clone()?;
    let mut client_reader = BufReader::with_capacity(64 << 10, client.try_clone()?);
    let mut upstream: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut sink = std::io::sink();
    loop {
        let Some(head) = read_head(&mut client_reader)? else {
            return Ok(());
        };
        let (method, path) = head.method_and_path();
        let fault = shared.take_fault(&method, &path);
        // Shown in events so tests can see resumed downloads.
        let path = match head.header("range") {
            Some(range) => format!("{path} range={range}"),
            None => path,
        };
        let request_body = request_body_kind(&head);
        match &fault {
            Some(Fault::Status { code, retry_after }) => {
                copy_body(&mut client_reader, &mut sink, request_body, None)?;
                let mut headers = vec![("Content-Type", "application/json".to_owned())];
                if let Some(seconds) = retry_after {
                    headers.push(("Retry-After", seconds.to_string()));
                }
                let body = format!(
                    r#"{{"errors":[{{"code":"UNAVAILABLE","message":"injected {code}"}}]}}"#
                );
                shared.log(format!("{method} {path} -> {code} injected"));
                write_response(
                    &mut client_writer,
                    *code,
                    "Injected",
                    &headers,
                    body.as_bytes(),
                )?;
                continue;
            }
            Some(Fault::ErrorBody {
                code,
                error_code,
                message,
            }) => {
                copy_body(&mut client_reader, &mut sink, request_body, None)?;
                let body =
                    serde_json::json!({"errors": [{"code": error_code, "message": message}]})
                        .to_string();
                shared.log(format!("{method} {path} -> {code} {error_code} injected"));
                write_response(
                    &mut client_writer,
                    *code,
                    "Injected",
                    &[("Content-Type", "application/json".to_owned())],
                    body.as_bytes(),
                )?;
                continue;
            }
            Some(Fault::StallBeforeResponse(duration)) => {
                copy_body(&mut client_reader, &mut sink, request_body, None)?;
                shared.log(format!(
                    "{method} {path} -> stalled before response injected"
                ));
                std::thread::sleep(*duration);
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            Some(Fault::CloseBeforeResponse) => {
                shared.log(format!("{method} {path} -> closed injected"));
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            _ => {}
        }
        if upstream.is_none() {
            let stream = TcpStream::connect(shared.upstream)?;
            stream.set_read_timeout(Some(Duration::from_secs(60)))?;
            let reader = BufReader::with_capacity(64 << 10, stream.try_clone()?);
            upstream = Some((stream, reader));
        }
        let Some((up_writer, up_reader)) = upstream.as_mut() else {
            return Ok(());
        };
        if fault == Some(Fault::IgnoreRange) {
            up_writer.write_all(&without_header(&head.raw, "range"))?;
        } else {
            up_writer.write_all(&head.raw)?;
        }
        copy_body(&mut client_reader, up_writer, request_body, None)?;
        up_writer.flush()?;
        let Some(response) = read_head(up_reader)? else {
            return Ok(());
        };
        client_writer.write_all(&response.raw)?;
        let kind = response_body_kind(&response, &method);
        let budget = match &fault {
            Some(Fault::DropResponseAfter(n)) => Some(*n),
            Some(Fault::StallResponse { after_bytes, .. }) => Some(*after_bytes),
            _ => None,
        };
        let copied = copy_body(up_reader, &mut client_writer, kind, budget)?;
        if copied == Copied::Cut {
            if let Some(Fault::StallResponse { duration, .. }) = &fault {
                shared.log(format!("{method} {path} -> stalled injected"));
                std::thread::sleep(*duration);
            } else {
                shared.log(format!("{method} {path} -> dropped injected"));
            }
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        shared.log(format!("{method} {path} -> {}", response.status()));
        if response.wants_close() || head.wants_close() {
            return Ok(());
        }
    }
}

/// The raw head without header `name` (case-insensitive).
fn without_header(raw: &[u8], name: &str) -> Vec<u8> {
    let prefix = format!("{name}:");
    let text = String::from_utf8_lossy(raw);
    text.split_inclusive('\n')
        .filter(|line| !line.to_ascii_lowercase().starts_with(&prefix))
        .collect::<String>()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_header_is_removed() {
        let raw = b"GET /x HTTP/1.1\r\nHost: h\r\nRange: bytes=5-\r\n\r\n";
        assert_eq!(
            without_header(raw, "range"),
            b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()
        );
    }
}
