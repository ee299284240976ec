//! Plain-text tables for people; JSON lines for machines.

use edgeswarm::{QueryResult, SqlValue};

/// A cell as people read it.
pub fn cell(v: &SqlValue) -> String {
    match v {
        SqlValue::Null => "NULL".into(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) => format!("{f}"),
        SqlValue::Text(s) => s.replace('\n', "\\n"),
        SqlValue::Blob(b) => format!("<blob {} bytes>", b.len()),
    }
}

/// Renders rows under headers, columns padded, long cells cut at `max_width` chars.
pub fn render(headers: &[String], rows: &[Vec<String>], max_width: usize) -> String {
    let cut = |s: &str| -> String {
        if s.chars().count() > max_width {
            let mut t: String = s.chars().take(max_width.saturating_sub(1)).collect();
            t.push('…');
            t
        } else {
            s.to_string()
        }
    };
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| cut(c)).collect()).collect();
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: &[String]| -> String {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<width$}", c, width = w.get(i).copied().unwrap_or(0)))
            .collect();
        parts.join(" | ").trim_end().to_string()
    };
    let mut out = String::new();
    out.push_str(&line(headers));
    out.push('\n');
    out.push_str(&w.iter().map(|n| "-".repeat(*n)).collect::<Vec<_>>().join("-+-"));
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// A query result as a table plus a footer line.
pub fn render_result(r: &QueryResult) -> String {
    if r.columns.is_empty() {
        let mut s = format!("ok: {} row(s) changed", r.rows_affected);
        if let Some(id) = r.last_insert_rowid.filter(|_| r.rows_affected > 0) {
            s.push_str(&format!(", last insert rowid {id}"));
        }
        s.push('\n');
        return s;
    }
    let rows: Vec<Vec<String>> = r.rows.iter().map(|row| row.iter().map(cell).collect()).collect();
    let mut out = render(&r.columns, &rows, 60);
    out.push_str(&format!(
        "({} row{}{})\n",
        r.rows.len(),
        if r.rows.len() == 1 { "" } else { "s" },
        if r.truncated { ", truncated at the row limit" } else { "" }
    ));
    out
}

/// One JSON line for a query result: columns, rows as objects, counts.
pub fn result_json(r: &QueryResult) -> serde_json::Value {
    serde_json::json!({
        "columns": r.columns,
        "rows": r.rows_as_objects(),
        "row_count": r.rows.len(),
        "truncated": r.truncated,
        "rows_affected": r.rows_affected,
        "last_insert_rowid": r.last_insert_rowid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_and_cuts() {
        let t = render(&["a".into(), "bb".into()], &[vec!["xxx".into(), "y".repeat(10)]], 5);
        assert_eq!(t, "a   | bb\n----+------\nxxx | yyyy…\n");
    }
}
