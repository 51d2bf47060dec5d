//! Tests of the JSON frame codec through its public API.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Instant;

use blender_session_manager::wire::{
    Frame, FrameError, JsonFrame, JsonFrameCodec, NewlinePolicy, INCOMPLETE_LINE_REASON,
    MAX_NESTING_DEPTH,
};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

const BIG: usize = 64 << 20;
const POLICIES: [NewlinePolicy; 2] = [NewlinePolicy::Stream, NewlinePolicy::Ndjson];

// ---------------------------------------------------------------------------------------------
// Helpers

/// Feeds `chunks` one read at a time, draining frames after each, then ends the input.
fn feed_chunks<'a>(
    codec: &mut JsonFrameCodec,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Frame> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let start = codec.bytes_scanned();
    let mut fed = 0;
    for chunk in chunks {
        fed += chunk.len() as u64;
        buf.extend_from_slice(chunk);
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f);
        }
    }
    while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
        out.push(f);
    }
    assert!(buf.is_empty(), "decode_eof leaves nothing behind");
    assert_eq!(
        codec.bytes_scanned() - start,
        fed,
        "every byte scanned exactly once"
    );
    out
}

fn decode_all(policy: NewlinePolicy, max: usize, input: &[u8]) -> Vec<Frame> {
    feed_chunks(&mut JsonFrameCodec::new(policy, max), [input])
}

fn decode_split(policy: NewlinePolicy, max: usize, input: &[u8], at: usize) -> Vec<Frame> {
    let (a, b) = input.split_at(at);
    feed_chunks(&mut JsonFrameCodec::new(policy, max), [a, b])
}

fn decode_bytewise(policy: NewlinePolicy, max: usize, input: &[u8]) -> Vec<Frame> {
    feed_chunks(
        &mut JsonFrameCodec::new(policy, max),
        input.chunks(1).collect::<Vec<_>>(),
    )
}

/// Asserts that `input` decodes to `expected` whole, split in two at every offset, and byte by byte.
fn assert_every_split(policy: NewlinePolicy, max: usize, input: &[u8], expected: &[Frame]) {
    assert_eq!(decode_all(policy, max, input), expected, "whole input");
    for at in 0..=input.len() {
        assert_eq!(
            decode_split(policy, max, input, at),
            expected,
            "split at {at} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(
        decode_bytewise(policy, max, input),
        expected,
        "byte by byte"
    );
}

fn val(s: &[u8]) -> Frame {
    Frame::Value(JsonFrame::new(Bytes::copy_from_slice(s)))
}

fn malformed(offset: usize, reason: &str) -> Frame {
    Frame::Invalid(FrameError::Malformed {
        offset,
        reason: reason.to_owned(),
    })
}

fn eol(offset: usize) -> Frame {
    malformed(offset, INCOMPLETE_LINE_REASON)
}

fn too_large(limit: usize) -> Frame {
    Frame::Invalid(FrameError::TooLarge { limit })
}

const TRUNCATED: Frame = Frame::Invalid(FrameError::Truncated);

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".request") || n.ends_with(".reply"))
        .collect();
    // NAME.request before NAME.reply, as on the wire.
    names.sort_by_key(|n| {
        (
            n.rsplit_once('.').unwrap().0.to_owned(),
            n.ends_with(".reply"),
        )
    });
    names
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

