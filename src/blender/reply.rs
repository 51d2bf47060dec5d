//! Parsing the envelope of an addon reply without rebuilding its result.
//!
//! A reply is `{"status": "success", "result": ...}` or
//! `{"status": "error", "message": "..."}`, optionally with the project's
//! `"_state": {"objects", "selection", "active"}`. Only the envelope is parsed; the
//! `result` member is cut out of the frame as a zero-copy slice. A frame the codec cut
//! (its grammar already checked) is read in one quick pass over its top level, so a
//! big `result` is skimmed once (and its UTF-8 checked) rather than parsed again. Python's `NaN` and
//! `Infinity` are turned into `null` for everything the manager re-serialises; the
//! frame as received is kept so the addon-compatible port can relay it unchanged.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::raw_json::RawJson;
use crate::wire::JsonFrame;

/// Scene state piggybacked on a reply by the project's addon.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AddonState {
    #[serde(default)]
    pub objects: Vec<String>,
    #[serde(default)]
    pub selection: Vec<String>,
    #[serde(default)]
    pub active: Option<String>,
}

/// One reply from Blender.
#[derive(Debug, Clone)]
pub struct BlenderReply {
    /// The frame as received (non-strict tokens kept).
    pub frame: JsonFrame,
    /// `true` for `status: success`.
    pub success: bool,
    /// The `result` member as strict JSON (`null` when absent).
    pub result: RawJson,
    /// The `message` of an error reply.
    pub message: Option<String>,
    /// The `traceback` of an error reply (the project's addon sends one).
    pub traceback: Option<String>,
    /// Piggybacked scene state, when present.
    pub addon_state: Option<AddonState>,
    /// Where `_state`'s value sits in `frame`'s bytes.
    state_span: Option<Range<usize>>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "_state", deserialize_with = "present")]
    state: Option<&'a RawValue>,
    #[serde(borrow, default)]
    traceback: Option<&'a RawValue>,
}

/// `Some` for any value, `null` included: a plain `Option` reads `"_state": null` as absent,
/// which would leave the member in the relayed bytes.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The envelope's members as JSON text (slices of the strict frame).
#[derive(Default)]
struct Members<'a> {
    status: Option<Cow<'a, str>>,
    result: Option<&'a str>,
    message: Option<&'a str>,
    state: Option<&'a str>,
    traceback: Option<&'a str>,
}

impl<'a> From<Envelope<'a>> for Members<'a> {
    fn from(env: Envelope<'a>) -> Self {
        Members {
            status: env.status,
            result: env.result.map(RawValue::get),
            message: env.message.map(RawValue::get),
            state: env.state.map(RawValue::get),
            traceback: env.traceback.map(RawValue::get),
        }
    }
}

impl BlenderReply {
    /// Parses a reply frame. The error says what was wrong, for `blender_bad_reply`.
    ///
    /// A frame cut by the codec (whose grammar is checked) is read in one quick
    /// pass over its top level ([`scan_members`]) instead of a second full parse;
    /// whatever that pass does not settle goes to `serde_json` as before, so the
    /// outcome is the same either way.
    pub fn parse(frame: JsonFrame) -> Result<BlenderReply, String> {
        let strict: Bytes = match frame.strict_bytes() {
            Cow::Borrowed(_) => frame.bytes().clone(),
            Cow::Owned(v) => Bytes::from(v),
        };
        if strict.first() != Some(&b'{') {
            return Err(format!("expected a JSON object, got {}", preview(&strict)));
        }
        let scanned = if frame.is_checked() {
            scan_members(&strict)
        } else {
            None
        };
        let env = match scanned {
            Some(members) => members,
            None => serde_json::from_slice::<Envelope<'_>>(&strict)
                .map_err(|e| format!("{e} in {}", preview(&strict)))?
                .into(),
        };
        let slice_of = |raw: &str| -> Range<usize> {
            let start = raw.as_ptr() as usize - strict.as_ptr() as usize;
            start..start + raw.len()
        };
        let success = match env.status.as_deref() {
            Some("success") => true,
            Some("error") => false,
            Some(other) => return Err(format!("unknown status {other:?}")),
            None => return Err(format!("no \"status\" member in {}", preview(&strict))),
        };
        let result = match env.result {
            Some(raw) => RawJson::from_validated(strict.slice(slice_of(raw))),
            None => RawJson::null(),
        };
        let message = env
            .message
            .map(|raw| serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_string()));
        let (addon_state, state_span) = match env.state {
            Some(raw) => {
                let span = if frame.has_nonfinite() {
                    // Offsets in the strict copy differ from the received bytes.
                    top_level_value(frame.bytes(), b"\"_state\"")
                } else {
                    Some(slice_of(raw))
                };
                (serde_json::from_str::<AddonState>(raw).ok(), span)
            }
            None => (None, None),
        };
        Ok(BlenderReply {
            frame,
            success,
            result,
            message,
            traceback: env
                .traceback
                .map(|raw| serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_string())),
            addon_state,
            state_span,
        })
    }

    /// The reply as a stock client would have received it from a stock addon: the
    /// received bytes with the manager-requested `_state` member cut out.
    pub fn relay_bytes(&self) -> Bytes {
        let bytes = self.frame.bytes();
        let Some(span) = &self.state_span else {
            return bytes.clone();
        };
        match cut_member(bytes, span.clone(), b"\"_state\"") {
            Some((a, b)) => {
                let mut out = Vec::with_capacity(bytes.len() - (b - a));
                out.extend_from_slice(&bytes[..a]);
                out.extend_from_slice(&bytes[b..]);
                Bytes::from(out)
            }
            None => bytes.clone(),
        }
    }
}

