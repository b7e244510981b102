//! How the admin commands print an answer: the API's JSON with `--json` (or `VALLUM_JSON=1`),
//! otherwise a readable rendering of the same value, so that every command answers a person
//! and a script alike and none loses a field in the readable form.
//!
//! The rendering: an object is one `name  value` line per field (nested objects indented
//! under their name); a list of objects is a table with one column per field that holds a
//! plain value (text, number, yes/no) and the rest shown compactly; a list of plain values is
//! one comma-separated line.

use serde_json::Value;

/// Widest a table cell gets before it is cut (with `…`); `--json` has everything.
const MAX_CELL_CHARS: usize = 60;

/// Prints `value` as JSON or readably.
pub fn print(json: bool, value: &Value) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", render(value));
    }
    Ok(())
}

/// The readable form of `value`, ending in a newline (empty for null).
#[must_use]
pub fn render(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(_) => object(&mut out, value, 0),
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            table(&mut out, items, 0);
        }
        Value::Null => {}
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

/// A plain value as one line: text bare, booleans as yes/no, lists of plain values joined.
fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.is_empty() => "(none)".into(),
        Value::Array(items) if items.iter().all(is_plain) => {
            items.iter().map(scalar).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
}

fn is_plain(v: &Value) -> bool {
    !matches!(v, Value::Object(_) | Value::Array(_))
}

fn object(out: &mut String, v: &Value, indent: usize) {
    let Some(map) = v.as_object() else { return };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    let pad = " ".repeat(indent);
    for (name, value) in map {
        match value {
            Value::Object(m) if !m.is_empty() => {
                out.push_str(&format!("{pad}{name}\n"));
                object(out, value, indent + 2);
            }
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                out.push_str(&format!("{pad}{name}\n"));
                table(out, items, indent + 2);
            }
            _ => out.push_str(&format!("{pad}{name:<width$}  {}\n", scalar(value))),
        }
    }
}

/// One row per object, one column per field seen (in order of first appearance).
fn table(out: &mut String, rows: &[Value], indent: usize) {
    let mut columns: Vec<&str> = Vec::new();
    for row in rows {
        for name in row.as_object().into_iter().flat_map(|m| m.keys()) {
            if !columns.contains(&name.as_str()) {
                columns.push(name);
            }
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| cut(&row.get(*c).map(scalar).unwrap_or_else(|| "-".into())))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let pad = " ".repeat(indent);
    let line = |values: Vec<&str>| {
        let joined = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        format!("{pad}{}\n", joined.trim_end())
    };
    let headers: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    out.push_str(&line(headers.iter().map(String::as_str).collect()));
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
}

fn cut(text: &str) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= MAX_CELL_CHARS {
        return one_line;
    }
    let kept: String = one_line.chars().take(MAX_CELL_CHARS - 1).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_are_aligned_fields_and_nested_blocks() {
        // Fields in alphabetical order: the same whether serde_json keeps insertion order.
        let text = render(&json!({
            "enabled": true,
            "key_id": "records",
            "state": "enabled",
            "usage": {"bytes": 12, "versions": 9},
            "versions": [1, 2],
        }));
        assert_eq!(
            text,
            "enabled   yes\nkey_id    records\nstate     enabled\nusage\n  bytes     12\n  versions  9\nversions  1, 2\n"
        );
    }

    #[test]
    fn lists_of_objects_are_tables_with_every_field() {
        let text = render(&json!([
            {"id": "a", "state": "enabled"},
            {"id": "bb", "note": "only here", "tags": {"x": 1}},
        ]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID  STATE    NOTE       TAGS");
        assert_eq!(lines[1], "a   enabled  -          -");
        assert_eq!(lines[2], "bb  -        only here  {\"x\":1}");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn nested_tables_are_indented_and_long_cells_cut() {
        let long = "x".repeat(100);
        let text = render(&json!({"keys": [{"id": long}], "zero": []}));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "keys");
        assert_eq!(lines[1].trim(), "ID");
        assert!(lines[2].starts_with("  "));
        assert_eq!(lines[2].trim().chars().count(), MAX_CELL_CHARS);
        assert!(lines[2].ends_with('…'));
        assert_eq!(lines[3], "zero  (none)");
    }

    #[test]
    fn plain_answers_and_null() {
        assert_eq!(render(&json!("done")), "done\n");
        assert_eq!(render(&Value::Null), "");
        assert_eq!(render(&json!([])), "(none)\n");
    }
}