fn frame_value(f: &Frame) -> &JsonFrame {
    match f {
        Frame::Value(v) => v,
        other => panic!("expected a value, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Captured Blender traffic

#[test]
fn fixtures_are_present_and_undelimited() {
    let fx = fixtures();
    assert_eq!(fx.len(), 22);
    for (name, bytes) in &fx {
        assert_eq!(bytes.first(), Some(&b'{'), "{name}");
        assert_eq!(bytes.last(), Some(&b'}'), "{name} has no delimiter");
    }
}

#[test]
fn fixtures_each_decode_to_themselves() {
    for policy in POLICIES {
        for (name, bytes) in fixtures() {
            let frames = decode_all(policy, BIG, &bytes);
            assert_eq!(frames, vec![val(&bytes)], "{name}");
            assert_eq!(frame_value(&frames[0]).bytes(), &bytes[..], "{name}");
        }
    }
}

#[test]
fn fixtures_concatenated_reassemble_at_every_split() {
    let fx = fixtures();
    let expected: Vec<Frame> = fx.iter().map(|(_, b)| val(b)).collect();
    for sep in ["", "\n", " \r\n\t ", "\n\n  \t"] {
        let mut input = Vec::new();
        for (_, b) in &fx {
            input.extend_from_slice(b);
            input.extend_from_slice(sep.as_bytes());
        }
        for policy in POLICIES {
            assert_every_split(policy, BIG, &input, &expected);
        }
    }
}

#[test]
fn fixture_with_nan_is_flagged_and_strict_bytes_parse() {
    for (name, bytes) in fixtures() {
        let frames = decode_all(NewlinePolicy::Stream, BIG, &bytes);
        let frame = frame_value(&frames[0]);
        let is_nan_reply = name == "get_object_info_nan_inf.reply";
        assert_eq!(frame.has_nonfinite(), is_nan_reply, "{name}");
        let strict = frame.strict_bytes();
        assert_eq!(matches!(strict, Cow::Borrowed(_)), !is_nan_reply, "{name}");
        let parsed: serde_json::Value = serde_json::from_slice(&strict).unwrap();
        if is_nan_reply {
            assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_err());
            let loc = &parsed["result"]["location"];
            assert_eq!(loc[0], serde_json::Value::Null);
            // serde_json without `float_roundtrip` may be one ulp off; the text is kept as is.
            let max = loc[1].as_f64().unwrap();
            assert!((max - f32::MAX as f64).abs() / max < 1e-15, "{max}");
            assert!(strict.windows(22).any(|w| w == b"3.4028234663852886e+38"));
            assert_eq!(
                strict.len(),
                bytes.len() + 1,
                "NaN (3 bytes) became null (4)"
            );
        }
    }
}

#[test]
fn fixture_unicode_reply_strings_are_kept_verbatim() {
    let bytes = fixtures()
        .into_iter()
        .find(|(n, _)| n == "execute_code_unicode.reply")
        .unwrap()
        .1;
    // Cut it right after an escaped quote and inside a \u escape, and glue a second value on.
    let mut input = bytes.clone();
    input.extend_from_slice(br#"{"next":1}"#);
    let quote = bytes.windows(2).position(|w| w == b"\\\"").unwrap() + 1;
    let unicode = bytes.windows(2).position(|w| w == b"\\u").unwrap() + 3;
    for at in [quote, unicode] {
        let frames = decode_split(NewlinePolicy::Stream, BIG, &input, at);
        assert_eq!(frames, vec![val(&bytes), val(br#"{"next":1}"#)]);
    }
    let frames = decode_all(NewlinePolicy::Stream, BIG, &bytes);
    let parsed: serde_json::Value =
        serde_json::from_slice(frame_value(&frames[0]).bytes()).unwrap();
    assert_eq!(
        parsed["result"]["result"],
        "ñandú 日本 \"quoted\" {braces} [x]\nnan\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Hand-made values

#[test]
fn strings_holding_structural_characters() {
    let values: [&[u8]; 6] = [
        br#"{"a":"{[}]\"","b":["\\","\\\"","]"],"c":"\\\\"}"#,
        br#"["}", "{", "]", "[", ",", ":"]"#,
        br#"{"x\"}":"y\\"}"#,
        br#""\\""#,
        br#""\"""#,
        br#"{"esc":"\/\b\f\n\r\t"}"#,
    ];
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for v in values {
        input.extend_from_slice(v);
        expected.push(val(v));
    }
    for policy in POLICIES {
        assert_every_split(policy, BIG, &input, &expected);
    }
    for v in values {
        assert!(serde_json::from_slice::<serde_json::Value>(v).is_ok());
    }
}

#[test]
fn unicode_escapes() {
    let v: &[u8] = br#"{"\u00e9":"\uD83D\uDE00\u0041\uAbCd\u0000"}"#;
    for policy in POLICIES {
        assert_every_split(policy, BIG, v, &[val(v)]);
    }
    let parsed: serde_json::Value = serde_json::from_slice(v).unwrap();
    assert_eq!(parsed["é"], "😀A\u{abcd}\u{0}");
}

#[test]
fn multibyte_utf8_split_at_every_offset() {
    // 2-, 3- and 4-byte characters, in keys and values.
    let v = r#"{"é日😀":["ñ","日本語","😀🎉",{"𝄞":"ß"}]}"#.as_bytes();
    let mut input = v.to_vec();
    input.extend_from_slice("\"€\"".as_bytes());
    for policy in POLICIES {
        assert_every_split(policy, BIG, &input, &[val(v), val("\"€\"".as_bytes())]);
    }
}

#[test]
fn nonfinite_tokens() {
    let v: &[u8] = br#"[NaN, Infinity, -Infinity, {"x": NaN, "NaN": "Infinity"}]"#;
    let frames = decode_all(NewlinePolicy::Stream, BIG, v);
    assert_eq!(frames, vec![val(v)]);
    let f = frame_value(&frames[0]);
    assert!(f.has_nonfinite());
    assert_eq!(
        &*f.strict_bytes(),
        br#"[null, null, null, {"x": null, "NaN": "Infinity"}]"#
    );
    let parsed: serde_json::Value = serde_json::from_slice(&f.strict_bytes()).unwrap();
    assert_eq!(
        parsed,
        serde_json::json!([null, null, null, {"x": null, "NaN": "Infinity"}])
    );

    // Inside strings they are text, and the flag stays clear.
    for s in [
        &br#""NaN""#[..],
        br#"{"NaN":"-Infinity"}"#,
        br#"["Infinity\"NaN"]"#,
    ] {
        let frames = decode_all(NewlinePolicy::Stream, BIG, s);
        assert_eq!(frames, vec![val(s)]);
        let f = frame_value(&frames[0]);
        assert!(!f.has_nonfinite(), "{}", String::from_utf8_lossy(s));
        assert!(matches!(f.strict_bytes(), Cow::Borrowed(b) if b == s));
    }

    // Top level, and split everywhere.
    let input = b"NaN Infinity -Infinity[-Infinity]{\"a\":-Infinity}";
    let expected = vec![
        val(b"NaN"),
        val(b"Infinity"),
        val(b"-Infinity"),
        val(b"[-Infinity]"),
        val(b"{\"a\":-Infinity}"),
    ];
    for policy in POLICIES {
        assert_every_split(policy, BIG, input, &expected);
    }
    for f in &expected {
        let f = frame_value(f);
        assert!(f.has_nonfinite());
        assert!(serde_json::from_slice::<serde_json::Value>(&f.strict_bytes()).is_ok());
    }
}

#[test]
fn json_frame_accessors() {
    let b = Bytes::from_static(br#"{"a":[1,NaN]}"#);
    let f = JsonFrame::new(b.clone());
    assert_eq!(f.bytes(), &b);
    assert!(f.has_nonfinite());
    assert_eq!(&*f.strict_bytes(), br#"{"a":[1,null]}"#);
    assert_eq!(f.clone().into_bytes(), b);

    let plain = JsonFrame::new(Bytes::from_static(b"[1,2]"));
    assert!(!plain.has_nonfinite());
    match plain.strict_bytes() {
        Cow::Borrowed(s) => assert_eq!(s.as_ptr(), plain.bytes().as_ptr(), "no copy"),
        Cow::Owned(_) => panic!("a finite frame is borrowed"),
    }

    // The decoder's flag agrees with `new` (frames compare equal, flag included).
    let frames = decode_all(NewlinePolicy::Stream, BIG, br#"{"a":[1,NaN]}"#);
    assert_eq!(frames, vec![Frame::Value(f)]);
}

#[test]
fn frames_are_cut_without_copying() {
    let mut codec = JsonFrameCodec::new(NewlinePolicy::Stream, BIG);
    let mut buf = BytesMut::from(&br#"  {"a":1}{"b":2}"#[..]);
    let base = buf.as_ptr() as usize;
    let Some(Frame::Value(f)) = codec.decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(f.bytes().as_ptr() as usize, base + 2);
    let Some(Frame::Value(g)) = codec.decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(g.bytes().as_ptr() as usize, base + 9);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
}

#[test]
fn top_level_scalars() {
    let input = br#"1 2.5 -3e7 "s" true false null NaN -Infinity Infinity 0 -0.0E-0 1E+2"#;
    let expected: Vec<Frame> = input.split(|&b| b == b' ').map(val).collect::<Vec<_>>();
    for policy in POLICIES {
        assert_every_split(policy, BIG, input, &expected);
    }

    // No separator where the boundary is unambiguous.
    let input = br#""a"1"b"true[]{}null-2NaN0"#;
    let expected = [
        &br#""a""#[..],
        b"1",
        br#""b""#,
        b"true",
        b"[]",
        b"{}",
        b"null",
        b"-2",
        b"NaN",
        b"0",
    ]
    .map(val);
    for policy in POLICIES {
        assert_every_split(policy, BIG, input, &expected);
    }
}

#[test]
fn top_level_number_waits_for_its_terminator() {
    let mut codec = JsonFrameCodec::new(NewlinePolicy::Stream, BIG);
    let mut buf = BytesMut::from(&b"12"[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"34");
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b".5");
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b" ");
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(val(b"1234.5")));
    buf.extend_from_slice(b"true");
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(val(b"true")),
        "a literal needs no terminator"
    );
    buf.extend_from_slice(b"7");
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert_eq!(codec.decode_eof(&mut buf).unwrap(), Some(val(b"7")));
    assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// Bad input and resynchronisation

#[test]
fn garbage_then_value() {
    for policy in POLICIES {
        assert_every_split(
            policy,
            BIG,
            b"xyz\n{\"a\":1}",
            &[
                malformed(0, "expected a JSON value, found 'x'"),
                val(b"{\"a\":1}"),
            ],
        );
        // The rest of the garbage line is dropped, valid-looking or not.
        assert_every_split(
            policy,
            BIG,
            b"xyz {\"a\":1}\n{\"b\":2}\n",
            &[
                malformed(0, "expected a JSON value, found 'x'"),
                val(b"{\"b\":2}"),
            ],
        );
        // A stray closer after a value.
        assert_every_split(
            policy,
            BIG,
            b"{\"a\":1}}\n[2]",
            &[
                val(b"{\"a\":1}"),
                malformed(0, "expected a JSON value, found '}'"),
                val(b"[2]"),
            ],
        );
        // Non-ASCII garbage.
        assert_every_split(
            policy,
            BIG,
            "é\n3 ".as_bytes(),
            &[
                malformed(0, "expected a JSON value, found byte 0xc3"),
                val(b"3"),
            ],
        );
    }
}

#[test]
fn garbage_without_newline_is_discarded_across_reads() {
    for policy in POLICIES {
        let mut codec = JsonFrameCodec::new(policy, 1024);
        let mut buf = BytesMut::from(&b"garbage"[..]);
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(malformed(0, "expected a JSON value, found 'g'"))
        );
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty(), "skipped input is not kept");
        buf.extend_from_slice(b"{\"more\": garbage} [1]");
        assert_eq!(codec.decode(&mut buf).unwrap(), None, "still skipping");
        assert!(buf.is_empty());
        buf.extend_from_slice(b" tail\n{\"a\":1}");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(val(b"{\"a\":1}")));
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(codec.bytes_scanned(), 7 + 21 + 6 + 7);
    }
}

#[test]
fn malformed_inside_a_value_is_reported_where_it_occurs() {
    let cases: &[(&[u8], usize, &str)] = &[
        (br#"{"a" 1}"#, 5, "expected ':' after object key, found '1'"),
        (br#"[1,]"#, 3, "expected a JSON value, found ']'"),
        (
            br#"{"a":1 {"type":"x"}}"#,
            7,
            "expected ',' or '}', found '{'",
        ),
        (br#"{"a":1]"#, 6, "expected ',' or '}', found ']'"),
        (br#"[1}"#, 2, "expected ',' or ']', found '}'"),
        (br#"{,}"#, 1, "expected an object key, found ','"),
        (br#"{"a":1,}"#, 7, "expected an object key, found '}'"),
        (br#"{1:2}"#, 1, "expected an object key, found '1'"),
        (br#"{"a":}"#, 5, "expected a JSON value, found '}'"),
        (br#""\x""#, 2, "invalid escape 'x'"),
        (
            br#"["\u12G4"]"#,
            6,
            "invalid \\u escape, expected a hex digit, found 'G'",
        ),
        (
            br#""\u123""#,
            6,
            "invalid \\u escape, expected a hex digit, found '\"'",
        ),
        (
            br#""\u00e9\u""#,
            9,
            "invalid \\u escape, expected a hex digit, found '\"'",
        ),
        (b"-a", 1, "invalid number, found 'a'"),
        (b"[1.e5]", 3, "invalid number, found 'e'"),
        (b"[01]", 2, "leading zero in number"),
        (b"[1e+]", 4, "invalid number, found ']'"),
        (b"[.5]", 1, "expected a JSON value, found '.'"),
        (b"[+1]", 1, "expected a JSON value, found '+'"),
        (br#"{"a":tru}"#, 8, "invalid literal (expected true)"),
        (b"[nul]", 4, "invalid literal (expected null)"),
        (b"[NaN, Inf]", 9, "invalid literal (expected Infinity)"),
        (b"[-Inf]", 5, "invalid literal (expected Infinity)"),
        (b"[nan]", 2, "invalid literal (expected null)"),
        (b"\"a\tb\"", 2, "control character byte 0x09 in string"),
        (b"[\"\x00\"]", 2, "control character byte 0x00 in string"),
        (b"[1 2]", 3, "expected ',' or ']', found '2'"),
        (b"[1\x002]", 2, "expected ',' or ']', found byte 0x00"),
        (b"]", 0, "expected a JSON value, found ']'"),
    ];
    for &(bad, offset, reason) in cases {
        let mut input = bad.to_vec();
        input.extend_from_slice(b"\n{\"ok\":true}");
        let expected = [malformed(offset, reason), val(b"{\"ok\":true}")];
        for policy in POLICIES {
            assert_every_split(policy, BIG, &input, &expected);
        }
    }
}

#[test]
fn raw_newline_inside_a_string() {
    let input = b"{\"a\":\"b\nc\"}\n{\"ok\":true}";
    // Stream: the newline is the offending byte, so skipping ends on it; the rest of the broken
    // string is garbage on the next line.
    assert_every_split(
        NewlinePolicy::Stream,
        BIG,
        input,
        &[
            malformed(7, "control character newline in string"),
            malformed(0, "expected a JSON value, found 'c'"),
            val(b"{\"ok\":true}"),
        ],
    );
    // NDJSON: the newline ends the line.
    assert_every_split(
        NewlinePolicy::Ndjson,
        BIG,
        input,
        &[
            eol(7),
            malformed(0, "expected a JSON value, found 'c'"),
            val(b"{\"ok\":true}"),
        ],
    );
}

#[test]
fn ndjson_incomplete_line() {
    let cases: &[(&[u8], usize)] = &[
        (b"{\"a\":", 5),
        (b"[1,2", 4),
        (b"\"abc", 4),
        (b"tru", 3),
        (b"-", 1),
        (b"1.", 2),
        (b"[1", 2),
        (b"{\"a\"", 4),
        (b"\"\\", 2),
        (b"\"\\u00", 5),
        (b"-Inf", 4),
        (b"{ \r", 3),
    ];
    for &(partial, offset) in cases {
        let mut input = partial.to_vec();
        input.extend_from_slice(b"\n{\"b\":1}\n");
        assert_every_split(
            NewlinePolicy::Ndjson,
            BIG,
            &input,
            &[eol(offset), val(b"{\"b\":1}")],
        );
    }
    // The same input in stream mode: the newline is whitespace and the value goes on.
    assert_every_split(
        NewlinePolicy::Stream,
        BIG,
        b"{\"a\":\n{\"b\":1}\n",
        &[TRUNCATED],
    );
    assert_every_split(
        NewlinePolicy::Stream,
        BIG,
        b"{\"a\":\n[1,\n2]}",
        &[val(b"{\"a\":\n[1,\n2]}")],
    );
}

#[test]
fn ndjson_several_values_per_line_and_empty_lines() {
    let input = b"{\"a\":1}{\"b\":2} [3]\n\n\r\n  \n4\n\"x\" 5\n";
    let expected = [
        val(b"{\"a\":1}"),
        val(b"{\"b\":2}"),
        val(b"[3]"),
        val(b"4"),
        val(b"\"x\""),
        val(b"5"),
    ];
    assert_every_split(NewlinePolicy::Ndjson, BIG, input, &expected);
    assert_every_split(NewlinePolicy::Stream, BIG, input, &expected);
}

#[test]
fn oversized_frame_then_next_value() {
    let big = br#"{"data":"0123456789abcdef"}"#; // 27 bytes
    for policy in POLICIES {
        // Too large: dropped, the rest of its line too; the next line decodes.
        let mut input = big.to_vec();
        input.extend_from_slice(b" {\"b\":1}\n{\"c\":2}");
        assert_every_split(policy, 16, &input, &[too_large(16), val(b"{\"c\":2}")]);

        // Exactly at the limit: fine.
        assert_every_split(policy, 27, big, &[val(big)]);

        // Closing on byte limit + 1: too large, but still in step, so the next value decodes.
        let mut input = big.to_vec();
        input.extend_from_slice(b"{\"b\":1}");
        assert_every_split(policy, 26, &input, &[too_large(26), val(b"{\"b\":1}")]);
        // One byte less: not closed within limit + 1 bytes, so the line is skipped.
        assert_every_split(policy, 25, &input, &[too_large(25)]);

        // Top-level numbers: the terminator is not part of the frame.
        assert_every_split(policy, 5, b"12345 6", &[val(b"12345"), val(b"6")]);
        assert_every_split(policy, 5, b"12345", &[val(b"12345")]);
        assert_every_split(policy, 5, b"123456 7\n8", &[too_large(5), val(b"8")]);
        assert_every_split(policy, 5, b"\"abcd\"", &[too_large(5)]);
    }
}

#[test]
fn oversized_frame_memory_stays_bounded() {
    for policy in POLICIES {
        let limit = 1024;
        let mut codec = JsonFrameCodec::new(policy, limit);
        let mut buf = BytesMut::new();
        let chunk = b"123456789,".repeat(400); // 4000 bytes, no newline
        buf.extend_from_slice(b"[");
        let mut frames = Vec::new();
        for _ in 0..1000 {
            buf.extend_from_slice(&chunk);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                frames.push(f);
            }
            assert!(buf.len() <= limit + 1 + chunk.len(), "{}", buf.len());
        }
        assert!(buf.is_empty(), "skipping keeps nothing");
        buf.extend_from_slice(b"0]\n{\"a\":1}\n");
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            frames.push(f);
        }
        assert_eq!(frames, vec![too_large(limit), val(b"{\"a\":1}")]);
        assert_eq!(codec.bytes_scanned(), 1 + 4_000_000 + 11);
    }
}

#[test]
fn decode_eof_cases() {
    for policy in POLICIES {
        assert_eq!(decode_all(policy, BIG, b""), vec![]);
        assert_eq!(decode_all(policy, BIG, b"  \n\t\r\n"), vec![]);
        assert_eq!(
            decode_all(policy, BIG, b"xyz"),
            vec![malformed(0, "expected a JSON value, found 'x'")]
        );
        for complete in [&b"123"[..], b"0", b"-1.5e+3", b"2E7", b"-0.25"] {
            assert_eq!(decode_all(policy, BIG, complete), vec![val(complete)]);
            let mut with_ws = complete.to_vec();
            with_ws.extend_from_slice(b" \n");
            assert_eq!(decode_all(policy, BIG, &with_ws), vec![val(complete)]);
        }
        for partial in [
            &b"-"[..],
            b"1.",
            b"1e",
            b"1e-",
            b"{\"a\":",
            b"\"abc",
            b"tru",
            b"-Inf",
            b"[1",
            b"\"\\u12",
            b"{\"a\":1",
        ] {
            assert_every_split(policy, BIG, partial, &[TRUNCATED]);
        }
        // After Truncated, the codec is clean and the buffer empty.
        let mut codec = JsonFrameCodec::new(policy, BIG);
        let mut buf = BytesMut::from(&b"[1, {\"a\""[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), Some(TRUNCATED));
        assert!(buf.is_empty());
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"[2]");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(val(b"[2]")));
    }
}

#[test]
fn nesting_depth_cap() {
    let depth = MAX_NESTING_DEPTH;
    assert_eq!(depth, 1024);
    for policy in POLICIES {
        let ok = [b"[".repeat(depth), b"]".repeat(depth)].concat();
        assert_eq!(decode_all(policy, BIG, &ok), vec![val(&ok)]);
        assert_eq!(decode_bytewise(policy, BIG, &ok), vec![val(&ok)]);

        let deep = [
            b"[".repeat(depth + 1),
            b"]".repeat(depth + 1),
            b"\n7 ".to_vec(),
        ]
        .concat();
        assert_eq!(
            decode_all(policy, BIG, &deep),
            vec![malformed(depth, "nesting too deep"), val(b"7")]
        );

        let objects = [b"{\"a\":".repeat(depth), b"[".to_vec()].concat();
        assert_eq!(
            decode_all(policy, BIG, &objects),
            vec![malformed(5 * depth, "nesting too deep")]
        );
        let objects = [b"{\"a\":".repeat(depth), b"1".to_vec(), b"}".repeat(depth)].concat();
        assert_eq!(decode_all(policy, BIG, &objects), vec![val(&objects)]);
    }
}

// ---------------------------------------------------------------------------------------------
// Linearity

/// A large reply shaped like a viewport screenshot: one big base64 string.
fn screenshot_reply(payload_len: usize) -> Vec<u8> {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut v = Vec::with_capacity(payload_len + 128);
    v.extend_from_slice(br#"{"status": "success", "result": {"format": "png", "data": ""#);
    let mut x: u32 = 12345;
    for _ in 0..payload_len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        v.push(B64[(x >> 16) as usize % 64]);
    }
    v.extend_from_slice(br#"", "size": [1920, 1080], "scale": NaN}}"#);
    v
}

/// Feeds `input` in `chunk`-byte reads; after every read, every byte fed so far has been scanned
/// exactly once (nothing is rescanned, nothing is left behind).
fn assert_each_byte_scanned_once(input: &[u8], chunk: usize) {
    let mut codec = JsonFrameCodec::new(NewlinePolicy::Stream, BIG);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0u64;
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        fed += piece.len() as u64;
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            frames.push(f);
        }
        assert_eq!(codec.bytes_scanned(), fed, "chunk size {chunk}");
    }
    assert_eq!(frames, vec![val(input)]);
    assert!(frame_value(&frames[0]).has_nonfinite());
}

#[test]
fn multi_megabyte_value_scans_each_byte_once() {
    let input = screenshot_reply(4 << 20);
    assert_each_byte_scanned_once(&input, 1);
    assert_each_byte_scanned_once(&input, 8 << 10);
    assert_each_byte_scanned_once(&input, 8191);
    assert_each_byte_scanned_once(&input, input.len());
}

#[test]
fn number_heavy_value_scans_each_byte_once() {
    let mut input = b"{\"v\": [".to_vec();
    for i in 0..100_000u32 {
        input.extend_from_slice(format!("{}.{}e-{}, ", i, i % 7, i % 3).as_bytes());
    }
    input.extend_from_slice(b"-Infinity]}");
    assert_each_byte_scanned_once(&input, 1);
    assert_each_byte_scanned_once(&input, 8 << 10);
}

/// Ad-hoc throughput, not a pass/fail check:
/// `cargo test --release --test codec -- --ignored --nocapture throughput`.
#[test]
#[ignore]
fn throughput() {
    fn run(name: &str, input: &[u8], chunk: usize) {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let mut codec = JsonFrameCodec::new(NewlinePolicy::Stream, BIG);
            let mut buf = BytesMut::new();
            let mut n = 0;
            let t = Instant::now();
            for piece in input.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(f) = codec.decode(&mut buf).unwrap() {
                    assert!(matches!(f, Frame::Value(_)));
                    n += 1;
                }
            }
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(n, 1);
            best = best.min(secs);
        }
        // The same reads into the buffer without decoding, for comparison.
        let mut copy_only = f64::MAX;
        for _ in 0..5 {
            let mut buf = BytesMut::new();
            let t = Instant::now();
            for piece in input.chunks(chunk) {
                buf.extend_from_slice(piece);
            }
            copy_only = copy_only.min(t.elapsed().as_secs_f64());
            assert_eq!(buf.len(), input.len());
        }
        let mb = input.len() as f64 / (1 << 20) as f64;
        println!(
            "{name}: {mb:.1} MiB in {chunk}-byte reads: {:.2} ms, {:.0} MiB/s \
             (buffer filling alone: {:.2} ms)",
            best * 1e3,
            mb / best,
            copy_only * 1e3
        );
    }
    let shot = screenshot_reply(16 << 20);
    run("16 MiB base64 reply", &shot, shot.len());
    run("16 MiB base64 reply", &shot, 8 << 10);
    let mut nums = b"[".to_vec();
    let mut i = 0u64;
    while nums.len() < 16 << 20 {
        nums.extend_from_slice(
            format!("{{\"i\": {i}, \"x\": {}.5, \"k\": true}}, ", i * 7).as_bytes(),
        );
        i += 1;
    }
    nums.extend_from_slice(b"null]");
    run("16 MiB objects/numbers", &nums, nums.len());
    run("16 MiB objects/numbers", &nums, 8 << 10);
}

// ---------------------------------------------------------------------------------------------
// With FramedRead

#[tokio::test]
async fn framed_read_keeps_going_after_bad_input() {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::FramedRead;

    let (mut tx, rx) = tokio::io::duplex(16);
    let writer = tokio::spawn(async move {
        let input = b"{\"a\": [1, 2]} garbage\n{\"b\": \"\\u00e9\"}[NaN]\n42";
        for piece in input.chunks(5) {
            tx.write_all(piece).await.unwrap();
        }
    });
    let frames: Vec<Frame> = FramedRead::new(rx, JsonFrameCodec::new(NewlinePolicy::Stream, 1024))
        .map(|r| r.unwrap())
        .collect()
        .await;
    writer.await.unwrap();
    assert_eq!(
        frames,
        vec![
            val(b"{\"a\": [1, 2]}"),
            malformed(0, "expected a JSON value, found 'g'"),
            val(b"{\"b\": \"\\u00e9\"}"),
            val(b"[NaN]"),
            val(b"42"),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Properties

/// A JSON value, plus Python's non-finite tokens.
#[derive(Clone, Debug)]
enum J {
    Null,
    Bool(bool),
    /// A number, already rendered.
    Num(String),
    Str(String),
    /// 0: NaN, 1: Infinity, 2: -Infinity.
    NonFinite(u8),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\"\\\\{}\\[\\]:, a-zé日😀]{0,10}",
        Just("NaN".to_owned()),
        Just("-Infinity".to_owned()),
    ]
}

fn arb_j() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i64>().prop_map(|n| J::Num(n.to_string())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| J::Num(serde_json::to_string(&f).unwrap())),
        (0u32..1000, 0u32..1000, -20i32..20).prop_map(|(a, b, e)| J::Num(format!("-{a}.{b}E{e}"))),
        arb_string().prop_map(J::Str),
        (0u8..3).prop_map(J::NonFinite),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(J::Arr),
            prop::collection::vec((arb_string(), inner), 0..6).prop_map(J::Obj),
        ]
    })
}

/// Like [`arb_j`], with ASCII strings and no non-finite tokens, so serde_json can judge it.
fn ascii_j() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i32>().prop_map(|n| J::Num(n.to_string())),
        (0u32..1000, 0u32..1000, -20i32..20).prop_map(|(a, b, e)| J::Num(format!("-{a}.{b}e{e}"))),
        "[\\x00-\\x7f]{0,8}".prop_map(J::Str),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::Arr),
            prop::collection::vec(("[ -~]{0,4}", inner), 0..4).prop_map(J::Obj),
        ]
    })
}

/// Renders `j`, with whitespace between tokens drawn from `ws` (cycled); non-finite tokens as
/// Python writes them, or as `null` when `strict`.
struct Render<'a> {
    ws: &'a [u8],
    next: usize,
    newlines: bool,
    strict: bool,
}

impl Render<'_> {
    fn space(&mut self, out: &mut Vec<u8>) {
        if self.ws.is_empty() {
            return;
        }
        let w = self.ws[self.next % self.ws.len()];
        self.next += 1;
        let choices: &[u8] = if self.newlines { b" \t\r\n" } else { b" \t\r" };
        for i in 0..(w % 4) {
            out.push(choices[((w >> 2) as usize + i as usize) % choices.len()]);
        }
    }

    fn value(&mut self, j: &J, out: &mut Vec<u8>) {
        match j {
            J::Null => out.extend_from_slice(b"null"),
            J::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            J::Num(n) => out.extend_from_slice(n.as_bytes()),
            J::Str(s) => out.extend_from_slice(serde_json::to_string(s).unwrap().as_bytes()),
            J::NonFinite(k) => out.extend_from_slice(if self.strict {
                b"null"
            } else {
                [&b"NaN"[..], b"Infinity", b"-Infinity"][*k as usize]
            }),
            J::Arr(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    self.space(out);
                    if i > 0 {
                        out.push(b',');
                        self.space(out);
                    }
                    self.value(item, out);
                }
                self.space(out);
                out.push(b']');
            }
            J::Obj(members) => {
                out.push(b'{');
                for (i, (k, v)) in members.iter().enumerate() {
                    self.space(out);
                    if i > 0 {
                        out.push(b',');
                        self.space(out);
                    }
                    out.extend_from_slice(serde_json::to_string(k).unwrap().as_bytes());
                    self.space(out);
                    out.push(b':');
                    self.space(out);
                    self.value(v, out);
                }
                self.space(out);
                out.push(b'}');
            }
        }
    }
}

