//! Search requests and responses, the FTS5 query builder (user text is escaped so any
//! string is a valid query) and the filter SQL builder.

use crate::error::{Result, SearchError};
use edgeswarm_store::SqlValue;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// Largest page a search returns; bigger `limit`s are capped (and the response says so).
pub const MAX_LIMIT: usize = 100;
/// Page size when the caller gives none.
pub const DEFAULT_LIMIT: usize = 10;
/// Most terms of a query that are searched; the rest are ignored (and the response says so).
pub const MAX_TERMS: usize = 32;
/// Most metadata equality filters in one request.
pub const MAX_METADATA_FILTERS: usize = 16;
/// Deepest `offset` accepted (deep offsets cost a full scan of earlier pages; use the cursor).
pub const MAX_OFFSET: i64 = 10_000;

/// Which ranking ran (or should run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// FTS5 BM25 over topic, tags and content.
    Lexical,
    /// Nearest neighbours of the query embedding (libSQL vector index).
    Vector,
    /// Lexical and vector results fused ([`crate::Fusion`]; by default a linear blend of
    /// min-max normalised scores).
    Hybrid,
}

/// Filters applied to every mode. Unknown fields are refused (typo-safe).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// Only entries in this category (exact match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Entries carrying at least one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags_any: Vec<String>,
    /// Entries carrying every one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags_all: Vec<String>,
    /// Entries created strictly after this time (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_after: Option<i64>,
    /// Entries created strictly before this time (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before: Option<i64>,
    /// Only entries from this region (exact match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Metadata equality: JSON path (`$.a.b` or `a.b`) to a scalar (string, number, bool).
    /// Values are kept as JSON text so the struct can be hashed for the cache key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, JsonScalar>,
}

/// A scalar JSON value for metadata equality (strings, numbers, booleans).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JsonScalar {
    /// A boolean (stored by SQLite's JSON functions as 1/0).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A real number, as text so it hashes (parsed when the SQL is bound).
    Real(#[serde(with = "real_text")] String),
    /// A string.
    Text(String),
}

mod real_text {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(v.parse::<f64>().unwrap_or(f64::NAN))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let f = f64::deserialize(d)?;
        Ok(f.to_string())
    }
}

impl JsonScalar {
    fn to_sql(&self) -> SqlValue {
        match self {
            JsonScalar::Bool(b) => SqlValue::Integer(*b as i64),
            JsonScalar::Int(i) => SqlValue::Integer(*i),
            JsonScalar::Real(r) => SqlValue::Real(r.parse().unwrap_or(f64::NAN)),
            JsonScalar::Text(s) => SqlValue::Text(s.clone()),
        }
    }
}

const FILTER_FIELDS: &str = "category, tags_any, tags_all, created_after, created_before, region, metadata";
const REQUEST_FIELDS: &str = "query, mode, filters, limit, offset, cursor";

/// One search request. Build it with [`SearchRequest::new`] and the builder methods, or
/// from JSON with [`SearchRequest::from_json`] (which rejects unknown fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The user's text. Any string is accepted: quotes make a phrase, a trailing `*` a
    /// prefix; every other character is literal text (no FTS operators).
    pub query: String,
    /// Ranking to use; `None` picks hybrid when an embedder is set, lexical otherwise.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Filters applied before ranking (lexical) or to the neighbours (vector).
    #[serde(default)]
    pub filters: Filters,
    /// Page size; default 10, capped at [`MAX_LIMIT`]. Must be >= 1.
    #[serde(default)]
    pub limit: Option<i64>,
    /// Results to skip (0..=[`MAX_OFFSET`]); prefer `cursor` for deep paging.
    #[serde(default)]
    pub offset: Option<i64>,
    /// Opaque `next_cursor` from the previous page; continues exactly after it.
    #[serde(default)]
    pub cursor: Option<String>,
}

impl SearchRequest {
    /// A request for `query` with default mode, no filters and the default page size.
    pub fn new(query: impl Into<String>) -> Self {
        SearchRequest {
            query: query.into(),
            ..Default::default()
        }
    }
    /// Sets the ranking mode.
    pub fn mode(mut self, m: Mode) -> Self {
        self.mode = Some(m);
        self
    }
    /// Sets the filters.
    pub fn filters(mut self, f: Filters) -> Self {
        self.filters = f;
        self
    }
    /// Sets the page size.
    pub fn limit(mut self, n: i64) -> Self {
        self.limit = Some(n);
        self
    }
    /// Sets the offset.
    pub fn offset(mut self, n: i64) -> Self {
        self.offset = Some(n);
        self
    }
    /// Continues from a previous page's `next_cursor`.
    pub fn cursor(mut self, c: impl Into<String>) -> Self {
        self.cursor = Some(c.into());
        self
    }

