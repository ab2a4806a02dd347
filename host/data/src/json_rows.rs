//! JSON objects from a `.jsonl` / `.json` file: JSON lines (one object per non-blank line) or one
//! array of objects. Anything else is refused with what the file holds instead.

use std::io::BufRead;
use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Value};

/// The objects of `path`, each with its 1-based position: the line number for JSON lines (blank
/// lines skipped), the element number for an array. `unit` names a line in errors (`row`, `line`).
pub fn read_json_objects(path: &Path, unit: &str) -> anyhow::Result<Vec<(usize, Map<String, Value>)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if text.trim_start().starts_with('[') {
        let items: Vec<Value> =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: invalid JSON array: {e}", path.display()))?;
        return items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(object) => Ok((i + 1, object)),
                other => anyhow::bail!("{}: element {}: not a JSON object but {}", path.display(), i + 1, kind(&other)),
            })
            .collect();
    }
    let mut rows = Vec::new();
    for (index, line) in std::io::BufReader::new(text.as_bytes()).lines().enumerate() {
        let line = line.with_context(|| format!("{}: {unit} {}: cannot read", path.display(), index + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(object)) => rows.push((index + 1, object)),
            Ok(_) => anyhow::bail!("{}: {unit} {}: not a JSON object", path.display(), index + 1),
            Err(e) if rows.is_empty() => {
                // One JSON document over several lines (a pretty-printed object) is not JSON lines.
                if let Ok(whole) = serde_json::from_str::<Value>(&text) {
                    anyhow::bail!(
                        "{}: holds one JSON document ({}), not JSON lines (one object per line) or an array of objects",
                        path.display(),
                        kind(&whole)
                    );
                }
                anyhow::bail!("{}: {unit} {}: invalid JSON: {e}", path.display(), index + 1)
            }
            Err(e) => anyhow::bail!("{}: {unit} {}: invalid JSON: {e}", path.display(), index + 1),
        }
    }
    Ok(rows)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> anyhow::Result<Vec<(usize, Map<String, Value>)>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.json");
        std::fs::write(&path, text).unwrap();
        read_json_objects(&path, "row")
    }

    #[test]
    fn json_lines_and_arrays_are_read_with_their_positions() {
        let lines = read("{\"a\": 1}\n\n{\"a\": 2}\n").unwrap();
        assert_eq!(lines.iter().map(|(n, o)| (*n, o["a"].as_i64().unwrap())).collect::<Vec<_>>(), vec![(1, 1), (3, 2)]);
        let array = read("  [{\"a\": 1},\n {\"a\": 2}]").unwrap();
        assert_eq!(array.iter().map(|(n, o)| (*n, o["a"].as_i64().unwrap())).collect::<Vec<_>>(), vec![(1, 1), (2, 2)]);
    }

    #[test]
    fn other_json_is_refused_saying_what_it_holds() {
        let e = read("[{\"a\": 1}, 3]").unwrap_err().to_string();
        assert!(e.contains("element 2: not a JSON object but a number"), "{e}");
        let e = read("{\n  \"a\": 1\n}\n").unwrap_err().to_string();
        assert!(e.contains("holds one JSON document (an object), not JSON lines"), "{e}");
        let e = read("[{\"a\": 1}").unwrap_err().to_string();
        assert!(e.contains("invalid JSON array"), "{e}");
        let e = read("{\"a\": 1}\nnot json\n").unwrap_err().to_string();
        assert!(e.contains("row 2: invalid JSON"), "{e}");
    }
}
