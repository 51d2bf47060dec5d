//! Requests in the addon's wire format.
//!
//! `{"type": <command>, "params": {...}, "session_id": <id>, "_state": true}` followed
//! by `\n`. Stock addons ignore the extra top-level keys and tolerate the newline;
//! the project's addon uses `session_id` to keep the session's `execute_code`
//! namespace across reconnects and `_state` to piggyback scene state on replies.
//! Params are spliced in as raw bytes, never re-serialised.

use crate::raw_json::RawJson;

/// Builds one request line. `session_id` is `None` for the manager's own probes.
pub fn build(command_type: &str, params: Option<&RawJson>, session_id: Option<&str>) -> Vec<u8> {
    let params_len = params.map_or(2, RawJson::len);
    let mut out = Vec::with_capacity(64 + command_type.len() + params_len);
    out.extend_from_slice(b"{\"type\":");
    serde_json::to_writer(&mut out, command_type).expect("string serialises");
    out.extend_from_slice(b",\"params\":");
    match params {
        Some(p) => out.extend_from_slice(p.bytes()),
        None => out.extend_from_slice(b"{}"),
    }
    if let Some(id) = session_id {
        out.extend_from_slice(b",\"session_id\":");
        serde_json::to_writer(&mut out, id).expect("string serialises");
        out.extend_from_slice(b",\"_state\":true");
    }
    out.extend_from_slice(b"}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn builds_the_addon_envelope() {
        let p = RawJson::parse(Bytes::from_static(br#"{"code":"print(\"x\")"}"#)).unwrap();
        let line = build("execute_code", Some(&p), Some("scene-1"));
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "execute_code", "params": {"code": "print(\"x\")"},
                               "session_id": "scene-1", "_state": true})
        );
        let v: serde_json::Value = serde_json::from_slice(&build("ping", None, None)).unwrap();
        assert_eq!(v, serde_json::json!({"type": "ping", "params": {}}));
    }
}