    /// Parses a JSON request (as MCP tools and the CLI send it). Unknown fields at the top
    /// level or in `filters` are a [`SearchError::UnknownField`].
    pub fn from_json(v: &Json) -> Result<SearchRequest> {
        serde_json::from_value(v.clone()).map_err(|e| json_error(&e.to_string()))
    }
}

impl Filters {
    /// Parses JSON filters, refusing unknown fields with [`SearchError::UnknownField`].
    pub fn from_json(v: &Json) -> Result<Filters> {
        serde_json::from_value(v.clone()).map_err(|e| json_error(&e.to_string()))
    }
}

fn json_error(msg: &str) -> SearchError {
    // serde's message: "unknown field `x`, expected one of `a`, `b`".
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default().to_string();
        let known = if msg.contains("`tags_any`") {
            FILTER_FIELDS
        } else {
            REQUEST_FIELDS
        };
        return SearchError::UnknownField { field, known };
    }
    SearchError::InvalidRequest(msg.to_string())
}

/// One hit: a bounded preview and the id (use `get_knowledge(id)` for the whole entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The knowledge entry's id, for `get_knowledge`.
    pub id: String,
    /// Category, so callers can group results without fetching entries.
    pub category: String,
    /// Topic (short), so a result list is readable on its own.
    pub topic: String,
    /// A short extract of the content with matched terms wrapped in `[` `]` (lexical), or
    /// the start of the content (vector-only hits). Bounded so replies stay small.
    pub snippet: String,
    /// Score in this mode: BM25 (lower is better, negated here so higher is better),
    /// cosine similarity (vector) or the fused score (hybrid). Comparable within one response only.
    pub score: f64,
    /// Creation time (ms since epoch), for display and time filters.
    pub created_at: i64,
}

/// The answer to a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// Hits, best first.
    pub hits: Vec<SearchHit>,
    /// The ranking that actually ran (never silently degraded).
    pub mode: Mode,
    /// Set when vector or hybrid was asked for (or defaulted) but lexical ran; says why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// Pass as `cursor` to get the next page; `None` when this is the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Notes about how the request was adjusted (limit capped, terms dropped, AND relaxed
    /// to OR, nothing searchable in the text...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// True when this answer came from the hot-query cache.
    pub cached: bool,
    /// The embedder whose vectors serve vector/hybrid queries now (`id/dim`), or the one
    /// being built when none is active yet; `None` when no embedder is configured
    /// (lexical only). Says what could run, next to `mode` (what did run).
    #[serde(default)]
    pub embedder: Option<String>,
    /// True when every live entry has a vector in the active space (no background
    /// embedding pending); false while vectors are built or when there is no embedder.
    #[serde(default)]
    pub vectors_complete: bool,
}

// ---- FTS5 expression -------------------------------------------------------------------

/// The parsed user text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedQuery {
    /// Terms: (text, is_phrase, is_prefix). `text` contains only searchable words.
    pub terms: Vec<Term>,
    /// Terms dropped because of [`MAX_TERMS`].
    pub dropped: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Term {
    pub words: Vec<String>,
    pub prefix: bool,
}

fn words_of(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Splits user text into terms. Balanced `"..."` is a phrase; a chunk ending in `*` is a
/// prefix; every other character only separates words. Nothing the user types becomes an
/// FTS operator.
pub(crate) fn parse(text: &str) -> ParsedQuery {
    let mut terms = Vec::new();
    let segments: Vec<&str> = text.split('"').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        if i % 2 == 1 && i != last {
            let w = words_of(seg);
            if !w.is_empty() {
                terms.push(Term { words: w, prefix: false });
            }
            continue;
        }
        for piece in seg.split_whitespace() {
            let prefix = piece.ends_with('*');
            let w = words_of(piece);
            let n = w.len();
            for (j, word) in w.into_iter().enumerate() {
                terms.push(Term {
                    words: vec![word],
                    prefix: prefix && j + 1 == n,
                });
            }
        }
    }
    let dropped = terms.len().saturating_sub(MAX_TERMS);
    terms.truncate(MAX_TERMS);
    ParsedQuery { terms, dropped }
}

