//! Incremental JSON frame scanner: cuts a byte stream into JSON values.
//!
//! Stock Blender addons reply with bare JSON and no delimiter, callers pipeline requests with or
//! without newlines, and the JSON-RPC port is newline-delimited. Every socket the manager reads goes
//! through [`JsonFrameCodec`], a [`tokio_util::codec::Decoder`] that yields one [`Frame`] per JSON
//! value: either the value's exact bytes ([`JsonFrame`]) or a description of what was wrong with the
//! input ([`FrameError`]). Bad input is never a decoder error (a `FramedRead` stops after one); it is
//! an item, and the stream goes on. `Err` is only ever an I/O error from below.
//!
//! # The state machine
//!
//! The scanner is a pushdown automaton over bytes. Its stack holds the open containers (`{` or `[`,
//! at most 1024 deep); its lexical state says what the next byte may be: a value, an object key or
//! `}`, a `:`, a `,` or a closing bracket, the inside of a string (plain, after a backslash, or within
//! the four hex digits of a `\u` escape), one of the states of the JSON number grammar (after `-`,
//! after a leading `0`, integer digits, after `.`, fraction digits, after `e`, after the exponent
//! sign, exponent digits), or a position inside a literal (`true`, `false`, `null`, and Python's
//! non-finite `NaN`, `Infinity` and `-Infinity`, accepted wherever a value may stand). Each byte
//! either moves the machine forward or is reported, at its offset within the frame, as the first
//! byte where the input stops being JSON. A value closes when the stack is empty again after a
//! string, literal or container; a number closes at the first byte that cannot continue it (that
//! byte is not part of the frame), so a top-level number at the end of the buffered input is left
//! open until more input, or end of input, decides it. A leading zero followed by a digit (`01`) is
//! an error rather than two values, as in JSON. Whitespace (space, tab, carriage return, newline)
//! between values and between tokens is skipped; values may follow each other with no separator.
//!
//! The scanner works on bytes and never validates UTF-8: a multi-byte character is a run of bytes
//! of 0x80 or above, which are ordinary string content, so a character split across two reads is
//! harmless. Raw control characters (below 0x20) inside strings are rejected at the byte where they
//! occur, as JSON requires. Strings, which make up the bulk of large replies (base64 screenshots),
//! are not walked byte by byte: a block scan finds the next `"`, `\` or control byte 32 bytes at a
//! time, a loop the compiler vectorises. Looking for control bytes in that same pass costs next to
//! nothing, so the scanner checks them itself instead of leaving them to the JSON parser later.
//!
//! Each frame records whether it holds non-finite tokens outside strings;
//! [`JsonFrame::strict_bytes`] turns those into `null` so the frame parses as strict JSON.
//!
//! # Newline policies
//!
//! * [`NewlinePolicy::Stream`] (Blender links and the addon-compatible port): a newline is
//!   whitespace like any other; a frame ends when its top-level value closes.
//! * [`NewlinePolicy::Ndjson`] (the JSON-RPC port): every `\n` ends the current frame. A newline
//!   after a complete value (or between values) is whitespace, and it closes a pending top-level
//!   number; a newline reached while a value is still open (including a raw newline inside a
//!   string, which valid JSON can never contain) yields
//!   one `Malformed` error with the reason `incomplete JSON value at end of line`, and the next line
//!   starts clean. Several values on one line, and empty lines, are fine.
//!
//! # Resynchronisation
//!
//! On the first byte that cannot continue the input as JSON, the scanner emits one
//! [`FrameError::Malformed`], drops the partial frame and discards input from that byte through the
//! next newline, the offending byte included (so if the offending byte is itself a newline, as a raw
//! newline inside a string in stream mode is, scanning resumes right after it). If no newline is
//! buffered yet, everything buffered is discarded and the scanner stays in this skipping mode
//! across reads, so skipping holds no memory. Scanning then resumes clean, between values.
//!
//! `max_frame_bytes` bounds a frame: the scanner never looks at more than `max_frame_bytes + 1`
//! bytes of one value. If a value has not closed within `max_frame_bytes` bytes, it yields one
//! [`FrameError::TooLarge`], drops what it buffered of the value and skips through the next
//! newline as above. (If the value closes exactly on its `max_frame_bytes + 1`-th byte, it is
//! reported as too large too, but the scanner is still in step with the input and resumes clean
//! right after it.) So at most about `max_frame_bytes` plus one read of input is ever buffered.
//!
//! At end of input ([`Decoder::decode_eof`]), a pending top-level number is complete and is
//! yielded; any other unfinished value yields one [`FrameError::Truncated`] and is dropped;
//! leftover whitespace or skipped input yields nothing.
//!
//! # Why it is linear
//!
//! All scan state (the offset reached within the buffered frame, the lexical state, the container
//! stack, the string and escape state, the skipping flag) lives in the codec and survives between
//! `decode` calls, so each call starts where the previous one stopped and every input byte is
//! examined once, whatever the split into reads. Nothing backtracks: the one byte a number looks at
//! without consuming (its terminator) is consumed by the next state. A completed frame is cut from
//! the read buffer with `split_to(..).freeze()`, without copying. [`JsonFrameCodec::bytes_scanned`]
//! counts the bytes consumed, which tests use to check that feeding a value in any chunking scans
//! each byte exactly once.

