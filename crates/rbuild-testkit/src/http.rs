//! Just enough HTTP/1.1 framing for the token issuer and the fault proxy: request and
//! response heads, and bodies by `Content-Length`, chunked encoding or connection close.

use std::io::{self, BufRead, Read, Write};

/// A request or response head as received, with its raw bytes for forwarding.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    /// `GET /v2/ HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub start_line: String,
    /// Header names (lower-cased) and values.
    pub headers: Vec<(String, String)>,
    /// The head exactly as received, including the blank line.
    pub raw: Vec<u8>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    /// The method and target of a request head.
    pub fn method_and_path(&self) -> (String, String) {
        let mut parts = self.start_line.split(' ');
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("").to_owned();
        (method, path)
    }

    /// The status of a response head.
    pub fn status(&self) -> u16 {
        self.start_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// How a body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

pub(crate) fn request_body_kind(head: &Head) -> BodyKind {
    if head.is_chunked() {
        BodyKind::Chunked
    } else {
        match head.content_length() {
            Some(0) | None => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
        }
    }
}

pub(crate) fn response_body_kind(head: &Head, request_method: &str) -> BodyKind {
    let status = head.status();
    if request_method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
        BodyKind::Empty
    } else if head.is_chunked() {
        BodyKind::Chunked
    } else {
        match head.content_length() {
            Some(0) => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
            None => BodyKind::UntilClose,
        }
    }
}

/// Reads a head; `Ok(None)` on a clean end of stream before any byte. Anything that does not
/// start like HTTP (e.g. a TLS ClientHello) is an `InvalidData` error.
pub(crate) fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.take(64 << 10).read_until(b'\n', &mut line)?;
        if n == 0 {
            if raw.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "head cut short",
            ));
        }
        if raw.is_empty() && !line[0].is_ascii_uppercase() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not HTTP"));
        }
        raw.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if raw.len() > 256 << 10 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.lines();
    let start_line = lines.next().unwrap_or("").trim().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Some(Head {
        start_line,
        headers,
        raw,
    }))
}

/// The result of copying a body with a byte budget.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Copied {
    Complete,
    /// The budget ran out before the end of the body.
    Cut,
}

/// Copies a body of `kind` from `reader` to `writer`; stops after `budget` bytes if given.
pub(crate) fn copy_body(
    reader: &mut impl BufRead,
    writer: &mut impl Write,
    kind: BodyKind,
    budget: Option<u64>,
) -> io::Result<Copied> {
    let mut budget = budget;
    let mut forward = |writer: &mut dyn Write, data: &[u8]| -> io::Result<bool> {
        match budget.as_mut() {
            Some(left) if (data.len() as u64) >= *left => {
                writer.write_all(&data[..*left as usize])?;
                writer.flush()?;
                *left = 0;
                Ok(false)
            }
            Some(left) => {
                *left -= data.len() as u64;
                writer.write_all(data)?;
                Ok(true)
            }
            None => {
                writer.write_all(data)?;
                Ok(true)
            }
        }
    };
    let mut buf = vec![0u8; 64 << 10];
    match kind {
        BodyKind::Empty => {}
        BodyKind::Length(mut left) => {
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "body cut short",
                    ));
                }
                left -= n as u64;
                if !forward(writer, &buf[..n])? {
                    return Ok(Copied::Cut);
                }
            }
        }
        BodyKind::UntilClose => loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if !forward(writer, &buf[..n])? {
                return Ok(Copied::Cut);
            }
        },
        BodyKind::Chunked => loop {
            let mut size_line = Vec::new();
            reader.read_until(b'\n', &mut size_line)?;
            if !forward(writer, &size_line)? {
                return Ok(Copied::Cut);
            }
            let text = String::from_utf8_lossy(&size_line);
            let size = u64::from_str_radix(text.trim().split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers until the blank line.
                loop {
                    let mut line = Vec::new();
                    reader.read_until(b'\n', &mut line)?;
                    if !forward(writer, &line)? {
                        return Ok(Copied::Cut);
                    }
                    if line == b"\r\n" || line == b"\n" || line.is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut left = size + 2; // data + CRLF
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "chunk cut short",
                    ));
                }
                left -= n as u64;
                if !forward(writer, &buf[..n])? {
                    return Ok(Copied::Cut);
                }
            }
        },
    }
    writer.flush()?;
    Ok(Copied::Complete)
}

/// Writes a small complete response.
pub(crate) fn write_response(
    writer: &mut impl Write,
    status: u16,
    reason: &str,
    extra_headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(body)?;
    writer.flush()
}

/// Accepts connections on `listener` until `stop` is set (the owner then connects once to wake
/// the loop), handling each on its own thread with `handle`. An error ends that connection
/// only: the client sees it as it should.
pub(crate) fn spawn_accept_loop<S: Send + Sync + 'static>(
    listener: std::net::TcpListener,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    state: std::sync::Arc<S>,
    handle: fn(&S, std::net::TcpStream) -> io::Result<()>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let state = std::sync::Arc::clone(&state);
            std::thread::spawn(move || {
                let _ = handle(&state, stream);
            });
        }
    })
}