/// English stop words dropped from natural-language queries (question words, pronouns,
/// auxiliaries, articles, prepositions): in a sentence such as "When did Caroline go to the
/// support group?" only `caroline`, `go`, `support`, `group` carry the question. Sorted
/// (binary search).
pub(crate) const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "after",
    "again",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "been",
    "before",
    "being",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "during",
    "each",
    "for",
    "from",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "me",
    "might",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "of",
    "on",
    "or",
    "our",
    "ours",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "to",
    "too",
    "us",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "whose",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
];

/// Whether the text uses explicit query syntax (a quoted phrase, a `prefix*`, or an
/// upper-case `AND`/`OR`/`NOT`): such queries keep the exact semantics (every term must
/// match, relaxed to any term only when nothing matches).
pub(crate) fn is_explicit(text: &str) -> bool {
    text.contains('"') || text.contains('*') || text.split_whitespace().any(|w| matches!(w, "AND" | "OR" | "NOT"))
}

impl ParsedQuery {
    /// The natural-language form: stop words dropped (unless nothing else is left).
    /// Callers rank it with OR semantics (`fts(true)`), where BM25 adds up each matched
    /// term's weight, so entries matching more of the (rarer) words rank first.
    pub(crate) fn without_stop_words(&self) -> ParsedQuery {
        let kept: Vec<Term> = self
            .terms
            .iter()
            .filter(|t| t.prefix || t.words.len() != 1 || STOP_WORDS.binary_search(&t.words[0].to_lowercase().as_str()).is_err())
            .cloned()
            .collect();
        if kept.is_empty() {
            return self.clone();
        }
        ParsedQuery {
            terms: kept,
            dropped: self.dropped,
        }
    }
}

fn quote(words: &[String]) -> String {
    // Words contain only alphanumerics, so no `"` can appear; quote anyway for safety.
    let joined = words.join(" ").replace('"', "\"\"");
    format!("\"{joined}\"")
}

impl ParsedQuery {
    /// The same expression as [`ParsedQuery::fts`] for the fast ranker; `None` when a term
    /// is a prefix (only FTS5 expands those).
    pub(crate) fn fast(&self, any: bool) -> Option<crate::fastlex::FastQuery> {
        if self.terms.is_empty() || self.terms.iter().any(|t| t.prefix) {
            return None;
        }
        let n = self.terms.len();
        let plain = self.terms.iter().filter(|t| t.words.len() == 1).count();
        Some(crate::fastlex::FastQuery {
            terms: self.terms.iter().map(|t| t.words.clone()).collect(),
            all: !any,
            whole_phrase: plain >= 2 && plain == n && plain <= 8,
        })
    }

    /// The FTS5 MATCH expression: all terms (AND), plus the whole text as one phrase when it
    /// has several plain words, so an exact phrase outranks scattered words. `any` joins
    /// terms with OR instead (the relaxed retry when AND finds nothing).
    pub fn fts(&self, any: bool) -> Option<String> {
        if self.terms.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|t| {
                let q = quote(&t.words);
                if t.prefix {
                    format!("{q}*")
                } else {
                    q
                }
            })
            .collect();
        let joined = parts.join(if any { " OR " } else { " AND " });
        let plain: Vec<String> = self
            .terms
            .iter()
            .filter(|t| !t.prefix && t.words.len() == 1)
            .map(|t| t.words[0].clone())
            .collect();
        if plain.len() >= 2 && plain.len() == self.terms.len() && plain.len() <= 8 {
            Some(format!("({joined}) OR {}", quote(&plain)))
        } else {
            Some(joined)
        }
    }
}

// ---- filters -----------------------------------------------------------------------------

/// Validated request values.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub limit: usize,
    pub offset: usize,
    pub notes: Vec<String>,
}

pub(crate) fn check(req: &SearchRequest) -> Result<Checked> {
    let mut notes = Vec::new();
    if req.query.trim().is_empty() {
        return Err(SearchError::EmptyQuery);
    }
    let limit = match req.limit {
        None => DEFAULT_LIMIT,
        Some(n) if n < 1 => {
            return Err(SearchError::InvalidArgument {
                field: "limit",
                reason: format!("{n} is not a page size; give 1..={MAX_LIMIT}"),
            })
        }
        Some(n) if n as u64 > MAX_LIMIT as u64 => {
            notes.push(format!("limit {n} capped to {MAX_LIMIT}"));
            MAX_LIMIT
        }
        Some(n) => n as usize,
    };
    let offset = match req.offset {
        None => 0,
        Some(n) if n < 0 => {
            return Err(SearchError::InvalidArgument {
                field: "offset",
                reason: format!("{n} is negative; give 0 or more (or use the cursor)"),
            })
        }
        Some(n) if n > MAX_OFFSET => {
            return Err(SearchError::InvalidArgument {
                field: "offset",
                reason: format!("{n} is deeper than {MAX_OFFSET}; page with `cursor` instead"),
            })
        }
        Some(n) => n as usize,
    };
    let f = &req.filters;
    if let (Some(a), Some(b)) = (f.created_after, f.created_before) {
        if a >= b {
            return Err(SearchError::InvalidArgument {
                field: "created_after",
                reason: format!("created_after ({a}) must be before created_before ({b})"),
            });
        }
    }
    if f.metadata.len() > MAX_METADATA_FILTERS {
        return Err(SearchError::InvalidArgument {
            field: "metadata",
            reason: format!("{} metadata filters; the limit is {MAX_METADATA_FILTERS}", f.metadata.len()),
        });
    }
    for p in f.metadata.keys() {
        json_path(p)?;
    }
    Ok(Checked { limit, offset, notes })
}

