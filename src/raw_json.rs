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

    /// A copy for keeping (history, state), cut down to at most `limit` bytes:
    /// values above the limit become a marker object
    /// `{"_truncated": true, "bytes": N, "preview": "<first bytes>"}`. Always a fresh
    /// allocation, so a small kept value never pins the (possibly huge) read buffer
    /// the reply arrived in.
    pub fn truncated(&self, limit: usize) -> RawJson {
        if self.0.len() <= limit {
            return RawJson(Bytes::copy_from_slice(&self.0));
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

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_slice(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
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
    fn values_above_the_limit_become_a_marker() {
        let big = RawJson::from_value(&"x".repeat(5000));
        let t = big.truncated(100).to_value();
        assert_eq!(t["_truncated"], true);
        assert_eq!(t["bytes"], 5002);
        assert_eq!(t["preview"].as_str().unwrap().len(), 100);
    }
}