use std::borrow::Cow;
use std::io;

use bytes::{Buf, Bytes, BytesMut};
use memchr::{memchr, memchr2, memchr3};
use tokio_util::codec::Decoder;

/// Deepest container nesting accepted; one more open bracket is `Malformed("nesting too deep")`.
pub const MAX_NESTING_DEPTH: usize = 1024;

/// Reason of the `Malformed` error for a value still open at a newline under [`NewlinePolicy::Ndjson`].
pub const INCOMPLETE_LINE_REASON: &str = "incomplete JSON value at end of line";

/// How newlines are treated between and inside values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewlinePolicy {
    /// Newlines are whitespace; a frame ends when its top-level value closes.
    Stream,
    /// Every `\n` ends the current frame; a value still open there is an error.
    Ndjson,
}

/// The bytes of exactly one JSON value, without surrounding whitespace.
///
/// Equality compares the bytes (and so the non-finite flag); where the frame came
/// from ([`JsonFrame::is_checked`]) does not take part.
#[derive(Clone, Debug)]
pub struct JsonFrame {
    bytes: Bytes,
    nonfinite: bool,
    /// Cut by [`JsonFrameCodec`], whose scan checked the JSON grammar of every byte.
    checked: bool,
}

impl PartialEq for JsonFrame {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes && self.nonfinite == other.nonfinite
    }
}

impl Eq for JsonFrame {}

impl JsonFrame {
    /// Wraps bytes holding one JSON value; computes the non-finite flag by a scan.
    /// Nothing is checked: [`JsonFrame::is_checked`] is `false`.
    pub fn new(bytes: Bytes) -> Self {
        let nonfinite = next_nonfinite(&bytes, 0).is_some();
        JsonFrame {
            bytes,
            nonfinite,
            checked: false,
        }
    }

    /// Whether the frame was cut by [`JsonFrameCodec`], so its bytes are known to be
    /// one value of the JSON grammar (with non-finite tokens allowed; UTF-8, number
    /// ranges and surrogate escapes are not checked). Readers may then skip checks of
    /// their own, which a frame made with [`JsonFrame::new`] does not allow.
    pub fn is_checked(&self) -> bool {
        self.checked
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The frame's bytes, by value.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Whether the frame holds `NaN`, `Infinity` or `-Infinity` tokens outside strings.
    pub fn has_nonfinite(&self) -> bool {
        self.nonfinite
    }

    /// The frame as strict JSON: NaN, Infinity and -Infinity outside strings replaced by `null`.
    /// Borrowed (no copy) when the frame has none.
    pub fn strict_bytes(&self) -> Cow<'_, [u8]> {
        if !self.nonfinite {
            return Cow::Borrowed(&self.bytes[..]);
        }
        let b = &self.bytes[..];
        let mut out = Vec::with_capacity(b.len() + 8);
        let mut copied = 0;
        while let Some((start, len)) = next_nonfinite(b, copied) {
            out.extend_from_slice(&b[copied..start]);
            out.extend_from_slice(b"null");
            copied = start + len;
        }
        out.extend_from_slice(&b[copied..]);
        Cow::Owned(out)
    }
}

