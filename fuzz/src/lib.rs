//! The checks the fuzz targets make, one public function per target.
//!
//! `tests/fuzz_corpus.rs` in the main crate includes this same file (`#[path]`), so CI replays
//! `fuzz/corpus/*` and `fuzz/regressions/*` through exactly these checks without a fuzzer. Every
//! check asserts properties (a failed assertion is a finding), not just the absence of panics.
//!
//! # Input layout of the codec targets
//!
//! The first byte is a header, the next few bytes are chunk sizes, the rest is the payload fed to
//! the codec:
//!
//! * bits 0–1 of the header pick `max_frame_bytes` from [`LIMITS`] (small, to reach `TooLarge`);
//! * bits 2–4 give `n`, the number of chunk-size bytes that follow (each byte `b` is a chunk of
//!   `b + 1` bytes, the sizes repeat in turn until the payload is used up);
//! * when `n` is 0, bits 5–7 give one chunk size `1 << bits` (1 to 128 bytes).

use std::borrow::Cow;
use std::collections::BTreeMap;

use blender_session_manager::api::params::Params;
use blender_session_manager::api::rpc;
use blender_session_manager::blender::reply::BlenderReply;
use blender_session_manager::error::ManagerError;
use blender_session_manager::wire::{Frame, JsonFrame, JsonFrameCodec, NewlinePolicy};
use bytes::{Bytes, BytesMut};
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio_util::codec::Decoder;

/// The fuzz targets, by name; each is also the name of its corpus and regression directory.
pub const TARGETS: [&str; 4] = [
    "codec_stream",
    "codec_ndjson",
    "rpc_request",
    "blender_reply",
];

/// Runs the check of `target` on `data`; `false` for an unknown target name.
pub fn check(target: &str, data: &[u8]) -> bool {
    match target {
        "codec_stream" => codec_stream(data),
        "codec_ndjson" => codec_ndjson(data),
        "rpc_request" => rpc_request(data),
        "blender_reply" => blender_reply(data),
        _ => return false,
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// Frame size limits the codec targets choose from (header bits 0–1).
pub const LIMITS: [usize; 4] = [16, 256, 4096, 65536];

/// Deepest nesting `serde_json::Value` parses (its recursion limit).
const SERDE_DEPTH: usize = 127;

/// The codec's nesting limit, mirrored to judge whole documents.
const CODEC_DEPTH: usize = blender_session_manager::wire::MAX_NESTING_DEPTH;

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `b` without leading and trailing JSON whitespace.
fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| !is_ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_ws(c)).map_or(start, |e| e + 1);
    &b[start..end]
}

/// Whether `b` is one syntactically valid strict JSON value (surrounding whitespace allowed).
///
/// Parsing into `IgnoredAny` checks syntax only, like the codec: no recursion limit, no UTF-8
/// check, no number range, no surrogate check.
fn is_json_syntax(b: &[u8]) -> bool {
    serde_json::from_slice::<IgnoredAny>(b).is_ok()
}

/// Deepest container nesting outside strings.
fn max_depth(b: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &c in b {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Errors of a full `serde_json::Value` parse that the codec leaves to the parser by design: it
/// frames numbers without evaluating them, and checks that a `\u` escape has four hex digits
/// without decoding it (so a lone surrogate such as `"\ud800"` frames fine). Only asked about
/// input that already passed the syntax check, so these messages cannot hide a framing error.
fn is_semantic_only(e: &serde_json::Error) -> bool {
    let m = e.to_string();
    m.contains("number out of range")
        || m.contains("surrogate")
        || m.contains("hex escape")
        || m.contains("unicode code point")
}

/// Parses strict JSON bytes into a `Value`, after replacing invalid UTF-8 (which the codec passes
/// through inside strings) with U+FFFD; `None` where a full parse may rightly fail (deep nesting,
/// numbers out of f64 range, lone surrogates).
fn to_value(strict: &[u8]) -> Option<Value> {
    if max_depth(strict) > SERDE_DEPTH {
        return None;
    }
    let text = String::from_utf8_lossy(strict);
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => Some(v),
        Err(e) if is_semantic_only(&e) => None,
        Err(e) => panic!(
            "strict bytes do not parse as JSON: {e}: {:?}",
            String::from_utf8_lossy(strict)
        ),
    }
}

/// The top-level members of a strict JSON object as raw text (later duplicates win), after the
/// same UTF-8 repair as [`to_value`]. Raw values have no recursion limit.
fn raw_members(strict: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(strict);
    let map: BTreeMap<String, Box<RawValue>> = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("not a JSON object: {e}: {text:?}");
    });
    map.into_iter()
        .map(|(k, v)| (k, v.get().to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Codec targets

/// Chunking and limit for one codec input, decoded from its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecInput<'a> {
    pub max_frame_bytes: usize,
    pub chunk_sizes: Vec<usize>,
    pub payload: &'a [u8],
}

impl<'a> CodecInput<'a> {
    /// Splits `data` into header, chunk sizes and payload; `None` for empty input.
    pub fn parse(data: &'a [u8]) -> Option<CodecInput<'a>> {
        let (&h, rest) = data.split_first()?;
        let max_frame_bytes = LIMITS[(h & 3) as usize];
        let n = ((h >> 2) & 7) as usize;
        let (chunk_sizes, payload) = if n == 0 {
            (vec![1usize << (h >> 5)], rest)
        } else {
            let n = n.min(rest.len());
            let sizes = rest[..n].iter().map(|&b| b as usize + 1).collect();
            (sizes, &rest[n..])
        };
        Some(CodecInput {
            max_frame_bytes,
            chunk_sizes,
            payload,
        })
    }

    /// The payload cut into chunks of the header's sizes, in turn.
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = self.payload;
        for &size in self.chunk_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (a, b) = rest.split_at(size.min(rest.len()));
            out.push(a);
            rest = b;
        }
        out
    }
}

