//! Load-generator clients: framing replies, blocking and async connections, the
//! request lines of each path, and the stock client's re-parse reassembly.
//!
//! Every path's reply is framed the same way, by [`Scanner`]: an incremental scan for
//! the end of one top-level JSON object (string-aware, `memchr` inside strings), so
//! no path is favoured by a cheaper delimiter. Each byte is looked at once.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use memchr::{memchr2, memmem};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// I/O timeout of every bench socket operation: nothing waits forever.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Finds where one top-level JSON object or array ends; keeps its place between reads.
#[derive(Default, Debug)]
pub struct Scanner {
    pos: usize,
    depth: u32,
    in_str: bool,
    esc: bool,
}

impl Scanner {
    /// Scans `buf[self.pos..]`; returns the end (exclusive) of the value once it closes
    /// and resets for the next one. Bytes before the opening bracket are skipped.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, &'static str> {
        let mut i = self.pos;
        while i < buf.len() {
            if self.in_str {
                if self.esc {
                    self.esc = false;
                    i += 1;
                    continue;
                }
                match memchr2(b'"', b'\\', &buf[i..]) {
                    None => i = buf.len(),
                    Some(k) => {
                        i += k;
                        if buf[i] == b'\\' {
                            self.esc = true;
                        } else {
                            self.in_str = false;
                        }
                        i += 1;
                    }
                }
                continue;
            }
            let c = buf[i];
            i += 1;
            match c {
                b'"' if self.depth > 0 => self.in_str = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    if self.depth == 0 {
                        return Err("unbalanced closing bracket");
                    }
                    self.depth -= 1;
                    if self.depth == 0 {
                        *self = Scanner::default();
                        return Ok(Some(i));
                    }
                }
                b' ' | b'\n' | b'\r' | b'\t' => {}
                _ if self.depth == 0 => return Err("bytes outside a JSON object"),
                _ => {}
            }
        }
        self.pos = i;
        Ok(None)
    }
}

/// A reassembly buffer: reads land after `filled`; a framed reply is cut from the front.
pub struct ReadBuf {
    buf: Vec<u8>,
    filled: usize,
    scanner: Scanner,
}

impl ReadBuf {
    pub fn new() -> Self {
        ReadBuf {
            buf: vec![0; 64 * 1024],
            filled: 0,
            scanner: Scanner::default(),
        }
    }

    /// Room to read into (grown by doubling; zeroed once, when allocated).
    fn spare(&mut self) -> &mut [u8] {
        if self.buf.len() - self.filled < 16 * 1024 {
            let new_len = self.buf.len() * 2;
            self.buf.resize(new_len, 0);
        }
        &mut self.buf[self.filled..]
    }

    /// The length of the complete reply at the front, if one is buffered.
    fn complete(&mut self) -> io::Result<Option<usize>> {
        self.scanner
            .scan(&self.buf[..self.filled])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Drops the first `n` bytes (a reply just handled).
    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    pub fn front(&self, n: usize) -> &[u8] {
        &self.buf[..n]
    }
}

impl Default for ReadBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// How each path's reply says "success" (checked on every reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The addon envelope `{"status":"success",...}` (direct, HAProxy, compat).
    Addon,
    /// A JSON-RPC `send_command` success: `"result":{"status":"success"`.
    Rpc,
}

impl Expect {
    pub fn ok(self, reply: &[u8]) -> bool {
        let head = &reply[..reply.len().min(160)];
        match self {
            Expect::Addon => status_is_success(head),
            Expect::Rpc => memmem::find(head, b"\"result\":{\"status\":\"success\"").is_some(),
        }
    }
}

/// `"status"`, optional whitespace, `:`, optional whitespace, `"success"` (compact or
/// Python's `json.dumps` spacing).
fn status_is_success(head: &[u8]) -> bool {
    let Some(at) = memmem::find(head, b"\"status\"") else {
        return false;
    };
    let rest = &head[at + 8..];
    let skip = |b: &[u8]| b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    let rest = &rest[skip(rest)..];
    let Some(rest) = rest.strip_prefix(b":") else {
        return false;
    };
    rest[skip(rest)..].starts_with(b"\"success\"")
}