/// Finds the next `NaN`, `Infinity` or `-Infinity` token outside strings at or after `from`, as
/// (start, length). `from` must not be inside a string or token.
fn next_nonfinite(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while let Some(off) = memchr3(b'"', b'N', b'I', &b[i..]) {
        let j = i + off;
        match b[j] {
            b'"' => {
                // Skip the string, escapes included.
                let mut k = j + 1;
                loop {
                    let o = memchr2(b'"', b'\\', b.get(k..)?)?;
                    if b[k + o] == b'\\' {
                        k += o + 2;
                    } else {
                        i = k + o + 1;
                        break;
                    }
                }
            }
            b'N' if b[j..].starts_with(b"NaN") => return Some((j, 3)),
            b'I' if b[j..].starts_with(b"Infinity") => {
                // `from` always follows a string, a token or the start, never a '-'.
                return Some(if j > from && b[j - 1] == b'-' {
                    (j - 1, 9)
                } else {
                    (j, 8)
                });
            }
            _ => i = j + 1,
        }
    }
    None
}

/// Why the input could not be framed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The byte at `offset` (within the frame being scanned) cannot continue the input as JSON.
    #[error("invalid JSON at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: String },
    /// A value did not close within `limit` bytes.
    #[error("Message exceeds {limit} bytes")]
    TooLarge { limit: usize },
    /// The input ended inside a value.
    #[error("incomplete JSON value at end of input")]
    Truncated,
}

/// One item of the decoded stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete JSON value.
    Value(JsonFrame),
    /// Input that is not JSON; the stream continues after it.
    Invalid(FrameError),
}

/// Literal words; indices from `NAN` on are the non-finite ones.
const WORDS: [&[u8]; 5] = [b"true", b"false", b"null", b"NaN", b"Infinity"];
const NAN: u8 = 3;
const INFINITY: u8 = 4;

/// Where the JSON number grammar stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

/// What the next byte may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lex {
    /// Between top-level values: whitespace is dropped, anything else starts a frame.
    Idle,
    /// Discarding input through the next newline after an error.
    Skip,
    /// A value (at the start of a frame, after `:`, after `,` in an array).
    Value,
    /// A value or `]` (after `[`).
    ValueOrClose,
    /// A key or `}` (after `{`).
    KeyOrClose,
    /// A key (after `,` in an object).
    Key,
    /// `:` after a key.
    Colon,
    /// `,` or the closing bracket, after a value inside a container.
    CommaOrClose,
    /// Inside a string.
    Str,
    /// After a backslash inside a string.
    StrEscape,
    /// Inside a `\u` escape, with this many hex digits to go.
    StrUnicode(u8),
    /// Inside a number.
    Num(Num),
    /// Inside a literal: `WORDS[word]`, `idx` bytes matched.
    Lit { word: u8, idx: u8 },
}

/// What a scan of the buffered bytes ended with.
enum Outcome {
    /// All available bytes are consumed and the value is still open.
    NeedMore,
    /// The value closed; `pos` is its length.
    Complete,
    /// The byte at `offset` is not JSON.
    Error { offset: usize, reason: String },
    /// Under NDJSON, a newline at `offset` while the value is open.
    EndOfLine { offset: usize },
}

/// Decoder of JSON frames; see the module documentation.
#[derive(Debug)]
pub struct JsonFrameCodec {
    policy: NewlinePolicy,
    max_frame_bytes: usize,
    lex: Lex,
    /// Whether the string being scanned is an object key.
    str_is_key: bool,
    /// Open containers, `b'{'` or `b'['`.
    stack: Vec<u8>,
    /// Bytes of the current frame already scanned (the frame starts at the buffer's start).
    pos: usize,
    /// Whether the current frame holds a non-finite token.
    nonfinite: bool,
    /// Bytes consumed so far, over the codec's life.
    scanned: u64,
}

