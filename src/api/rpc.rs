//! JSON-RPC 2.0 envelopes: parsing a request frame and writing responses.
//!
//! Requests are parsed into borrowed raw members (`id` and `params` stay raw JSON)
//! so nothing is rebuilt; responses are assembled from the raw `id` and an
//! already-serialised result, one line each.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::methods::Body;
use crate::error::ManagerError;

/// A parsed request. `id` is `None` for a notification (no reply is sent).
#[derive(Debug)]
pub struct RpcRequest {
    pub id: Option<String>,
    pub method: String,
    pub params: Option<Box<RawValue>>,
}

/// Parses one frame (strict JSON bytes). On failure returns the id, if one could
/// be read, with the error to answer.
pub fn parse_request(bytes: &[u8]) -> Result<RpcRequest, (Option<String>, ManagerError)> {
    let invalid = |why: &str| ManagerError::InvalidRequest(why.to_string());
    match bytes.first() {
        Some(b'{') => {}
        Some(b'[') => return Err((None, invalid("batch requests are not supported"))),
        _ => return Err((None, invalid("expected a JSON object"))),
    }
    let members: HashMap<String, &RawValue> =
        serde_json::from_slice(bytes).map_err(|e| (None, ManagerError::Parse(e.to_string())))?;
    let id = match members.get("id") {
        None => None,
        Some(raw) => {
            let text = raw.get();
            let first = text.as_bytes()[0];
            if !(first == b'"' || first == b'-' || first.is_ascii_digit() || text == "null") {
                return Err((None, invalid("id must be a string, a number or null")));
            }
            Some(text.to_string())
        }
    };
    if let Some(v) = members.get("jsonrpc") {
        if v.get() != "\"2.0\"" {
            return Err((id, invalid("jsonrpc must be \"2.0\"")));
        }
    }
    let method = match members.get("method") {
        Some(raw) => serde_json::from_str::<String>(raw.get())
            .map_err(|_| (id.clone(), invalid("method must be a string")))?,
        None => return Err((id, invalid("missing method"))),
    };
    let params = members.get("params").map(|raw| (*raw).to_owned());
    Ok(RpcRequest { id, method, params })
}

/// `{"jsonrpc":"2.0","id":..,"result":..}\n` from a raw id and serialised result.
pub fn success(id: &str, result: &[u8]) -> Vec<u8> {
    let mut out = success_head(id, result.len() + SUCCESS_TAIL.len());
    out.extend_from_slice(result);
    out.extend_from_slice(SUCCESS_TAIL);
    out
}

/// `{"jsonrpc":"2.0","id":..,"result":`, with room for `extra` more bytes.
fn success_head(id: &str, extra: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(30 + id.len() + extra);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b",\"result\":");
    out
}

const SUCCESS_TAIL: &[u8] = b"}\n";

/// Results up to this size are copied into their envelope; bigger ones are written
/// after it, as they are.
const COPY_LIMIT: usize = 64 * 1024;

/// A response line in the parts it is written in: `head`, the pieces of `body`,
/// `tail`. A big result stays in its own buffers instead of being copied into the
/// envelope.
#[derive(Debug)]
pub struct Response {
    pub head: Vec<u8>,
    pub body: Vec<Bytes>,
    pub tail: &'static [u8],
}

impl Response {
    /// A response already in one piece.
    pub fn whole(line: Vec<u8>) -> Response {
        Response {
            head: line,
            body: Vec::new(),
            tail: b"",
        }
    }

    /// [`success`], without copying a big result.
    pub fn success(id: &str, result: Body) -> Response {
        if result.len() <= COPY_LIMIT {
            let mut out = success_head(id, result.len() + SUCCESS_TAIL.len());
            for part in result.parts() {
                out.extend_from_slice(part);
            }
            out.extend_from_slice(SUCCESS_TAIL);
            return Response::whole(out);
        }
        Response {
            head: success_head(id, 0),
            body: result.parts().to_vec(),
            tail: SUCCESS_TAIL,
        }
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.body.iter().map(Bytes::len).sum::<usize>() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `{"jsonrpc":"2.0","id":..,"error":{"code","message","data"}}\n`.
pub fn failure(id: Option<&str>, err: &ManagerError) -> Vec<u8> {
    let error = serde_json::json!({
        "code": err.code(),
        "message": err.to_string(),
        "data": err.data(),
    });
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.unwrap_or("null").as_bytes());
    out.extend_from_slice(b",\"error\":");
    serde_json::to_writer(&mut out, &error).expect("error object serialises");
    out.extend_from_slice(b"}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_methods_and_params_raw() {
        let r = parse_request(br#"{"jsonrpc":"2.0","id":7,"method":"ping","params":{"a":[1]}}"#)
            .unwrap();
        assert_eq!(r.id.as_deref(), Some("7"));
        assert_eq!(r.method, "ping");
        assert_eq!(r.params.unwrap().get(), r#"{"a":[1]}"#);
        let r = parse_request(br#"{"jsonrpc":"2.0","method":"x"}"#).unwrap();
        assert!(r.id.is_none(), "notification");
        let r = parse_request(br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#).unwrap();
        assert_eq!(r.id.as_deref(), Some("null"));
    }

    #[test]
    fn names_what_is_wrong() {
        let e = |b: &[u8]| parse_request(b).unwrap_err();
        assert_eq!(
            e(b"[1]").1.to_string(),
            "Invalid request: batch requests are not supported"
        );
        assert_eq!(
            e(b"3").1.to_string(),
            "Invalid request: expected a JSON object"
        );
        let (id, err) = e(br#"{"id":"a","method":5}"#);
        assert_eq!((id.as_deref(), err.code()), (Some("\"a\""), -32600));
        assert_eq!(e(br#"{"id":{},"method":"m"}"#).1.code(), -32600);
        assert_eq!(
            e(br#"{"jsonrpc":"1.0","id":1,"method":"m"}"#).1.code(),
            -32600
        );
        assert_eq!(
            e(br#"{"id":1}"#).1.to_string(),
            "Invalid request: missing method"
        );
    }

    #[test]
    fn big_results_are_written_after_their_envelope_not_copied_into_it() {
        let small = br#"{"closed":true}"#.to_vec();
        let r = Response::success("7", Body::from(small.clone()));
        assert!(r.body.is_empty() && r.tail.is_empty());
        assert_eq!(r.head, success("7", &small));
        let big = format!("\"{}\"", "x".repeat(COPY_LIMIT)).into_bytes();
        let given = Body::from(big.clone());
        let at = given.parts()[0].as_ptr();
        let r = Response::success("\"id\"", given);
        assert_eq!(r.body[0].as_ptr(), at, "the result was copied");
        let line = [&r.head[..], &r.body.concat(), r.tail].concat();
        assert_eq!(line, success("\"id\"", &big));
        assert_eq!(r.len(), line.len());
    }

    #[test]
    fn writes_one_line_envelopes() {
        let ok = success("\"x\"", br#"{"closed":true}"#);
        let v: serde_json::Value = serde_json::from_slice(&ok).unwrap();
        assert_eq!(v["result"]["closed"], true);
        assert_eq!(ok.iter().filter(|b| **b == b'\n').count(), 1);
        let err = failure(None, &ManagerError::SessionNotFound("s".into()));
        let v: serde_json::Value = serde_json::from_slice(&err).unwrap();
        assert_eq!(v["id"], serde_json::Value::Null);
        assert_eq!(v["error"]["code"], -32001);
        assert_eq!(v["error"]["message"], "Session not found: s");
        assert_eq!(v["error"]["data"]["kind"], "session_not_found");
    }
}