fn json_path(p: &str) -> Result<String> {
    let path = if p.starts_with('$') { p.to_string() } else { format!("$.{p}") };
    let ok = path.len() > 1
        && path.len() <= 256
        && path[1..]
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '[' | ']'))
        && !path.contains("..");
    if !ok {
        return Err(SearchError::InvalidArgument {
            field: "metadata",
            reason: format!("`{p}` is not a supported JSON path; use dotted keys like `a.b` or `$.a.b[0]`"),
        });
    }
    Ok(path)
}

/// SQL conditions over `k` (the knowledge table) and their parameters, numbered from
/// `first_param`.
pub(crate) fn filter_sql(f: &Filters, first_param: usize) -> (String, Vec<SqlValue>) {
    let mut sql = String::new();
    let mut params: Vec<SqlValue> = Vec::new();
    let mut p = |sql: &mut String, cond: &str, vals: Vec<SqlValue>| {
        let mut c = cond.to_string();
        for v in vals {
            params.push(v);
            c = c.replacen('@', &format!("?{}", first_param + params.len() - 1), 1);
        }
        sql.push_str(" AND ");
        sql.push_str(&c);
    };
    if let Some(c) = &f.category {
        p(&mut sql, "k.category = @", vec![c.clone().into()]);
    }
    if let Some(r) = &f.region {
        p(&mut sql, "k.region = @", vec![r.clone().into()]);
    }
    if let Some(t) = f.created_after {
        p(&mut sql, "k.created_at > @", vec![t.into()]);
    }
    if let Some(t) = f.created_before {
        p(&mut sql, "k.created_at < @", vec![t.into()]);
    }
    if !f.tags_any.is_empty() {
        let arr = serde_json::to_string(&f.tags_any).unwrap_or_else(|_| "[]".into());
        p(
            &mut sql,
            "EXISTS (SELECT 1 FROM json_each(k.tags) t WHERE t.value IN (SELECT value FROM json_each(@)))",
            vec![arr.into()],
        );
    }
    if !f.tags_all.is_empty() {
        let mut uniq = f.tags_all.clone();
        uniq.sort();
        uniq.dedup();
        let n = uniq.len() as i64;
        let arr = serde_json::to_string(&uniq).unwrap_or_else(|_| "[]".into());
        p(
            &mut sql,
            "(SELECT COUNT(DISTINCT t.value) FROM json_each(k.tags) t WHERE t.value IN (SELECT value FROM json_each(@))) = @",
            vec![arr.into(), n.into()],
        );
    }
    for (path, v) in &f.metadata {
        // check() validated the path already.
        let path = json_path(path).unwrap_or_else(|_| "$.__invalid__".into());
        p(&mut sql, "json_extract(k.metadata, @) = @", vec![path.into(), v.to_sql()]);
    }
    (sql, params)
}

// ---- cursor ------------------------------------------------------------------------------

/// Where a page ended: lexical pages continue after (score, rowid); fused pages after a
/// rank position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cursor {
    /// Last (rank, rowid) of the previous lexical page, and the rank window's lowest
    /// rowid (0 = no window) so every page ranks the same candidates.
    After { rank: f64, rowid: i64, lo: i64 },
    /// Items already returned (vector / hybrid).
    Offset(usize),
}