impl JsonFrameCodec {
    /// A codec with the given newline policy, rejecting values longer than `max_frame_bytes`.
    pub fn new(policy: NewlinePolicy, max_frame_bytes: usize) -> Self {
        JsonFrameCodec {
            policy,
            max_frame_bytes,
            lex: Lex::Idle,
            str_is_key: false,
            stack: Vec::new(),
            pos: 0,
            nonfinite: false,
            scanned: 0,
        }
    }

    /// The newline policy.
    pub fn policy(&self) -> NewlinePolicy {
        self.policy
    }

    /// The frame size limit, in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Total input bytes consumed so far (whitespace and skipped input included). Each input byte is
    /// counted once, when the scanner moves past it.
    pub fn bytes_scanned(&self) -> u64 {
        self.scanned
    }

    fn reset(&mut self, lex: Lex) {
        self.lex = lex;
        self.stack.clear();
        self.pos = 0;
        self.nonfinite = false;
    }

    fn too_large(&mut self, buf: &mut BytesMut, skip: bool) -> Frame {
        buf.advance(self.pos);
        self.reset(if skip { Lex::Skip } else { Lex::Idle });
        Frame::Invalid(FrameError::TooLarge {
            limit: self.max_frame_bytes,
        })
    }

    /// Yields the next frame from `buf`, or `None` when more input is needed.
    fn next_frame(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        loop {
            match self.lex {
                Lex::Skip => match memchr(b'\n', buf) {
                    Some(i) => {
                        self.scanned += (i + 1) as u64;
                        buf.advance(i + 1);
                        self.lex = Lex::Idle;
                    }
                    None => {
                        self.scanned += buf.len() as u64;
                        buf.clear();
                        return None;
                    }
                },
                Lex::Idle => {
                    let n = buf.iter().position(|&b| !is_ws(b)).unwrap_or(buf.len());
                    self.scanned += n as u64;
                    buf.advance(n);
                    if buf.is_empty() {
                        return None;
                    }
                    self.reset(Lex::Value);
                }
                _ => {
                    let limit = buf.len().min(self.max_frame_bytes.saturating_add(1));
                    let frame = match self.scan(&buf[..limit]) {
                        Outcome::NeedMore if self.pos > self.max_frame_bytes => {
                            self.too_large(buf, true)
                        }
                        Outcome::NeedMore => return None,
                        Outcome::Complete if self.pos > self.max_frame_bytes => {
                            self.too_large(buf, false)
                        }
                        Outcome::Complete => {
                            let bytes = buf.split_to(self.pos).freeze();
                            let nonfinite = self.nonfinite;
                            self.reset(Lex::Idle);
                            Frame::Value(JsonFrame {
                                bytes,
                                nonfinite,
                                checked: true,
                            })
                        }
                        Outcome::Error { offset, reason } => {
                            buf.advance(offset);
                            self.reset(Lex::Skip);
                            Frame::Invalid(FrameError::Malformed { offset, reason })
                        }
                        Outcome::EndOfLine { offset } => {
                            buf.advance(offset + 1);
                            self.scanned += 1;
                            self.reset(Lex::Idle);
                            Frame::Invalid(FrameError::Malformed {
                                offset,
                                reason: INCOMPLETE_LINE_REASON.to_owned(),
                            })
                        }
                    };
                    return Some(frame);
                }
            }
        }
    }

    /// The outcome for a byte that cannot continue the value: under NDJSON a newline ends the line.
    fn bad(&self, offset: usize, byte: u8, reason: String) -> Outcome {
        if byte == b'\n' && self.policy == NewlinePolicy::Ndjson {
            Outcome::EndOfLine { offset }
        } else {
            Outcome::Error { offset, reason }
        }
    }

