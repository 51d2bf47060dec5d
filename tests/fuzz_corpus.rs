//! The fuzz suite without a fuzzer: replays every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` through the same checks the cargo-fuzz targets make
//! (`fuzz/src/lib.rs`, included here as a module), so CI runs the corpus on stable.
//!
//! Run the fuzzers themselves with `scripts/fuzz.sh`; see `fuzz/README.md`.

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use blender_session_manager::blender::reply::BlenderReply;
use blender_session_manager::wire::JsonFrame;
use bytes::Bytes;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none when the directory does not exist.
fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    out.sort();
    out
}

/// Runs `target`'s check on every corpus and regression file, naming each file that fails.
fn replay(target: &str) {
    let corpus = files("corpus", target);
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ holds no seed inputs"
    );
    let mut failed = Vec::new();
    let all: Vec<PathBuf> = corpus
        .into_iter()
        .chain(files("regressions", target))
        .collect();
    for path in &all {
        let data = std::fs::read(path).expect("readable corpus file");
        if catch_unwind(AssertUnwindSafe(|| assert!(checks::check(target, &data)))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    eprintln!("{target}: replayed {} inputs", all.len());
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail their checks:\n{}",
        failed.len(),
        all.len(),
        failed.join("\n")
    );
}

#[test]
fn corpus_codec_stream() {
    replay("codec_stream");
}

#[test]
fn corpus_codec_ndjson() {
    replay("codec_ndjson");
}

#[test]
fn corpus_rpc_request() {
    replay("rpc_request");
}

#[test]
fn corpus_blender_reply() {
    replay("blender_reply");
}

#[test]
fn every_corpus_directory_is_a_target() {
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    checks::TARGETS.contains(&name.as_str()),
                    "fuzz/{kind}/{name} is not a fuzz target"
                );
            }
        }
    }
}

#[test]
fn codec_input_header_layout() {
    // Bits 0-1: the limit; bits 2-4: two chunk sizes follow; they repeat over the payload.
    let input = checks::CodecInput::parse(b"\x0a\x00\x02abcdefg").unwrap();
    assert_eq!(input.max_frame_bytes, checks::LIMITS[2]);
    assert_eq!(input.chunk_sizes, vec![1, 3]);
    assert_eq!(input.chunks(), vec![&b"a"[..], b"bcd", b"e", b"fg"]);
    // No size bytes: bits 5-7 give one power-of-two chunk size.
    let input = checks::CodecInput::parse(b"\x61abcde").unwrap();
    assert_eq!(input.max_frame_bytes, checks::LIMITS[1]);
    assert_eq!(input.chunk_sizes, vec![8]);
    assert_eq!(input.payload, b"abcde");
    assert!(checks::CodecInput::parse(b"").is_none());
    assert!(!checks::check("no_such_target", b"{}"));
}

// ---------------------------------------------------------------------------------------------
// Regressions: each input in fuzz/regressions/ with what it must now do.

fn regression(target: &str, name: &str) -> Vec<u8> {
    let path = fuzz_dir().join("regressions").join(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn relay(data: &[u8]) -> Vec<u8> {
    let frame = JsonFrame::new(Bytes::copy_from_slice(data));
    BlenderReply::parse(frame).unwrap().relay_bytes().to_vec()
}

/// `"_state": null` was read as no `_state` at all (serde's `Option` maps `null` to `None`), so the
/// member the manager asked for reached stock clients.
#[test]
fn regression_reply_state_null_is_cut_from_relay() {
    let data = regression("blender_reply", "state-null-in-error-reply");
    checks::blender_reply(&data);
    assert_eq!(
        relay(&data),
        br#"{"status":"error","message":"boom","traceback":"T"}"#
    );
}

/// `"_state": NaN` is `null` once strict, and went the same way as `"_state": null`.
#[test]
fn regression_reply_state_nan_is_cut_from_relay() {
    let data = regression("blender_reply", "state-nan");
    checks::blender_reply(&data);
    assert_eq!(relay(&data), br#"{"status":"success"}"#);
}

/// A `_state` key written with an escape (`"\u005fstate"`) is the same member to the JSON parser,
/// but the cut compared key bytes literally and left it in the relayed bytes, with and without
/// non-finite numbers in the reply.
#[test]
fn regression_reply_escaped_state_key_is_cut_from_relay() {
    let data = regression("blender_reply", "state-escaped-key");
    checks::blender_reply(&data);
    assert_eq!(relay(&data), br#"{"status":"success"}"#);
    let data = regression("blender_reply", "state-escaped-key-with-nan");
    checks::blender_reply(&data);
    assert_eq!(relay(&data), br#"{"status":"success","result":[NaN]}"#);
}
