//! Named params of a JSON-RPC call, checked one by one with errors naming the param.
//!
//! Each method takes what it needs and then calls [`Params::finish`], which refuses
//! anything left over, so a misspelt param is an error instead of being ignored.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::ManagerError;

pub struct Params {
    map: Map<String, Value>,
}

impl Params {
    pub fn from_raw(raw: Option<&RawValue>) -> Result<Params, ManagerError> {
        let map = match raw.map(|r| serde_json::from_str::<Value>(r.get())) {
            None => Map::new(),
            Some(Ok(Value::Object(m))) => m,
            Some(Ok(Value::Null)) => Map::new(),
            Some(Ok(_)) => {
                return Err(ManagerError::invalid_params(
                    "params",
                    "expected an object of named params",
                ))
            }
            Some(Err(e)) => return Err(ManagerError::Parse(e.to_string())),
        };
        Ok(Params { map })
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        match self.map.remove(key) {
            Some(Value::Null) | None => None,
            Some(v) => Some(v),
        }
    }

    pub fn string(&mut self, key: &str) -> Result<String, ManagerError> {
        self.opt_string(key)?
            .ok_or_else(|| ManagerError::invalid_params(key, "missing"))
    }

    pub fn opt_string(&mut self, key: &str) -> Result<Option<String>, ManagerError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ManagerError::invalid_params(key, "expected a string")),
        }
    }

    pub fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, ManagerError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(ManagerError::invalid_params(key, "expected true or false")),
        }
    }

    pub fn opt_f64(&mut self, key: &str) -> Result<Option<f64>, ManagerError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f)),
                _ => Err(ManagerError::invalid_params(
                    key,
                    "expected a non-negative number",
                )),
            },
        }
    }

    pub fn opt_u64(&mut self, key: &str) -> Result<Option<u64>, ManagerError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                ManagerError::invalid_params(key, "expected a non-negative integer")
            }),
        }
    }

    pub fn opt_object(&mut self, key: &str) -> Result<Option<Map<String, Value>>, ManagerError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(ManagerError::invalid_params(key, "expected an object")),
        }
    }

    pub fn object(&mut self, key: &str) -> Result<Map<String, Value>, ManagerError> {
        self.opt_object(key)?
            .ok_or_else(|| ManagerError::invalid_params(key, "missing"))
    }

    pub fn opt_value(&mut self, key: &str) -> Option<Value> {
        self.take(key)
    }

    /// Refuses params no method step took.
    pub fn finish(self) -> Result<(), ManagerError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(ManagerError::invalid_params(k.clone(), "unknown parameter")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: &str) -> Params {
        let raw: Box<RawValue> = serde_json::from_str(s).unwrap();
        Params::from_raw(Some(&raw)).unwrap()
    }

    #[test]
    fn errors_name_the_param() {
        let mut p = params(r#"{"session_id": 5, "limit": -1, "extra": true}"#);
        assert_eq!(
            p.string("session_id").unwrap_err().to_string(),
            "Invalid params: session_id: expected a string"
        );
        assert!(p
            .opt_u64("limit")
            .unwrap_err()
            .to_string()
            .starts_with("Invalid params: limit:"));
        assert_eq!(
            p.string("missing").unwrap_err().to_string(),
            "Invalid params: missing: missing"
        );
        assert_eq!(
            p.finish().unwrap_err().to_string(),
            "Invalid params: extra: unknown parameter"
        );
        let raw: Box<RawValue> = serde_json::from_str("[1]").unwrap();
        assert!(Params::from_raw(Some(&raw)).is_err());
        assert!(Params::from_raw(None).unwrap().finish().is_ok());
    }
}