/// Finds the byte range to delete to remove the member whose key is `key` and whose
/// value spans `value`, together with one adjacent comma.
fn cut_member(b: &[u8], value: Range<usize>, key: &[u8]) -> Option<(usize, usize)> {
    let ws = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let mut i = value.start;
    while i > 0 && ws(b[i - 1]) {
        i -= 1;
    }
    if i == 0 || b[i - 1] != b':' {
        return None;
    }
    i -= 1;
    while i > 0 && ws(b[i - 1]) {
        i -= 1;
    }
    let key_start = string_start(b, i)?;
    if !key_is(&b[key_start..i], key) {
        return None;
    }
    let mut before = key_start;
    while before > 0 && ws(b[before - 1]) {
        before -= 1;
    }
    let mut after = value.end;
    while after < b.len() && ws(b[after]) {
        after += 1;
    }
    match (before.checked_sub(1).map(|p| b[p]), b.get(after)) {
        (Some(b','), Some(b'}' | b',')) => Some((before - 1, value.end)),
        (Some(b'{'), Some(b',')) => {
            let mut next = after + 1;
            while next < b.len() && ws(b[next]) {
                next += 1;
            }
            Some((key_start, next))
        }
        (Some(b'{'), Some(b'}')) => Some((key_start, value.end)),
        _ => None,
    }
}

/// Start of the JSON string whose closing quote is `b[end - 1]`: the first `"` before it that
/// is not escaped (preceded by an even number of backslashes).
fn string_start(b: &[u8], end: usize) -> Option<usize> {
    if end == 0 || b[end - 1] != b'"' {
        return None;
    }
    let mut j = end - 1;
    while j > 0 {
        j -= 1;
        if b[j] == b'"' && b[..j].iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 0 {
            return Some(j);
        }
    }
    None
}

/// Whether the quoted JSON string `text` is the quoted `key`, escapes (`"\u005fstate"`) decoded.
fn key_is(text: &[u8], key: &[u8]) -> bool {
    text == key
        || (text.contains(&b'\\')
            && serde_json::from_slice::<String>(text)
                .is_ok_and(|k| key.len() >= 2 && k.as_bytes() == &key[1..key.len() - 1]))
}

