//! Output helpers: stdout writing that tolerates a closed pipe, aligned tables, RFC 4180 CSV,
//! compact durations and SPARQL term rendering.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// Writes `text` to stdout as is. A closed pipe (`provchain peers | head -1`) is not an error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("cannot write to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

/// Prints a value as pretty JSON plus a newline.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    emit(&text)
}

/// Renders rows under a header, columns left-aligned and separated by two spaces; the last
/// column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 < cols {
                l.push_str(cell);
                l.extend(std::iter::repeat_n(
                    ' ',
                    widths[i] - cell.chars().count() + 2,
                ));
            } else {
                l.push_str(cell);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// One CSV field per RFC 4180: quoted when it holds a comma, quote, CR or LF.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One CSV record, CRLF-terminated as RFC 4180 (and the SPARQL CSV results format) says.
pub fn csv_record<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = fields
        .iter()
        .map(|f| csv_field(f.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// A duration the way operators read it: `45s`, `3m12s`, `2h05m`, `3d4h`.
pub fn compact_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

const XSD: &str = "http://www.w3.org/2001/XMLSchema#";

/// A SPARQL JSON results term, compactly: `<iri>`, `"literal"`, `"5"^^xsd:integer`,
/// `"chat"@fr`, `_:b0`. Unbound is the empty string.
pub fn render_term(term: Option<&Value>) -> String {
    let Some(t) = term else { return String::new() };
    let value = t.get("value").and_then(Value::as_str).unwrap_or("");
    match t.get("type").and_then(Value::as_str) {
        Some("uri") => format!("<{value}>"),
        Some("bnode") => format!("_:{value}"),
        Some("literal" | "typed-literal") => {
            let quoted = format!("\"{}\"", escape_literal(value));
            if let Some(lang) = t.get("xml:lang").and_then(Value::as_str) {
                format!("{quoted}@{lang}")
            } else {
                match t.get("datatype").and_then(Value::as_str) {
                    None => quoted,
                    Some(dt) if dt == format!("{XSD}string") => quoted,
                    Some(dt) => match dt.strip_prefix(XSD) {
                        Some(local) => format!("{quoted}^^xsd:{local}"),
                        None => format!("{quoted}^^<{dt}>"),
                    },
                }
            }
        }
        Some("triple") => {
            let part = |k: &str| render_term(t.get("value").and_then(|v| v.get(k)));
            format!(
                "<< {} {} {} >>",
                part("subject"),
                part("predicate"),
                part("object")
            )
        }
        _ => value.to_owned(),
    }
}

/// The plain value the SPARQL 1.1 CSV format uses: IRIs and literals without decoration,
/// blank nodes as `_:label`.
pub fn csv_term(term: Option<&Value>) -> String {
    let Some(t) = term else { return String::new() };
    let value = t.get("value").and_then(Value::as_str).unwrap_or("");
    match t.get("type").and_then(Value::as_str) {
        Some("bnode") => format!("_:{value}"),
        Some("triple") => render_term(Some(t)),
        _ => value.to_owned(),
    }
}

fn escape_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_are_compact() {
        assert_eq!(compact_duration(Duration::from_secs(5)), "5s");
        assert_eq!(compact_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(compact_duration(Duration::from_secs(7500)), "2h05m");
        assert_eq!(
            compact_duration(Duration::from_secs(3 * 86_400 + 4 * 3600 + 9)),
            "3d4h"
        );
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(
            csv_record(&["a", "b,c", "say \"hi\"", "x\ny"]),
            "a,\"b,c\",\"say \"\"hi\"\"\",\"x\ny\"\r\n"
        );
    }

    #[test]
    fn terms_render_compactly() {
        assert_eq!(
            render_term(Some(&json!({"type": "uri", "value": "http://a"}))),
            "<http://a>"
        );
        assert_eq!(
            render_term(Some(&json!({"type": "literal", "value": "v\"q"}))),
            "\"v\\\"q\""
        );
        assert_eq!(
            render_term(Some(
                &json!({"type": "literal", "value": "5", "datatype": format!("{XSD}integer")})
            )),
            "\"5\"^^xsd:integer"
        );
        assert_eq!(
            render_term(Some(
                &json!({"type": "literal", "value": "chat", "xml:lang": "fr"})
            )),
            "\"chat\"@fr"
        );
        assert_eq!(
            render_term(Some(&json!({"type": "bnode", "value": "b0"}))),
            "_:b0"
        );
        assert_eq!(render_term(None), "");
        assert_eq!(
            csv_term(Some(&json!({"type": "uri", "value": "http://a"}))),
            "http://a"
        );
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }
}