impl Cursor {
    pub fn encode(&self) -> String {
        match self {
            Cursor::After { rank, rowid, lo } => format!("l{:016x}{:016x}{:016x}", rank.to_bits(), rowid, lo),
            Cursor::Offset(n) => format!("o{n:x}"),
        }
    }
    pub fn decode(s: &str) -> Result<Cursor> {
        let bad = || SearchError::BadCursor(s.chars().take(64).collect());
        if let Some(h) = s.strip_prefix('l') {
            if h.len() != 48 || !h.is_ascii() {
                return Err(bad());
            }
            let r = u64::from_str_radix(&h[..16], 16).map_err(|_| bad())?;
            let id = u64::from_str_radix(&h[16..32], 16).map_err(|_| bad())?;
            let lo = u64::from_str_radix(&h[32..], 16).map_err(|_| bad())?;
            let rank = f64::from_bits(r);
            if !rank.is_finite() {
                return Err(bad());
            }
            return Ok(Cursor::After {
                rank,
                rowid: id as i64,
                lo: lo as i64,
            });
        }
        if let Some(h) = s.strip_prefix('o') {
            let n = usize::from_str_radix(h, 16).map_err(|_| bad())?;
            if n > MAX_OFFSET as usize + MAX_LIMIT {
                return Err(bad());
            }
            return Ok(Cursor::Offset(n));
        }
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_text_becomes_a_safe_expression() {
        let p = parse("hello world");
        assert_eq!(p.fts(false).unwrap(), "(\"hello\" AND \"world\") OR \"hello world\"");
        let p = parse("\"exact phrase\" other");
        assert_eq!(p.terms.len(), 2);
        assert_eq!(p.terms[0].words, vec!["exact", "phrase"]);
        let p = parse("data*");
        assert_eq!(p.fts(false).unwrap(), "\"data\"*");
        let p = parse("a NEAR(b c) -d OR e AND \"f");
        let e = p.fts(false).unwrap();
        assert!(e.contains("\"NEAR\""), "{e}");
        assert!(e.contains("\"OR\""), "{e}");
        assert!(parse("!!! ??? 😀 ---").fts(false).is_none());
        let p = parse("caf\u{e9} \u{65e5}\u{672c}");
        assert_eq!(p.terms.len(), 2);
        let huge = "word ".repeat(2000);
        let p = parse(&huge);
        assert_eq!(p.terms.len(), MAX_TERMS);
        assert_eq!(p.dropped, 2000 - MAX_TERMS);
    }

    #[test]
    fn natural_language_drops_stop_words() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]), "sorted for binary search");
        let p = parse("When did Caroline go to the support group?").without_stop_words();
        let w: Vec<&str> = p.terms.iter().map(|t| t.words[0].as_str()).collect();
        assert_eq!(w, vec!["Caroline", "go", "support", "group"]);
        assert_eq!(
            p.fts(true).unwrap(),
            "(\"Caroline\" OR \"go\" OR \"support\" OR \"group\") OR \"Caroline go support group\""
        );
        // Only stop words: kept as they are.
        assert_eq!(parse("who is it").without_stop_words().terms.len(), 3);
        assert!(is_explicit("\"exact phrase\" x") && is_explicit("data*") && is_explicit("a AND b"));
        assert!(!is_explicit("what did she and he say"));
    }

    #[test]
    fn unknown_filter_fields_are_named() {
        let e = Filters::from_json(&serde_json::json!({"categry": "x"})).unwrap_err();
        assert!(matches!(&e, SearchError::UnknownField { field, .. } if field == "categry"), "{e}");
        let e = SearchRequest::from_json(&serde_json::json!({"query": "x", "filters": {"bogus": 1}})).unwrap_err();
        assert!(matches!(&e, SearchError::UnknownField { field, .. } if field == "bogus"), "{e}");
        let e = SearchRequest::from_json(&serde_json::json!({"query": "x", "limt": 1})).unwrap_err();
        assert!(matches!(&e, SearchError::UnknownField { field, .. } if field == "limt"), "{e}");
        let ok = SearchRequest::from_json(&serde_json::json!({
            "query": "x", "filters": {"metadata": {"a.b": 1, "c": "d", "e": true, "f": 1.5}}
        }))
        .unwrap();
        assert_eq!(ok.filters.metadata.len(), 4);
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        for c in [
            Cursor::After {
                rank: -3.25,
                rowid: 42,
                lo: 7,
            },
            Cursor::Offset(30),
        ] {
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
        for bad in ["", "x", "l123", "o-1", "lzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "o😀"] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_numbers_are_clear_errors() {
        assert!(matches!(check(&SearchRequest::new("  ")), Err(SearchError::EmptyQuery)));
        assert!(check(&SearchRequest::new("x").offset(-1)).is_err());
        assert!(check(&SearchRequest::new("x").limit(0)).is_err());
        let c = check(&SearchRequest::new("x").limit(i64::MAX)).unwrap();
        assert_eq!(c.limit, MAX_LIMIT);
        assert!(!c.notes.is_empty());
    }
}
