//! What a plugin says about itself is untrusted input: names short and printable, and a config
//! schema small and free of `$ref` loops before the host compiles it (a looping schema drove
//! the schema compiler past 8 GB).

use crate::runtime::PluginInfo;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

/// Longest name or version a plugin may give.
const MAX_NAME: usize = 64;
/// Longest description.
const MAX_DESCRIPTION: usize = 1024;
/// Largest config schema, as JSON text (serde_json already bounds its nesting at 128).
pub(super) const MAX_SCHEMA_BYTES: usize = 1 << 20;

/// Names, version and description: bounded and without control characters (they
/// reach terminals and logs).
pub(super) fn check_info(info: &PluginInfo) -> Result<(), String> {
    let field = |what: &str, text: &str, max: usize| {
        if text.chars().count() > max {
            return Err(format!("its {what} is over {max} characters"));
        }
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(format!("its {what} holds control characters"));
        }
        Ok(())
    };
    field("name", &info.name, MAX_NAME)?;
    field("version", &info.version, MAX_NAME)?;
    field("description", &info.description, MAX_DESCRIPTION)?;
    if info.config_schema.len() > MAX_SCHEMA_BYTES {
        return Err(format!(
            "its config schema is {} bytes, more than {MAX_SCHEMA_BYTES}",
            info.config_schema.len()
        ));
    }
    Ok(())
}

/// Only references inside the document, and none that lead back to where they are used: a
/// target may not (through the references under it) reach itself.
pub(super) fn check_schema(schema: &Json) -> Result<(), String> {
    let mut refs = Vec::new();
    collect_refs(schema, String::new(), &mut refs)?;
    // Target → the targets of the references found under it.
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (_, target) in &refs {
        let under: BTreeSet<&str> = refs
            .iter()
            .filter(|(at, _)| {
                at == target || target.is_empty() || at.starts_with(&format!("{target}/"))
            })
            .map(|(_, t)| t.as_str())
            .collect();
        edges.insert(target.as_str(), under);
    }
    let mut done = BTreeSet::new();
    for start in edges.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = loops(start, &edges, &mut path, &mut done) {
            return Err(format!("its `$ref`s loop: {}", cycle.join(" -> ")));
        }
    }
    Ok(())
}

/// Every `$ref` as (JSON pointer of the object holding it, target pointer without `#`).
fn collect_refs(value: &Json, at: String, out: &mut Vec<(String, String)>) -> Result<(), String> {
    match value {
        Json::Object(map) => {
            if let Some(reference) = map.get("$ref") {
                let target = reference
                    .as_str()
                    .and_then(|r| r.strip_prefix('#'))
                    .ok_or_else(|| {
                        format!("`$ref` {reference} at `{at}` is not inside the schema")
                    })?;
                out.push((at.clone(), target.to_string()));
            }
            for (key, child) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                collect_refs(child, format!("{at}/{key}"), out)?;
            }
        }
        Json::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect_refs(child, format!("{at}/{i}"), out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A cycle reachable from `node`, depth first.
fn loops<'a>(
    node: &'a str,
    edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    path: &mut Vec<&'a str>,
    done: &mut BTreeSet<&'a str>,
) -> Option<Vec<String>> {
    if let Some(i) = path.iter().position(|p| *p == node) {
        let mut cycle: Vec<String> = path[i..].iter().map(|p| format!("#{p}")).collect();
        cycle.push(format!("#{node}"));
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node);
    for next in edges.get(node).into_iter().flatten() {
        if let Some(cycle) = loops(next, edges, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(node);
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(name: &str) -> PluginInfo {
        PluginInfo {
            name: name.into(),
            version: "1.0.0".into(),
            description: "d".into(),
            config_schema: "{}".into(),
        }
    }

    #[test]
    fn names_must_be_short_and_printable() {
        assert!(check_info(&info("echo")).is_ok());
        let e = check_info(&info("evil\u{1b}[2Jname")).unwrap_err();
        assert!(e.contains("control characters"), "{e}");
        let e = check_info(&info(&"x".repeat(65))).unwrap_err();
        assert!(e.contains("over 64"), "{e}");
    }

    #[test]
    fn refs_may_share_definitions_but_not_loop() {
        let shared = json!({
            "$defs": {"port": {"type": "integer"}, "pair": {"items": {"$ref": "#/$defs/port"}}},
            "properties": {"a": {"$ref": "#/$defs/pair"}, "b": {"$ref": "#/$defs/port"}}
        });
        assert!(check_schema(&shared).is_ok());
        for looping in [
            json!({"$ref": "#"}),
            json!({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
            json!({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/b"}]}, "b": {"items": {"$ref": "#/$defs/a"}}}}),
            json!({"properties": {"x": {"properties": {"y": {"$ref": "#/properties/x"}}}}}),
        ] {
            let e = check_schema(&looping).unwrap_err();
            assert!(e.contains("loop"), "{looping}: {e}");
        }
        let e = check_schema(&json!({"$ref": "https://evil.example/s.json"})).unwrap_err();
        assert!(e.contains("not inside the schema"), "{e}");
    }
}