/// A blocking keep-alive connection (latency and big-reply cells).
pub struct Conn {
    pub stream: TcpStream,
    rb: ReadBuf,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn {
            stream,
            rb: ReadBuf::new(),
        })
    }

    /// Sends one request and reads one framed reply; returns its length, and
    /// whether `expect` holds for it.
    pub fn roundtrip(&mut self, req: &[u8], expect: Expect) -> io::Result<(usize, bool)> {
        self.stream.write_all(req)?;
        self.read_reply(expect)
    }

    pub fn read_reply(&mut self, expect: Expect) -> io::Result<(usize, bool)> {
        loop {
            if let Some(n) = self.rb.complete()? {
                let ok = expect.ok(self.rb.front(n));
                self.rb.consume(n);
                return Ok((n, ok));
            }
            let got = self.stream.read(self.rb.spare())?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a complete reply",
                ));
            }
            self.rb.filled += got;
        }
    }

    /// Sends one request and returns the reply parsed (setup calls, not timed).
    pub fn call_value(&mut self, req: &[u8]) -> io::Result<serde_json::Value> {
        self.stream.write_all(req)?;
        loop {
            if let Some(n) = self.rb.complete()? {
                let v = serde_json::from_slice(self.rb.front(n))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                self.rb.consume(n);
                return Ok(v);
            }
            let got = self.stream.read(self.rb.spare())?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a complete reply",
                ));
            }
            self.rb.filled += got;
        }
    }
}

/// An async keep-alive connection (throughput cells).
pub struct AsyncConn {
    stream: tokio::net::TcpStream,
    rb: ReadBuf,
}

impl AsyncConn {
    pub async fn connect(addr: SocketAddr) -> io::Result<AsyncConn> {
        let stream = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(AsyncConn {
            stream,
            rb: ReadBuf::new(),
        })
    }

    async fn exchange(&mut self, req: &[u8]) -> io::Result<usize> {
        self.stream.write_all(req).await?;
        loop {
            if let Some(n) = self.rb.complete()? {
                return Ok(n);
            }
            let got = self.stream.read(self.rb.spare()).await?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a complete reply",
                ));
            }
            self.rb.filled += got;
        }
    }

    /// One request, one framed reply, bounded by [`IO_TIMEOUT`].
    pub async fn roundtrip(&mut self, req: &[u8], expect: Expect) -> io::Result<bool> {
        let n = tokio::time::timeout(IO_TIMEOUT, self.exchange(req))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply in time"))??;
        let ok = expect.ok(self.rb.front(n));
        self.rb.consume(n);
        Ok(ok)
    }

    pub async fn call_value(&mut self, req: &[u8]) -> io::Result<serde_json::Value> {
        let n = tokio::time::timeout(IO_TIMEOUT, self.exchange(req))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply in time"))??;
        let v = serde_json::from_slice(self.rb.front(n))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.rb.consume(n);
        Ok(v)
    }
}

/// The addon request line for `command` (newline-terminated, as the manager sends it).
pub fn addon_request(command: &str) -> Vec<u8> {
    format!("{{\"type\":\"{command}\",\"params\":{{}}}}\n").into_bytes()
}

/// The stock client's request: `json.dumps({"type": ..., "params": {}})`, no newline.
pub fn stock_request(command: &str) -> Vec<u8> {
    format!("{{\"type\": \"{command}\", \"params\": {{}}}}").into_bytes()
}

/// A JSON-RPC request line.
pub fn rpc_request(id: u64, method: &str, params: &serde_json::Value) -> Vec<u8> {
    let mut v = serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0", "id": id, "method": method, "params": params,
    }))
    .expect("serialises");
    v.push(b'\n');
    v
}