/// The span of the value of top-level member `key` (quoted, escapes allowed) in
/// the object `b`, found by a scan that skips strings and nested values.
fn top_level_value(b: &[u8], key: &[u8]) -> Option<Range<usize>> {
    let ws = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let mut depth = 0usize;
    let mut i = 0;
    let mut value_start: Option<usize> = None;
    let mut last_end = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                last_end = i;
                if depth == 1 && value_start.is_none() && key_is(&b[start..i.min(b.len())], key) {
                    let mut j = i;
                    while j < b.len() && ws(b[j]) {
                        j += 1;
                    }
                    if b.get(j) == Some(&b':') {
                        j += 1;
                        while j < b.len() && ws(b[j]) {
                            j += 1;
                        }
                        value_start = Some(j);
                        i = j;
                    }
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 1 {
                    return value_start.map(|s| s..last_end);
                }
                depth = depth.saturating_sub(1);
                last_end = i + 1;
                i += 1;
                continue;
            }
            b',' if depth == 1 => {
                if let Some(s) = value_start {
                    return Some(s..last_end);
                }
            }
            c if !ws(c) => last_end = i + 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The members of `b`, a JSON object whose grammar is known to be valid, found by
/// walking its top level: strings are skipped by `memchr`, nested values by
/// counting brackets, and only the small members (`status`, `message`, …) are
/// parsed. For a big reply this replaces a full second parse with a fast skim of
/// the `result` plus its UTF-8 check.
///
/// It gives what `serde_json` gives for [`Envelope`], or `None` where `serde_json`
/// must decide (an escaped or non-UTF-8 key, a member of the envelope given twice,
/// a `status` that is neither a string nor `null`, a member's text that is not
/// UTF-8, anything unexpected): the caller then parses with `serde_json`, so its
/// answers and error messages are unchanged.
fn scan_members(b: &[u8]) -> Option<Members<'_>> {
    fn text(v: &[u8]) -> Option<&str> {
        std::str::from_utf8(v).ok()
    }
    /// `null` reads as absent, as with serde's `Option`.
    fn opt(v: &[u8]) -> Option<Option<&str>> {
        if v == b"null" {
            Some(None)
        } else {
            text(v).map(Some)
        }
    }
    let mut m = Members::default();
    let mut seen = [false; 5];
    let mut i = skip_ws(b, 1);
    if *b.get(i)? == b'}' {
        return (i + 1 == b.len()).then_some(m);
    }
    loop {
        if *b.get(i)? != b'"' {
            return None;
        }
        let key_end = string_end(b, i)?;
        let key = &b[i + 1..key_end - 1];
        if key.contains(&b'\\') {
            return None;
        }
        text(key)?;
        i = skip_ws(b, key_end);
        if *b.get(i)? != b':' {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let end = value_end(b, start)?;
        let value = &b[start..end];
        let slot = match key {
            b"status" => 0,
            b"result" => 1,
            b"message" => 2,
            b"_state" => 3,
            b"traceback" => 4,
            _ => usize::MAX,
        };
        if slot != usize::MAX {
            if std::mem::replace(&mut seen[slot], true) {
                return None;
            }
            match slot {
                0 => m.status = serde_json::from_slice::<Option<Cow<'_, str>>>(value).ok()?,
                1 => m.result = opt(value)?,
                2 => m.message = opt(value)?,
                3 => m.state = Some(text(value)?),
                _ => m.traceback = opt(value)?,
            }
        }
        i = skip_ws(b, end);
        match *b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return (i + 1 == b.len()).then_some(m),
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// The index after the closing quote of the string opening at `b[i]`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j] == b'"' {
            return Some(j + 1);
        }
        j += 2;
    }
}

/// The index after the (grammatically valid) value starting at `b[i]`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

