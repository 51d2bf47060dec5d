//! The scene state a session follows, and snapshots of it.
//!
//! `objects` / `selection` (the active object's name, the seed's string) /
//! `selected` follow the scene: from the project's addon via the `_state`
//! piggyback on each reply, from a stock addon via `get_scene_info` replies.
//! `last_command` / `last_result` follow every command. Any other key is the
//! caller's own, set with `update_state`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::blender::reply::AddonState;
use crate::error::ManagerError;
use crate::raw_json::RawJson;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SceneState {
    pub objects: Vec<String>,
    pub selection: Option<String>,
    pub selected: Vec<String>,
    pub last_command: Option<String>,
    pub last_result: Option<RawJson>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct SceneInfoObjects {
    #[serde(default)]
    objects: Vec<NamedObject>,
    #[serde(default, alias = "active_object", alias = "active")]
    active: Option<Value>,
    #[serde(default, alias = "selected_objects", alias = "selection")]
    selected: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct NamedObject {
    name: String,
}

fn name_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => m.get("name").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

impl SceneState {
    pub fn apply_addon_state(&mut self, st: &AddonState) {
        self.objects = st.objects.clone();
        self.selected = st.selection.clone();
        self.selection = st.active.clone();
    }

    /// Refreshes objects (and selection, when the reply has it) from a
    /// `get_scene_info` result. Returns `false` when the result has no object list.
    pub fn apply_scene_info(&mut self, result: &RawJson) -> bool {
        let Ok(info) = result.to_typed::<SceneInfoObjects>() else {
            return false;
        };
        self.objects = info.objects.into_iter().map(|o| o.name).collect();
        if let Some(active) = info.active {
            self.selection = name_of(&active);
        }
        if let Some(sel) = info.selected {
            self.selected = sel.iter().filter_map(name_of).collect();
        }
        true
    }

    /// Merges keys set by a caller. Known keys must have their documented types.
    pub fn merge(&mut self, keys: Map<String, Value>) -> Result<(), ManagerError> {
        let strings = |k: &str, v: &Value| -> Result<Vec<String>, ManagerError> {
            match v {
                Value::Array(a) => a
                    .iter()
                    .map(|x| {
                        x.as_str().map(str::to_string).ok_or_else(|| {
                            ManagerError::invalid_params(
                                format!("state.{k}"),
                                "expected a list of strings",
                            )
                        })
                    })
                    .collect(),
                _ => Err(ManagerError::invalid_params(
                    format!("state.{k}"),
                    "expected a list of strings",
                )),
            }
        };
        let opt_string = |k: &str, v: &Value| -> Result<Option<String>, ManagerError> {
            match v {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s.clone())),
                _ => Err(ManagerError::invalid_params(
                    format!("state.{k}"),
                    "expected a string or null",
                )),
            }
        };
        // Validate everything first so a bad key changes nothing.
        let mut next = self.clone();
        for (k, v) in keys {
            match k.as_str() {
                "objects" => next.objects = strings(&k, &v)?,
                "selected" => next.selected = strings(&k, &v)?,
                "selection" => next.selection = opt_string(&k, &v)?,
                "last_command" => next.last_command = opt_string(&k, &v)?,
                "last_result" => next.last_result = Some(RawJson::from_value(&v)),
                _ => {
                    next.extra.insert(k, v);
                }
            }
        }
        *self = next;
        Ok(())
    }
}

/// A timestamped copy of the scene, taken with `take_snapshot`.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub snapshot_id: u64,
    pub session_id: String,
    pub timestamp: f64,
    /// The `get_scene_info` result as Blender sent it.
    pub scene: RawJson,
    /// The session's state right after the snapshot.
    pub state: SceneState,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn scene_info_of_stock_and_own_addon() {
        let mut s = SceneState::default();
        let stock = RawJson::parse(Bytes::from_static(
            br#"{"name":"Scene","object_count":2,"objects":[{"name":"Cube","type":"MESH"},{"name":"Light","type":"LIGHT"}]}"#,
        ))
        .unwrap();
        assert!(s.apply_scene_info(&stock));
        assert_eq!(s.objects, vec!["Cube", "Light"]);
        let own = RawJson::parse(Bytes::from_static(
            br#"{"objects":[{"name":"A"}],"active_object":"A","selected_objects":["A"]}"#,
        ))
        .unwrap();
        assert!(s.apply_scene_info(&own));
        assert_eq!(s.selection.as_deref(), Some("A"));
        assert_eq!(s.selected, vec!["A"]);
        assert!(!s.apply_scene_info(&RawJson::from_value(&"text")));
    }

    #[test]
    fn merge_validates_known_keys_and_keeps_others() {
        let mut s = SceneState::default();
        let ok: Map<String, Value> =
            serde_json::from_str(r#"{"objects":["Cube"],"selection":"Cube","mood":"blue"}"#)
                .unwrap();
        s.merge(ok).unwrap();
        assert_eq!(s.objects, vec!["Cube"]);
        let bad: Map<String, Value> =
            serde_json::from_str(r#"{"objects":"Cube","other":1}"#).unwrap();
        let e = s.merge(bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid params: state.objects: expected a list of strings"
        );
        assert!(
            !s.extra.contains_key("other"),
            "a failed merge changes nothing"
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["mood"], "blue");
        assert_eq!(v["selection"], "Cube");
    }
}
