//! SQL values and query results as plain, serialisable Rust types, so callers (MCP, CLI)
//! never depend on libsql's types.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// One SQL value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    /// Serialised as `{"blob_hex": "..."}` in JSON output.
    Blob(#[serde(with = "blob_hex")] Vec<u8>),
}

mod blob_hex {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    #[derive(Serialize, Deserialize)]
    struct B {
        blob_hex: String,
    }
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
        B { blob_hex: hex }.serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let b = B::deserialize(d)?;
        (0..b.blob_hex.len() / 2)
            .map(|i| u8::from_str_radix(&b.blob_hex[2 * i..2 * i + 2], 16).map_err(serde::de::Error::custom))
            .collect()
    }
}

impl SqlValue {
    /// The value as a person reads it in a report: text as is, numbers in decimal,
    /// `NULL`, and a blob as its size.
    pub fn to_text(&self) -> String {
        match self {
            SqlValue::Text(s) => s.clone(),
            SqlValue::Integer(i) => i.to_string(),
            SqlValue::Real(f) => f.to_string(),
            SqlValue::Null => "NULL".into(),
            SqlValue::Blob(b) => format!("<{} bytes>", b.len()),
        }
    }

    /// Converts a JSON parameter: booleans become 0/1, arrays and objects their JSON text.
    pub fn from_json(v: &Json) -> SqlValue {
        match v {
            Json::Null => SqlValue::Null,
            Json::Bool(b) => SqlValue::Integer(*b as i64),
            Json::Number(n) => match n.as_i64() {
                Some(i) => SqlValue::Integer(i),
                None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
            },
            Json::String(s) => SqlValue::Text(s.clone()),
            other => SqlValue::Text(other.to_string()),
        }
    }
    /// As JSON (blobs as `{"blob_hex": ...}`).
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            SqlValue::Integer(i) => Some(*i),
            SqlValue::Real(f) => Some(*f as i64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            SqlValue::Integer(i) => Some(*i as f64),
            SqlValue::Real(f) => Some(*f),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            SqlValue::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl From<libsql::Value> for SqlValue {
    fn from(v: libsql::Value) -> Self {
        match v {
            libsql::Value::Null => SqlValue::Null,
            libsql::Value::Integer(i) => SqlValue::Integer(i),
            libsql::Value::Real(f) => SqlValue::Real(f),
            libsql::Value::Text(s) => SqlValue::Text(s),
            libsql::Value::Blob(b) => SqlValue::Blob(b),
        }
    }
}

impl From<SqlValue> for libsql::Value {
    fn from(v: SqlValue) -> Self {
        match v {
            SqlValue::Null => libsql::Value::Null,
            SqlValue::Integer(i) => libsql::Value::Integer(i),
            SqlValue::Real(f) => libsql::Value::Real(f),
            SqlValue::Text(s) => libsql::Value::Text(s),
            SqlValue::Blob(b) => libsql::Value::Blob(b),
        }
    }
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Integer(v)
    }
}
impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        SqlValue::Real(v)
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_string())
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(SqlValue::Null)
    }
}

/// The result of a raw SQL statement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
    /// More rows existed than the row limit allowed; `rows` holds the first ones.
    pub truncated: bool,
    /// Rows changed by a write statement (0 for reads).
    pub rows_affected: u64,
    /// `last_insert_rowid()` after a write, if it inserted.
    pub last_insert_rowid: Option<i64>,
}

impl QueryResult {
    /// Rows as JSON objects keyed by column name.
    pub fn rows_as_objects(&self) -> Vec<Json> {
        self.rows
            .iter()
            .map(|r| {
                let mut m = serde_json::Map::new();
                for (c, v) in self.columns.iter().zip(r) {
                    m.insert(c.clone(), v.to_json());
                }
                Json::Object(m)
            })
            .collect()
    }
    /// The value at (row, column name), if any.
    pub fn get(&self, row: usize, col: &str) -> Option<&SqlValue> {
        let c = self.columns.iter().position(|x| x == col)?;
        self.rows.get(row)?.get(c)
    }
}