fn preview(b: &[u8]) -> String {
    let cut = &b[..b.len().min(80)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if b.len() > 80 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Frame, JsonFrameCodec, NewlinePolicy};
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    /// The reply as the link reads it (a codec frame), checked against the
    /// `serde_json` reading of the same bytes.
    fn reply(s: &str) -> Result<BlenderReply, String> {
        let unchecked = BlenderReply::parse(JsonFrame::new(Bytes::copy_from_slice(s.as_bytes())));
        let mut codec = JsonFrameCodec::new(NewlinePolicy::Stream, 1 << 20);
        let mut buf = BytesMut::from(s.as_bytes());
        let Some(Frame::Value(frame)) = codec.decode_eof(&mut buf).unwrap() else {
            return unchecked;
        };
        let checked = BlenderReply::parse(frame);
        match (&checked, &unchecked) {
            (Ok(a), Ok(b)) => {
                assert_eq!(
                    (a.success, &a.result, &a.message, &a.traceback),
                    (b.success, &b.result, &b.message, &b.traceback)
                );
                assert_eq!(a.addon_state, b.addon_state);
                assert_eq!(a.relay_bytes(), b.relay_bytes());
            }
            (Err(a), Err(b)) => assert_eq!(a, b),
            _ => panic!("the two readings disagree on {s}"),
        }
        checked
    }

    fn members(s: &str) -> Option<Vec<Option<String>>> {
        let m = scan_members(s.as_bytes())?;
        Some(
            [
                m.status.map(|c| c.into_owned()),
                m.result.map(str::to_string),
                m.message.map(str::to_string),
                m.state.map(str::to_string),
                m.traceback.map(str::to_string),
            ]
            .into(),
        )
    }

    #[test]
    fn the_one_pass_reading_finds_the_members_and_defers_the_rest() {
        let s = r#"{ "x" : [{"y": "\"}]"}, -1.5e3, true], "status" : "succ\u0065ss",
            "result":{"a" : [1, "}]\"{", {}]} ,"_state":null,"message":null,"n":null }"#;
        let some = |v: &str| Some(v.to_string());
        assert_eq!(
            members(s).unwrap(),
            vec![
                some("success"),
                some(r#"{"a" : [1, "}]\"{", {}]}"#),
                None,
                some("null"),
                None
            ]
        );
        assert_eq!(members("{}").unwrap(), vec![None; 5]);
        assert_eq!(members(r#"{"result":7}"#).unwrap()[1], some("7"));
        // Left to serde_json: a repeated member, an escaped key, a status that is not
        // text, text that is not UTF-8.
        assert!(members(r#"{"status":"success","status":"error"}"#).is_none());
        assert!(members(r#"{"result":1,"result":null}"#).is_none());
        assert!(members(r#"{"\u0073tatus":"success"}"#).is_none());
        assert!(members(r#"{"status":1}"#).is_none());
        assert!(scan_members(b"{\"result\":\"\xff\"}").is_none());
        // Unknown members are skipped whatever they hold, as serde_json skips them.
        assert!(scan_members(b"{\"x\":\"\xff\",\"status\":\"error\"}").is_some());
        for s in [
            r#"{"status":"success","status":"error"}"#,
            r#"{"status":1}"#,
        ] {
            assert!(reply(s).is_err(), "{s}");
        }
        // serde_json reads the escaped key as `status`.
        assert!(
            reply(r#"{"\u0073tatus":"success","result":[]}"#)
                .unwrap()
                .success
        );
    }

    #[test]
    fn success_keeps_result_bytes_verbatim() {
        let r = reply(r#"{"status": "success", "result": {"a" : [1, 2.50]}}"#).unwrap();
        assert!(r.success);
        assert_eq!(r.result.bytes().as_ref(), br#"{"a" : [1, 2.50]}"#);
        assert_eq!(r.message, None);
    }

    #[test]
    fn error_reply_is_a_normal_reply() {
        let r = reply(r#"{"status": "error", "message": "Object not found: Nope"}"#).unwrap();
        assert!(!r.success);
        assert_eq!(r.message.as_deref(), Some("Object not found: Nope"));
        assert_eq!(r.result.bytes().as_ref(), b"null");
    }

    #[test]
    fn nan_becomes_null_for_the_result_but_is_relayed_as_received() {
        let s = r#"{"status": "success", "result": {"x": NaN, "s": "NaN"}}"#;
        let r = reply(s).unwrap();
        assert_eq!(
            r.result.to_value(),
            serde_json::json!({"x": null, "s": "NaN"})
        );
        assert_eq!(r.relay_bytes().as_ref(), s.as_bytes());
    }

    #[test]
    fn state_is_parsed_and_cut_from_relay() {
        let s = r#"{"status": "success", "result": 1, "_state": {"objects": ["Cube"], "selection": ["Cube"], "active": "Cube"}}"#;
        let r = reply(s).unwrap();
        let st = r.addon_state.clone().unwrap();
        assert_eq!(st.objects, vec!["Cube"]);
        assert_eq!(st.active.as_deref(), Some("Cube"));
        assert_eq!(
            r.relay_bytes().as_ref(),
            br#"{"status": "success", "result": 1}"#
        );
        let s = r#"{"_state": {"objects": []}, "status": "success"}"#;
        assert_eq!(
            reply(s).unwrap().relay_bytes().as_ref(),
            br#"{"status": "success"}"#
        );
        let s = r#"{ "_state" : {} }"#;
        assert!(reply(s).is_err());
    }

    #[test]
    fn state_is_cut_from_relay_even_when_the_reply_holds_nan() {
        let s = r#"{"status": "success", "result": {"x": NaN}, "_state": {"objects": ["A"], "selection": [], "active": null}}"#;
        let r = reply(s).unwrap();
        assert_eq!(r.addon_state.as_ref().unwrap().objects, vec!["A"]);
        assert_eq!(
            r.relay_bytes().as_ref(),
            br#"{"status": "success", "result": {"x": NaN}}"#
        );
    }

    #[test]
    fn only_the_top_level_state_is_cut_when_the_reply_holds_nan() {
        let s = r#"{"status":"success","_state":{},"result":{"x":NaN,"_state":{}}}"#;
        assert_eq!(
            reply(s).unwrap().relay_bytes().as_ref(),
            br#"{"status":"success","result":{"x":NaN,"_state":{}}}"#
        );
        let s = r#"{"status":"success","result":{"s":"a\"_state\":","x":[NaN]}, "_state" : {"objects":["{"]} }"#;
        assert_eq!(
            reply(s).unwrap().relay_bytes().as_ref(),
            br#"{"status":"success","result":{"s":"a\"_state\":","x":[NaN]} }"#
        );
    }

    #[test]
    fn error_traceback_is_kept() {
        let r = reply(r#"{"status": "error", "message": "boom", "traceback": "Traceback..."}"#)
            .unwrap();
        assert_eq!(r.traceback.as_deref(), Some("Traceback..."));
    }

    #[test]
    fn bad_envelopes_are_named() {
        assert!(reply("[1,2]")
            .unwrap_err()
            .contains("expected a JSON object"));
        assert!(reply(r#"{"result": 1}"#).unwrap_err().contains("status"));
        assert!(reply(r#"{"status": "maybe"}"#)
            .unwrap_err()
            .contains("maybe"));
    }
}