/// `send_command` on `session` (the line sent for every JSON-RPC command).
pub fn rpc_send_command(session: &str, command: &str) -> Vec<u8> {
    rpc_request(
        1,
        "send_command",
        &serde_json::json!({"session_id": session, "command_type": command, "params": {}}),
    )
}

/// The `result` of a JSON-RPC reply, or its error as an `io::Error`.
pub fn rpc_result(reply: serde_json::Value) -> io::Result<serde_json::Value> {
    match reply.get("result") {
        Some(r) => Ok(r.clone()),
        None => Err(io::Error::other(format!(
            "JSON-RPC error: {}",
            reply["error"]
        ))),
    }
}

/// `create_session` over a blocking connection; returns the session id.
pub fn create_session(conn: &mut Conn) -> io::Result<String> {
    let r =
        rpc_result(conn.call_value(&rpc_request(1, "create_session", &serde_json::json!({})))?)?;
    r["session_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| io::Error::other("create_session: no session_id"))
}

pub async fn create_session_async(conn: &mut AsyncConn) -> io::Result<String> {
    let r = rpc_result(
        conn.call_value(&rpc_request(1, "create_session", &serde_json::json!({})))
            .await?,
    )?;
    r["session_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| io::Error::other("create_session: no session_id"))
}

pub async fn close_session_async(conn: &mut AsyncConn, id: &str) -> io::Result<()> {
    rpc_result(
        conn.call_value(&rpc_request(
            2,
            "close_session",
            &serde_json::json!({"session_id": id}),
        ))
        .await?,
    )
    .map(|_| ())
}

/// The stock-style baseline: connect, send, read one reply, close; per request.
pub fn reconnect_roundtrip(addr: SocketAddr, req: &[u8], rb: &mut ReadBuf) -> io::Result<bool> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(req)?;
    loop {
        if let Some(n) = rb.complete()? {
            let ok = Expect::Addon.ok(rb.front(n));
            rb.consume(n);
            return Ok(ok);
        }
        let got = stream.read(rb.spare())?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a complete reply",
            ));
        }
        rb.filled += got;
    }
}

/// blender-mcp 1.6.5's `send_command` + `receive_full_response`, in Rust, step for
/// step: `sendall(json.dumps(command))`; then per `recv(8192)`: append the chunk,
/// `b''.join(chunks)`, `.decode('utf-8')`, `json.loads` — return on the first parse
/// that succeeds — and finally `json.loads(response_data.decode('utf-8'))` once more.
/// Returns the reply size and the number of reads.
pub fn stock_reparse_roundtrip(
    stream: &mut TcpStream,
    command: &str,
) -> io::Result<(usize, usize)> {
    stream.write_all(&stock_request(command))?;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut chunk = vec![0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(600);
    let data = loop {
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "stock re-parse over 600 s",
            ));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a complete reply",
            ));
        }
        chunks.push(chunk[..n].to_vec());
        let data: Vec<u8> = chunks.concat();
        let text = String::from_utf8(data.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if serde_json::from_str::<serde_json::Value>(&text).is_ok() {
            break data;
        }
    };
    let text = String::from_utf8(data.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let response: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if response["status"] != "success" {
        return Err(io::Error::other("stock client: reply is not a success"));
    }
    Ok((data.len(), chunks.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_frames_split_and_back_to_back_values() {
        let mut s = Scanner::default();
        let a = br#"{"status":"success","result":{"s":"a\"}b{"}}"#;
        assert_eq!(s.scan(&a[..10]).unwrap(), None);
        assert_eq!(s.scan(&a[..30]).unwrap(), None);
        assert_eq!(s.scan(a).unwrap(), Some(a.len()));
        let two = b"\n{\"a\":[1,{}]}\n{}";
        let end = s.scan(two).unwrap().unwrap();
        assert_eq!(&two[..end], b"\n{\"a\":[1,{}]}");
        assert_eq!(s.scan(&two[end..]).unwrap(), Some(3));
        assert!(Scanner::default().scan(b"x").is_err());
    }
}