fn has_nonfinite(j: &J) -> bool {
    match j {
        J::NonFinite(_) => true,
        J::Arr(items) => items.iter().any(has_nonfinite),
        J::Obj(members) => members.iter().any(|(_, v)| has_nonfinite(v)),
        _ => false,
    }
}

/// Splits `input` into reads whose sizes cycle through `sizes`.
fn chunked<'a>(input: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(rest.len())
            .max(1);
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a);
        rest = b;
        i += 1;
    }
    out
}

proptest! {

    #[test]
    fn random_values_in_random_chunks(
        values in prop::collection::vec(arb_j(), 1..6),
        ws in prop::collection::vec(any::<u8>(), 0..16),
        seps in prop::collection::vec(any::<u8>(), 1..8),
        sizes in prop::collection::vec(1usize..64, 1..8),
        ndjson in any::<bool>(),
    ) {
        let policy = if ndjson { NewlinePolicy::Ndjson } else { NewlinePolicy::Stream };
        let mut input = Vec::new();
        let mut expected = Vec::new();
        let mut strict_expected = Vec::new();
        for (i, j) in values.iter().enumerate() {
            let mut text = Vec::new();
            Render { ws: &ws, next: 0, newlines: !ndjson, strict: false }.value(j, &mut text);
            let mut strict = Vec::new();
            Render { ws: &ws, next: 0, newlines: !ndjson, strict: true }.value(j, &mut strict);
            // Separator: random whitespace, newlines allowed in both policies.
            let sep = match seps[i % seps.len()] % 5 {
                0 => "",
                1 => " ",
                2 => "\n",
                3 => "\r\n\t",
                _ => "\n\n ",
            };
            let prev_is_number = matches!(values.get(i.wrapping_sub(1)), Some(J::Num(_)));
            if prev_is_number && sep.is_empty() && matches!(text[0], b'0'..=b'9' | b'-') {
                input.push(b' ');
            }
            input.extend_from_slice(sep.as_bytes());
            input.extend_from_slice(&text);
            expected.push(val(&text));
            strict_expected.push((has_nonfinite(j), strict));
        }

        let whole = decode_all(policy, BIG, &input);
        prop_assert_eq!(&whole, &expected);
        let pieces = decode_chunks_with(policy, BIG, &input, &sizes);
        prop_assert_eq!(&pieces, &expected);

        for (frame, (nonfinite, strict)) in whole.iter().zip(&strict_expected) {
            let f = frame_value(frame);
            prop_assert_eq!(f.has_nonfinite(), *nonfinite);
            let got: serde_json::Value = serde_json::from_slice(&f.strict_bytes()).unwrap();
            let want: serde_json::Value = serde_json::from_slice(strict).unwrap();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn arbitrary_bytes_decode_the_same_in_any_chunking(
        input in prop::collection::vec(
            prop::sample::select(b"{}[]\":,\\ \n\t01-.eEuntrlfasNIiy9x\x01\xc3".to_vec()),
            0..80,
        ),
        sizes in prop::collection::vec(1usize..16, 1..8),
        max in 1usize..48,
        ndjson in any::<bool>(),
    ) {
        let policy = if ndjson { NewlinePolicy::Ndjson } else { NewlinePolicy::Stream };
        let whole = decode_all(policy, max, &input);
        prop_assert_eq!(&decode_chunks_with(policy, max, &input, &sizes), &whole);
        prop_assert_eq!(&decode_bytewise(policy, max, &input), &whole);
        for f in &whole {
            if let Frame::Value(v) = f {
                prop_assert!(v.bytes().len() <= max);
            }
        }
    }

    #[test]
    fn agrees_with_serde_json_on_single_documents(
        input in prop::collection::vec(
            prop::sample::select(b"{}[]\":, 01-.eE+truefalsnl\\u9a".to_vec()),
            1..40,
        ),
    ) {
        let frames = decode_all(NewlinePolicy::Stream, BIG, &input);
        let trimmed = std::str::from_utf8(&input).unwrap().trim_matches(|c| " \n\t\r".contains(c));
        let parsed = serde_json::from_slice::<serde_json::Value>(&input);
        // The codec frames numbers; it does not evaluate them.
        prop_assume!(!matches!(&parsed, Err(e) if e.to_string().contains("number out of range")));
        let serde_ok = parsed.is_ok();
        let codec_one_value = frames == vec![val(trimmed.as_bytes())];
        prop_assert_eq!(serde_ok, codec_one_value, "frames: {:?}", frames);
    }

    #[test]
    fn agrees_with_serde_json_on_near_valid_documents(
        j in ascii_j(),
        ws in prop::collection::vec(any::<u8>(), 0..8),
        edit in 0u8..4,
        at in any::<prop::sample::Index>(),
        byte in prop::sample::select(b"{}[]\":,\\ \n01-+.eEtrufalsn\x01".to_vec()),
    ) {
        let mut input = Vec::new();
        Render { ws: &ws, next: 0, newlines: true, strict: false }.value(&j, &mut input);
        let i = at.index(input.len() + 1);
        match edit {
            0 => {}
            1 => input.insert(i, byte),
            2 if i < input.len() => { input.remove(i); }
            _ if i < input.len() => input[i] = byte,
            _ => {}
        }
        let parsed = serde_json::from_slice::<serde_json::Value>(&input);
        prop_assume!(!matches!(&parsed, Err(e)
            if e.to_string().contains("number out of range") || e.to_string().contains("surrogate")));
        let frames = decode_all(NewlinePolicy::Stream, BIG, &input);
        let trimmed = std::str::from_utf8(&input).unwrap().trim_matches(|c| " \n\t\r".contains(c));
        let codec_one_value = frames == vec![val(trimmed.as_bytes())];
        prop_assert_eq!(parsed.is_ok(), codec_one_value, "frames: {:?}", frames);
        if edit == 0 {
            prop_assert!(codec_one_value);
        }
    }

    #[test]
    fn ndjson_resynchronises_after_any_garbage_line(
        garbage in prop::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..64),
        j in arb_j(),
    ) {
        let mut text = Vec::new();
        Render { ws: &[], next: 0, newlines: false, strict: false }.value(&j, &mut text);
        let mut input = garbage.clone();
        input.push(b'\n');
        input.extend_from_slice(&text);
        input.push(b'\n');
        let frames = decode_all(NewlinePolicy::Ndjson, BIG, &input);
        prop_assert_eq!(frames.last(), Some(&val(&text)));
        // Whatever the garbage, its line yields at most a few frames, and never swallows the value.
        prop_assert_eq!(&decode_bytewise(NewlinePolicy::Ndjson, BIG, &input), &frames);
    }
}

fn decode_chunks_with(
    policy: NewlinePolicy,
    max: usize,
    input: &[u8],
    sizes: &[usize],
) -> Vec<Frame> {
    feed_chunks(&mut JsonFrameCodec::new(policy, max), chunked(input, sizes))
}