/// Decodes `chunks` one read at a time, then ends the input, checking the codec's bookkeeping:
/// no more than `max_frame_bytes` stays buffered between reads, no frame is over the limit, and
/// every byte fed is scanned exactly once.
pub fn decode_checked(policy: NewlinePolicy, max: usize, chunks: &[&[u8]]) -> Vec<Frame> {
    let mut codec = JsonFrameCodec::new(policy, max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0u64;
    let check_frame = |f: &Frame| {
        if let Frame::Value(v) = f {
            assert!(
                v.bytes().len() <= max,
                "frame of {} bytes over the limit {max}",
                v.bytes().len()
            );
        }
    };
    for chunk in chunks {
        fed += chunk.len() as u64;
        buf.extend_from_slice(chunk);
        while let Some(f) = codec.decode(&mut buf).expect("decode never fails") {
            check_frame(&f);
            frames.push(f);
        }
        assert!(
            buf.len() <= max,
            "{} bytes left buffered with a limit of {max}",
            buf.len()
        );
        assert!(codec.bytes_scanned() <= fed, "scanned more than was fed");
    }
    while let Some(f) = codec.decode_eof(&mut buf).expect("decode_eof never fails") {
        check_frame(&f);
        frames.push(f);
    }
    assert!(buf.is_empty(), "decode_eof leaves nothing behind");
    assert_eq!(
        codec.bytes_scanned(),
        fed,
        "every byte fed is scanned exactly once"
    );
    frames
}

/// Target `codec_stream`: the codec under [`NewlinePolicy::Stream`].
pub fn codec_stream(data: &[u8]) {
    check_codec(NewlinePolicy::Stream, data);
}

/// Target `codec_ndjson`: the codec under [`NewlinePolicy::Ndjson`].
pub fn codec_ndjson(data: &[u8]) {
    check_codec(NewlinePolicy::Ndjson, data);
}

/// Properties of the codec on one input:
/// * no panic, bounded buffering, each byte scanned once ([`decode_checked`]);
/// * the chunking of the header and a single read give the same frames;
/// * every value frame is one valid JSON value once non-finite tokens are mapped to `null`
///   (and a full `serde_json::Value` parse succeeds where one can), and decoding its bytes alone
///   yields exactly that frame;
/// * when the whole payload is one valid JSON value within the limits, it is the only frame.
pub fn check_codec(policy: NewlinePolicy, data: &[u8]) {
    let Some(input) = CodecInput::parse(data) else {
        return;
    };
    let max = input.max_frame_bytes;
    let chunked = decode_checked(policy, max, &input.chunks());
    let whole = decode_checked(policy, max, &[input.payload]);
    assert_eq!(chunked, whole, "chunked and single-read decoding differ");
    for frame in &whole {
        if let Frame::Value(v) = frame {
            check_value_frame(policy, max, v);
        }
    }

    // Oracle: a payload serde_json takes as one value is one frame, byte for byte.
    let trimmed = trim(input.payload);
    if !trimmed.is_empty()
        && trimmed.len() <= max
        && !(policy == NewlinePolicy::Ndjson && trimmed.contains(&b'\n'))
        && max_depth(trimmed) <= CODEC_DEPTH
        && is_json_syntax(input.payload)
    {
        let expected = vec![Frame::Value(JsonFrame::new(Bytes::copy_from_slice(
            trimmed,
        )))];
        assert_eq!(whole, expected, "a valid JSON document is not one frame");
    }
}

fn check_value_frame(policy: NewlinePolicy, max: usize, v: &JsonFrame) {
    let b = v.bytes();
    assert!(!b.is_empty(), "empty frame");
    assert!(
        !is_ws(b[0]) && !is_ws(b[b.len() - 1]),
        "frame keeps surrounding whitespace: {b:?}"
    );
    if policy == NewlinePolicy::Ndjson {
        assert!(!b.contains(&b'\n'), "NDJSON frame spans lines: {b:?}");
    }
    // The codec's non-finite flag agrees with a fresh scan of the bytes.
    assert_eq!(
        &JsonFrame::new(b.clone()),
        v,
        "non-finite flag differs from a rescan"
    );
    let strict = v.strict_bytes();
    if v.has_nonfinite() {
        assert!(
            !JsonFrame::new(Bytes::copy_from_slice(&strict)).has_nonfinite(),
            "strict bytes still hold non-finite tokens: {strict:?}"
        );
    } else {
        assert!(matches!(strict, Cow::Borrowed(_)), "needless copy");
        assert_eq!(&strict[..], &b[..]);
    }
    assert!(
        is_json_syntax(&strict),
        "frame is not JSON after strict_bytes: {:?}",
        String::from_utf8_lossy(&strict)
    );
    to_value(&strict);
    // Its bytes alone decode to exactly this frame.
    let again = decode_checked(policy, max, &[&b[..]]);
    assert_eq!(
        again,
        vec![Frame::Value(v.clone())],
        "a frame's bytes alone decode differently"
    );
}

// ---------------------------------------------------------------------------------------------
// rpc_request

/// Target `rpc_request`: arbitrary bytes through `rpc::parse_request` and the params checker.
///
/// Properties: no panic; `Ok` only for a JSON object whose `method` is that string and whose
/// `jsonrpc`, if present, is `"2.0"`; any id read (on `Ok` or `Err`) is a JSON string, number or
/// null, and a success or failure response echoing it is one line of valid JSON carrying the
/// same id; params, when present, are valid JSON, accepted by `Params` exactly when they are an
/// object or null, and the param getters never panic.
pub fn rpc_request(data: &[u8]) {
    match rpc::parse_request(data) {
        Ok(req) => {
            assert_eq!(data.first(), Some(&b'{'));
            assert!(is_json_syntax(data), "accepted a request that is not JSON");
            let members = raw_members(data);
            let method: String =
                serde_json::from_str(&members["method"]).expect("method is a string");
            assert_eq!(method, req.method);
            if let Some(v) = members.get("jsonrpc") {
                assert_eq!(v, "\"2.0\"");
            }
            assert_eq!(req.id.as_ref(), members.get("id"));
            if let Some(id) = &req.id {
                check_id_echo(id);
            }
            check_params(req.params.as_deref());
        }
        Err((id, err)) => {
            if let Some(id) = &id {
                check_id_echo(id);
            }
            check_response(id.as_deref(), &rpc::failure(id.as_deref(), &err));
        }
    }
}

/// A raw id is a JSON string, number or null, and responses echoing it are valid.
fn check_id_echo(id: &str) {
    assert!(is_json_syntax(id.as_bytes()), "id is not JSON: {id:?}");
    assert_eq!(trim(id.as_bytes()), id.as_bytes(), "id keeps whitespace");
    if let Some(v) = to_value(id.as_bytes()) {
        assert!(
            v.is_string() || v.is_number() || v.is_null(),
            "id of the wrong type: {id}"
        );
    }
    check_response(Some(id), &rpc::success(id, br#"{"ok":true}"#));
    check_response(
        Some(id),
        &rpc::failure(Some(id), &ManagerError::InvalidRequest("x".into())),
    );
}

/// A response is one line of valid JSON whose `id` is `id` (or null).
fn check_response(id: Option<&str>, out: &[u8]) {
    assert_eq!(out.last(), Some(&b'\n'), "response does not end its line");
    let line = &out[..out.len() - 1];
    assert!(!line.contains(&b'\n'), "response spans lines: {out:?}");
    assert!(
        is_json_syntax(line),
        "response is not JSON: {:?}",
        String::from_utf8_lossy(out)
    );
    let members = raw_members(line);
    assert_eq!(members["jsonrpc"], "\"2.0\"");
    assert_eq!(members["id"], id.unwrap_or("null"));
}

fn check_params(raw: Option<&RawValue>) {
    let object_or_null = raw.is_none_or(|r| r.get().starts_with('{') || r.get() == "null");
    if let Some(r) = raw {
        assert!(is_json_syntax(r.get().as_bytes()), "params are not JSON");
    }
    let deep = raw.is_some_and(|r| max_depth(r.get().as_bytes()) > SERDE_DEPTH);
    let mut p = match Params::from_raw(raw) {
        Ok(p) => {
            assert!(object_or_null, "Params took a non-object");
            p
        }
        Err(e) => {
            // A full parse of params may rightly fail on nesting, number range or surrogates.
            assert!(
                !object_or_null || deep || matches!(e, ManagerError::Parse(_)),
                "Params refused an object: {e}"
            );
            return;
        }
    };
    let _ = p.opt_string("session_id");
    if let Ok(Some(f)) = p.opt_f64("timeout") {
        assert!(f.is_finite() && f >= 0.0);
    }
    let _ = p.opt_u64("limit");
    let _ = p.opt_object("params");
    let _ = p.opt_value("code");
    let _ = p.finish();
}

// ---------------------------------------------------------------------------------------------
// blender_reply

/// Target `blender_reply`: arbitrary bytes as a reply frame through `BlenderReply::parse`.
///
/// Properties: no panic; on `Ok`, `relay_bytes()` is one valid JSON object once non-finite tokens
/// are mapped to `null`, with no top-level `_state`; it is the input byte for byte when the input
/// had no `_state`, and otherwise the input's members minus `_state`, each member's text
/// unchanged; `success` follows `status`, and `result` is the input's `result` member (strict).
/// The same holds for the frames the codec cuts from the input, and for those `parse`'s one-pass
/// reading (codec frames) and its `serde_json` reading (unchecked frames) give the same reply, or
/// the same error.
pub fn blender_reply(data: &[u8]) {
    check_reply(data, JsonFrame::new(Bytes::copy_from_slice(data)));
    // The same bytes as the link reads them: frames cut by the codec (grammar checked,
    // so `parse` takes its one-pass path) must read exactly as unchecked frames do
    // (the `serde_json` path), and meet the same properties.
    for frame in decode_checked(NewlinePolicy::Stream, 1 << 20, &[data]) {
        let Frame::Value(checked) = frame else {
            continue;
        };
        assert!(checked.is_checked());
        let unchecked = JsonFrame::new(checked.bytes().clone());
        assert!(!unchecked.is_checked());
        match (
            BlenderReply::parse(checked.clone()),
            BlenderReply::parse(unchecked),
        ) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.success, b.success, "success differs between paths");
                assert_eq!(a.result, b.result, "result differs between paths");
                assert_eq!(a.message, b.message, "message differs between paths");
                assert_eq!(a.traceback, b.traceback, "traceback differs between paths");
                assert_eq!(a.addon_state, b.addon_state, "_state differs between paths");
                assert_eq!(
                    a.relay_bytes(),
                    b.relay_bytes(),
                    "relay differs between paths"
                );
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "errors differ between paths"),
            (a, b) => panic!(
                "the paths disagree: checked {:?}, unchecked {:?}",
                a.map(|r| r.success),
                b.map(|r| r.success)
            ),
        }
        let data = checked.bytes().clone();
        check_reply(&data, checked);
    }
}

