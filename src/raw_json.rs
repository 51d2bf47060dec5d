//! [`RawJson`]: a JSON value kept as the bytes it arrived in.
//!
//! Blender replies can be many megabytes (base64 screenshots, scene dumps). They are
//! never rebuilt into a `serde_json::Value`: the bytes of the `result` member are
//! sliced out of the received frame (zero copy) and written back out verbatim when a
//! reply or a history entry is serialised.

use bytes::Bytes;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// Bytes holding exactly one valid, strict JSON value.
#[derive(Clone, PartialEq, Eq)]
pub struct RawJson(Bytes);

impl RawJson {
    /// Wraps bytes the caller has already validated as strict JSON (for example a
    /// slice of a frame that `serde_json` parsed).
    pub fn from_validated(bytes: Bytes) -> Self {
        RawJson(bytes)
    }

    /// Validates and wraps.
    pub fn parse(bytes: Bytes) -> Result<Self, serde_json::Error> {
        serde_json::from_slice::<&RawValue>(&bytes)?;
        Ok(RawJson(bytes))
    }

    /// Serialises a value.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Self {
        RawJson(Bytes::from(
            serde_json::to_vec(value).expect("in-memory values serialise"),
        ))
    }

    /// `{}`, without allocating.
    pub fn empty_object() -> Self {
        RawJson::from_validated(Bytes::from_static(b"{}"))
    }

    pub fn null() -> Self {
        RawJson(Bytes::from_static(b"null"))
    }

    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses into a typed value.
    pub fn to_typed<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.0)
    }

    /// Parses into a `serde_json::Value` (for small values only).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0).unwrap_or(serde_json::Value::Null)
    }

    /// A copy in an allocation of its own, so keeping it never pins the (possibly
    /// much bigger) buffer these bytes are a slice of.
    pub fn detached(&self) -> RawJson {
        RawJson(Bytes::copy_from_slice(&self.0))
    }

    /// A copy for keeping (history, state), cut down to at most `limit` bytes:
    /// values above the limit become a marker object
    /// `{"_truncated": true, "bytes": N, "preview": "<first bytes>"}`. Always a fresh
    /// allocation, so a small kept value never pins the (possibly huge) read buffer
    /// the reply arrived in.
    pub fn truncated(&self, limit: usize) -> RawJson {
        if self.0.len() <= limit {
            return self.detached();
        }
        let cut = limit.min(1024).min(self.0.len());
        let preview = String::from_utf8_lossy(&self.0[..cut]);
        RawJson::from_value(&serde_json::json!({
            "_truncated": true,
            "bytes": self.0.len(),
            "preview": preview,
        }))
    }
}

impl std::fmt::Debug for RawJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.0[..self.0.len().min(200)];
        write!(f, "RawJson({})", String::from_utf8_lossy(shown))
    }
}

/// The struct name (and field name) through which `serde_json` serialisers take a
/// value's JSON text verbatim: what `RawValue::serialize` emits (serde_json's
/// `raw::TOKEN`, with its `raw_value` feature). `serde_json::to_vec` and friends
/// write the text as it is; `serde_json::to_value` parses it.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

impl Serialize for RawJson {
    /// Writes the bytes verbatim, the way `RawValue` does, without parsing them
    /// again: they were checked when the `RawJson` was made. Only UTF-8 is
    /// checked here (the raw path takes a `&str`), a pass far cheaper than a parse.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let text = std::str::from_utf8(&self.0).map_err(serde::ser::Error::custom)?;
        let mut s = serializer.serialize_struct(RAW_VALUE_TOKEN, 1)?;
        s.serialize_field(RAW_VALUE_TOKEN, text)?;
        s.end()
    }
}

impl<'de> serde::Deserialize<'de> for RawJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: Box<RawValue> = Box::deserialize(deserializer)?;
        Ok(RawJson(Bytes::from(raw.get().to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_copies_never_share_the_reply_buffer() {
        let reply = Bytes::from(format!("[{}]", "1,".repeat(1000) + "1"));
        let small = RawJson::from_validated(reply.slice(1..2));
        let kept = small.truncated(16 * 1024);
        assert_eq!(kept.bytes().as_ref(), b"1");
        let inside = reply.as_ptr_range();
        assert!(
            !inside.contains(&kept.bytes().as_ptr()),
            "the kept value pins the reply"
        );
    }

    #[test]
    fn serialises_byte_exact_inside_a_struct() {
        #[derive(Serialize)]
        struct Outer {
            status: &'static str,
            result: RawJson,
            list: Vec<RawJson>,
            none: Option<RawJson>,
        }
        // Spacing, key order, number spelling and escapes a parse-and-print would change.
        let text = r#"{ "b" : [1.50, 2e3, -0.0] ,"a":"\u00e9\n\"x\"","c":{} }"#;
        let raw = RawJson::parse(Bytes::from(text)).unwrap();
        let out = serde_json::to_vec(&Outer {
            status: "success",
            result: raw.clone(),
            list: vec![raw.clone(), RawJson::null()],
            none: None,
        })
        .unwrap();
        let expected =
            format!(r#"{{"status":"success","result":{text},"list":[{text},null],"none":null}}"#);
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        // Pretty printing and `to_value` (which parses the text) agree with it.
        let pretty: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec_pretty(&raw).unwrap()).unwrap();
        assert_eq!(serde_json::to_value(&raw).unwrap(), pretty);
        assert_eq!(pretty["b"][1], 2000.0);
        // And back: a RawJson read out of the serialised struct holds the same bytes.
        #[derive(serde::Deserialize)]
        struct Back {
            result: RawJson,
            list: Vec<RawJson>,
        }
        let back: Back = serde_json::from_str(&expected).unwrap();
        assert_eq!(back.result.bytes().as_ref(), text.as_bytes());
        assert_eq!(back.list[0], raw);
        assert_eq!(back.list[1].bytes().as_ref(), b"null");
    }

    #[test]
    fn invalid_utf8_is_a_serialisation_error_not_bad_output() {
        let raw = RawJson::from_validated(Bytes::from_static(b"\"\xff\""));
        assert!(serde_json::to_vec(&raw).is_err());
    }

    #[test]
    fn values_above_the_limit_become_a_marker() {
        let big = RawJson::from_value(&"x".repeat(5000));
        let t = big.truncated(100).to_value();
        assert_eq!(t["_truncated"], true);
        assert_eq!(t["bytes"], 5002);
        assert_eq!(t["preview"].as_str().unwrap().len(), 100);
    }
}
