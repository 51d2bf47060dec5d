//! The tool catalogue: MCP-style tools and how each maps to a Blender command.
//!
//! `list_tools`, `handle_tool_call`, the MCP server and agent loops all read this
//! one table, so a tool's name, schema and Blender command are defined once. Every
//! tool also takes an optional `session_id`.

use serde_json::{json, Map, Value};

use crate::error::ManagerError;
use crate::raw_json::RawJson;

struct Tool {
    name: &'static str,
    description: &'static str,
    command: &'static str,
    /// (argument name, JSON type, description, required, Blender param name)
    args: &'static [(&'static str, &'static str, &'static str, bool, &'static str)],
}

const TOOLS: &[Tool] = &[
    Tool {
        name: "execute_blender_code",
        description: "Run Python code inside Blender (bpy is imported). Variables persist \
                      between calls of the same session. Returns captured stdout.",
        command: "execute_code",
        args: &[("code", "string", "Python code to run", true, "code")],
    },
    Tool {
        name: "get_scene_info",
        description: "Describe the current Blender scene: its objects with type and location.",
        command: "get_scene_info",
        args: &[],
    },
    Tool {
        name: "get_object_info",
        description: "Describe one object: type, location, rotation, scale, materials, mesh.",
        command: "get_object_info",
        args: &[("object_name", "string", "Name of the object", true, "name")],
    },
    Tool {
        name: "get_viewport_screenshot",
        description: "Capture the 3D viewport (a camera render when Blender runs headless) as PNG.",
        command: "get_viewport_screenshot",
        args: &[(
            "max_size",
            "integer",
            "Longest side of the image in pixels (default 800)",
            false,
            "max_size",
        )],
    },
];

/// The catalogue as `[{"name", "description", "input_schema"}]`.
pub fn catalogue() -> Value {
    let tools: Vec<Value> = TOOLS
        .iter()
        .map(|t| {
            let mut props = Map::new();
            let mut required = Vec::new();
            for (name, ty, desc, req, _) in t.args {
                props.insert((*name).into(), json!({"type": ty, "description": desc}));
                if *req {
                    required.push(*name);
                }
            }
            props.insert(
                "session_id".into(),
                json!({"type": "string",
                       "description": "Session to use; omit to create one (its id is returned)"}),
            );
            json!({
                "name": t.name,
                "description": t.description,
                "input_schema": {"type": "object", "properties": props, "required": required},
            })
        })
        .collect();
    Value::Array(tools)
}

/// Maps a tool call to `(command_type, params)`. `session_id` must already have
/// been taken out of `arguments`.
pub fn map_call(
    name: &str,
    mut arguments: Map<String, Value>,
) -> Result<(String, RawJson), ManagerError> {
    let tool = TOOLS
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| ManagerError::invalid_params("name", format!("unknown tool {name:?}")))?;
    let mut params = Map::new();
    for (arg, ty, _, required, param) in tool.args {
        let value = arguments.remove(*arg).or_else(|| arguments.remove(*param));
        match value {
            None | Some(Value::Null) if *required => {
                return Err(ManagerError::invalid_params(
                    format!("arguments.{arg}"),
                    "missing",
                ))
            }
            None | Some(Value::Null) => {}
            Some(v) => {
                let ok = match *ty {
                    "string" => v.is_string(),
                    "integer" => v.is_u64() || v.is_i64(),
                    _ => true,
                };
                if !ok {
                    return Err(ManagerError::invalid_params(
                        format!("arguments.{arg}"),
                        format!("expected {ty}"),
                    ));
                }
                params.insert((*param).into(), v);
            }
        }
    }
    if let Some(extra) = arguments.keys().next() {
        return Err(ManagerError::invalid_params(
            format!("arguments.{extra}"),
            format!("unknown argument of tool {name}"),
        ));
    }
    Ok((tool.command.to_string(), RawJson::from_value(&params)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn maps_mcp_names_to_addon_commands() {
        let (c, p) = map_call("execute_blender_code", args(json!({"code": "x=1"}))).unwrap();
        assert_eq!(c, "execute_code");
        assert_eq!(p.to_value(), json!({"code": "x=1"}));
        let (c, p) = map_call("get_object_info", args(json!({"object_name": "Cube"}))).unwrap();
        assert_eq!(
            (c.as_str(), p.to_value()),
            ("get_object_info", json!({"name": "Cube"}))
        );
        let (_, p) = map_call("get_viewport_screenshot", args(json!({}))).unwrap();
        assert_eq!(p.to_value(), json!({}));
    }

    #[test]
    fn rejects_unknown_tools_and_bad_arguments() {
        let e = map_call("nope", Map::new()).unwrap_err();
        assert_eq!(e.to_string(), "Invalid params: name: unknown tool \"nope\"");
        let e = map_call("execute_blender_code", Map::new()).unwrap_err();
        assert_eq!(e.to_string(), "Invalid params: arguments.code: missing");
        let e = map_call("get_viewport_screenshot", args(json!({"max_size": "big"}))).unwrap_err();
        assert!(e.to_string().contains("expected integer"));
        let e = map_call("get_scene_info", args(json!({"x": 1}))).unwrap_err();
        assert!(e.to_string().contains("arguments.x"));
    }

    #[test]
    fn catalogue_has_schemas_with_session_id() {
        let c = catalogue();
        let tools = c.as_array().unwrap();
        assert_eq!(tools.len(), 4);
        for t in tools {
            assert!(t["input_schema"]["properties"]["session_id"].is_object());
        }
        assert_eq!(tools[0]["input_schema"]["required"], json!(["code"]));
    }
}