/// The properties of one parsed reply; `data` is the frame's bytes.
fn check_reply(data: &[u8], frame: JsonFrame) {
    let Ok(reply) = BlenderReply::parse(frame.clone()) else {
        return;
    };
    let strict_in = frame.strict_bytes();
    assert!(
        is_json_syntax(&strict_in),
        "accepted a reply that is not JSON"
    );
    let input = raw_members(&strict_in);
    assert_eq!(
        reply.success,
        input["status"] == "\"success\"",
        "success does not follow status"
    );
    let result = input.get("result").map_or("null", String::as_str);
    assert_eq!(
        &reply.result.bytes()[..],
        result.as_bytes(),
        "result member"
    );
    if reply.addon_state.is_some() {
        assert!(input.contains_key("_state"));
    }

    let relay = reply.relay_bytes();
    let relay_frame = JsonFrame::new(relay.clone());
    let strict_out = relay_frame.strict_bytes();
    assert!(
        is_json_syntax(&strict_out),
        "relayed bytes are not JSON: {:?}",
        String::from_utf8_lossy(&relay)
    );
    let output = raw_members(&strict_out);
    assert!(
        !output.contains_key("_state"),
        "relayed bytes keep _state: {:?}",
        String::from_utf8_lossy(&relay)
    );
    if input.contains_key("_state") {
        let mut expected = input;
        expected.remove("_state");
        assert_eq!(output, expected, "relay changed more than _state");
    } else {
        assert_eq!(&relay[..], data, "relay of a reply without _state differs");
    }
}