    /// Consumes the first byte of a value and returns the state after it.
    fn begin_value(&mut self, b: u8) -> Result<Lex, String> {
        Ok(match b {
            b'{' | b'[' => {
                if self.stack.len() >= MAX_NESTING_DEPTH {
                    return Err("nesting too deep".to_owned());
                }
                self.stack.push(b);
                if b == b'{' {
                    Lex::KeyOrClose
                } else {
                    Lex::ValueOrClose
                }
            }
            b'"' => {
                self.str_is_key = false;
                Lex::Str
            }
            b'-' => Lex::Num(Num::Minus),
            b'0' => Lex::Num(Num::Zero),
            b'1'..=b'9' => Lex::Num(Num::Int),
            b't' => Lex::Lit { word: 0, idx: 1 },
            b'f' => Lex::Lit { word: 1, idx: 1 },
            b'n' => Lex::Lit { word: 2, idx: 1 },
            b'N' => Lex::Lit { word: NAN, idx: 1 },
            b'I' => Lex::Lit {
                word: INFINITY,
                idx: 1,
            },
            _ => return Err(format!("expected a JSON value, found {}", show(b))),
        })
    }

    /// Runs the state machine over `data[self.pos..]`, where `data` starts at the frame's first byte.
    fn scan(&mut self, data: &[u8]) -> Outcome {
        let ndjson = self.policy == NewlinePolicy::Ndjson;
        let start = self.pos;
        let mut pos = self.pos;
        let mut lex = self.lex;

        // After a value closes: the frame is complete at top level, else a ',' or closer follows.
        macro_rules! value_done {
            () => {
                if self.stack.is_empty() {
                    break Outcome::Complete;
                }
                lex = Lex::CommaOrClose;
            };
        }

        let outcome = loop {
            let Some(&b) = data.get(pos) else {
                break Outcome::NeedMore;
            };
            match lex {
                Lex::Str => match find_string_special(&data[pos..]) {
                    None => pos = data.len(),
                    Some(i) => {
                        pos += i;
                        match data[pos] {
                            b'"' => {
                                pos += 1;
                                if self.str_is_key {
                                    lex = Lex::Colon;
                                } else {
                                    value_done!();
                                }
                            }
                            b'\\' => {
                                pos += 1;
                                lex = Lex::StrEscape;
                            }
                            c => {
                                break self.bad(
                                    pos,
                                    c,
                                    format!("control character {} in string", show(c)),
                                )
                            }
                        }
                    }
                },
                Lex::StrEscape => match b {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                        pos += 1;
                        lex = Lex::Str;
                    }
                    b'u' => {
                        pos += 1;
                        lex = Lex::StrUnicode(4);
                    }
                    _ => break self.bad(pos, b, format!("invalid escape {}", show(b))),
                },
                Lex::StrUnicode(left) => {
                    if !b.is_ascii_hexdigit() {
                        break self.bad(
                            pos,
                            b,
                            format!(
                                "invalid \\u escape, expected a hex digit, found {}",
                                show(b)
                            ),
                        );
                    }
                    pos += 1;
                    lex = if left == 1 {
                        Lex::Str
                    } else {
                        Lex::StrUnicode(left - 1)
                    };
                }
                // Between tokens: whitespace, where a newline ends the line under NDJSON.
                Lex::Value
                | Lex::ValueOrClose
                | Lex::KeyOrClose
                | Lex::Key
                | Lex::Colon
                | Lex::CommaOrClose
                    if is_ws(b) =>
                {
                    if b == b'\n' && ndjson {
                        break Outcome::EndOfLine { offset: pos };
                    }
                    pos += 1;
                }
                Lex::Value => match self.begin_value(b) {
                    Ok(next) => {
                        pos += 1;
                        lex = next;
                    }
                    Err(reason) => {
                        break Outcome::Error {
                            offset: pos,
                            reason,
                        }
                    }
                },
                Lex::ValueOrClose => match b {
                    b']' => {
                        pos += 1;
                        self.stack.pop();
                        value_done!();
                    }
                    _ => match self.begin_value(b) {
                        Ok(next) => {
                            pos += 1;
                            lex = next;
                        }
                        Err(reason) => {
                            break Outcome::Error {
                                offset: pos,
                                reason,
                            }
                        }
                    },
                },
                Lex::KeyOrClose | Lex::Key => match b {
                    b'"' => {
                        pos += 1;
                        self.str_is_key = true;
                        lex = Lex::Str;
                    }
                    b'}' if lex == Lex::KeyOrClose => {
                        pos += 1;
                        self.stack.pop();
                        value_done!();
                    }
                    _ => {
                        break Outcome::Error {
                            offset: pos,
                            reason: format!("expected an object key, found {}", show(b)),
                        }
                    }
                },
                Lex::Colon => match b {
                    b':' => {
                        pos += 1;
                        lex = Lex::Value;
                    }
                    _ => {
                        break Outcome::Error {
                            offset: pos,
                            reason: format!("expected ':' after object key, found {}", show(b)),
                        }
                    }
                },
                Lex::CommaOrClose => {
                    let top = *self.stack.last().expect("inside a container");
                    match b {
                        b',' => {
                            pos += 1;
                            lex = if top == b'{' { Lex::Key } else { Lex::Value };
                        }
                        b'}' | b']' if b == top + 2 => {
                            // '{' + 2 == '}' and '[' + 2 == ']'.
                            pos += 1;
                            self.stack.pop();
                            value_done!();
                        }
                        _ => {
                            break Outcome::Error {
                                offset: pos,
                                reason: format!(
                                    "expected ',' or '{}', found {}",
                                    (top + 2) as char,
                                    show(b)
                                ),
                            }
                        }
                    }
                }
                Lex::Num(state) => {
                    let next = match (state, b) {
                        (Num::Minus, b'0') => Num::Zero,
                        (Num::Minus, b'1'..=b'9') => Num::Int,
                        (Num::Minus, b'I') => {
                            pos += 1;
                            lex = Lex::Lit {
                                word: INFINITY,
                                idx: 1,
                            };
                            continue;
                        }
                        (Num::Int, b'0'..=b'9') => Num::Int,
                        (Num::Zero | Num::Int, b'.') => Num::Dot,
                        (Num::Dot | Num::Frac, b'0'..=b'9') => Num::Frac,
                        (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::Exp,
                        (Num::Exp, b'+' | b'-') => Num::ExpSign,
                        (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Num::ExpDigits,
                        (Num::Zero, b'0'..=b'9') => {
                            break Outcome::Error {
                                offset: pos,
                                reason: "leading zero in number".to_owned(),
                            }
                        }
                        (Num::Zero | Num::Int | Num::Frac | Num::ExpDigits, _) => {
                            // `b` ends the number and is not part of it.
                            value_done!();
                            continue;
                        }
                        _ => break self.bad(pos, b, format!("invalid number, found {}", show(b))),
                    };
                    pos += 1;
                    lex = Lex::Num(next);
                }
                Lex::Lit { word, idx } => {
                    let w = WORDS[word as usize];
                    if b != w[idx as usize] {
                        let shown = String::from_utf8_lossy(w);
                        break self.bad(pos, b, format!("invalid literal (expected {shown})"));
                    }
                    pos += 1;
                    if idx as usize + 1 == w.len() {
                        if word >= NAN {
                            self.nonfinite = true;
                        }
                        value_done!();
                    } else {
                        lex = Lex::Lit { word, idx: idx + 1 };
                    }
                }
                Lex::Idle | Lex::Skip => unreachable!("scan runs only inside a value"),
            }
        };
        self.scanned += (pos - start) as u64;
        self.pos = pos;
        self.lex = lex;
        outcome
    }
}

impl Decoder for JsonFrameCodec {
    type Item = Frame;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Frame>> {
        Ok(self.next_frame(buf))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Frame>> {
        if let Some(frame) = self.next_frame(buf) {
            return Ok(Some(frame));
        }
        let frame = match self.lex {
            Lex::Idle | Lex::Skip => None,
            Lex::Num(Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
                if self.stack.is_empty() =>
            {
                // A pending top-level number: the end of input closes it. `next_frame` left it
                // pending, so all of it is buffered and it is within the limit.
                let bytes = buf.split_to(self.pos).freeze();
                Some(Frame::Value(JsonFrame {
                    bytes,
                    nonfinite: false,
                    checked: true,
                }))
            }
            _ => Some(Frame::Invalid(FrameError::Truncated)),
        };
        buf.clear();
        self.reset(Lex::Idle);
        Ok(frame)
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Describes a byte for an error message.
fn show(b: u8) -> String {
    match b {
        b'\n' => "newline".to_owned(),
        0x21..=0x7e => format!("'{}'", b as char),
        _ => format!("byte 0x{b:02x}"),
    }
}

/// Offset of the first `"`, `\` or control byte (below 0x20) in `s`.
///
/// Checks 32-byte blocks with a branch-free loop that the compiler turns into vector compares, and
/// only walks byte by byte within the block that holds a hit, and in the tail.
#[inline]
fn find_string_special(s: &[u8]) -> Option<usize> {
    const BLOCK: usize = 32;
    #[inline(always)]
    fn special(b: u8) -> bool {
        (b == b'"') | (b == b'\\') | (b < 0x20)
    }
    let mut i = 0;
    for block in s.chunks_exact(BLOCK) {
        let mut hit = false;
        for &b in block {
            hit |= special(b);
        }
        if hit {
            break;
        }
        i += BLOCK;
    }
    s[i..].iter().position(|&b| special(b)).map(|p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(policy: NewlinePolicy, max: usize, input: &[u8]) -> Vec<Frame> {
        let mut codec = JsonFrameCodec::new(policy, max);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn find_string_special_finds_first_hit_in_every_position() {
        for len in [0usize, 1, 31, 32, 33, 64, 100] {
            let plain = vec![b'a'; len];
            assert_eq!(find_string_special(&plain), None);
            for at in 0..len {
                for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut s = plain.clone();
                    s[at] = special;
                    if at + 1 < len {
                        s[len - 1] = b'"';
                    }
                    assert_eq!(find_string_special(&s), Some(at), "len {len} at {at}");
                }
            }
        }
        assert_eq!(find_string_special("é日😀 ".as_bytes()), None);
    }

    #[test]
    fn next_nonfinite_skips_strings_and_finds_tokens() {
        let b = br#"{"NaN\"I":[NaN,-Infinity,"x\\",Infinity]}"#;
        let first = next_nonfinite(b, 0).unwrap();
        assert_eq!(&b[first.0..first.0 + first.1], b"NaN");
        let second = next_nonfinite(b, first.0 + first.1).unwrap();
        assert_eq!(&b[second.0..second.0 + second.1], b"-Infinity");
        let third = next_nonfinite(b, second.0 + second.1).unwrap();
        assert_eq!(&b[third.0..third.0 + third.1], b"Infinity");
        assert_eq!(next_nonfinite(b, third.0 + third.1), None);
        assert_eq!(next_nonfinite(br#""unterminated NaN"#, 0), None);
    }

    #[test]
    fn scan_state_survives_between_calls() {
        let mut codec = JsonFrameCodec::new(NewlinePolicy::Stream, 1 << 20);
        let mut buf = BytesMut::from(&br#"{"a":[1,"x\u00"#[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(codec.lex, Lex::StrUnicode(2));
        assert_eq!(codec.stack, b"{[");
        assert_eq!(codec.pos, buf.len());
        buf.extend_from_slice(br#"e9"]}"#);
        let f = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            f,
            Frame::Value(JsonFrame::new(Bytes::from_static(
                br#"{"a":[1,"x\u00e9"]}"#
            )))
        );
        assert_eq!(codec.lex, Lex::Idle);
        assert!(codec.stack.is_empty());
    }

    #[test]
    fn minus_infinity_sets_flag_and_top_level_nan() {
        let frames = all(NewlinePolicy::Stream, 100, b"-Infinity NaN");
        assert_eq!(frames.len(), 2);
        for f in frames {
            let Frame::Value(v) = f else { panic!() };
            assert!(v.has_nonfinite());
            assert_eq!(&*v.strict_bytes(), b"null");
        }
    }
}
