//! Exact BM25 top-k for word and phrase queries, without FTS5's per-row ranking cost.
//!
//! Why it exists: `ORDER BY rank` makes FTS5 call `bm25()` once per matching row, and each
//! call looks the row's token count up in `knowledge_fts_docsize` through a nested
//! statement (~1 µs a row here). A common word matches 5% of the corpus, so the slowest
//! queries grew with the corpus (p99 6.5 ms at 100k entries).
//!
//! What it does instead, per query, inside one read transaction on a raw read-only
//! connection of the read-pool thread:
//! 1. tokenizes each query word with FTS5's own tokenizer (found through the `fts5_api`),
//!    so the terms are exactly the ones FTS5 would look up;
//! 2. reads each term's instances (row, column, offset) from an `fts5vocab` table: one
//!    sequential pass over the term's doclist;
//! 3. takes row count and token totals from the index's averages record, and each row's
//!    token count from [`DocLens`], an in-memory copy kept current by reading
//!    `_knowledge_touched` (the FTS triggers append every rewritten rowid to it);
//! 4. evaluates FTS5's bm25 formula, phrase by phrase in FTS5's order, so the scores are
//!    bit-identical to `bm25(knowledge_fts, 10.0, 1.0, 4.0)` (a unit test compares them).
//!
//! Anything it cannot answer exactly (prefix terms, a token count it does not hold, a
//! word the tokenizer splits) returns `None` and the caller runs the FTS5 statement.

use crate::error::{Result, SearchError};
use libsql::ffi;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// Column weights, in FTS column order (topic, content, tags); the same numbers as
/// [`crate::engine::BM25_WEIGHTS`].
pub(crate) const WEIGHTS: [f64; 3] = [10.0, 1.0, 4.0];
/// FTS5's bm25 constants.
const K1: f64 = 1.2;
const B: f64 = 0.75;
/// A term with at least this many instances is kept in memory once a query has read
/// it: reading it through `fts5vocab` costs ~0.4 µs an instance, so these are the
/// queries whose latency grows with the corpus.
const HOT_MIN: usize = 1_000;
/// At most this many instances (16 bytes each: 64 MiB) are held for frequent terms.
const HOT_MAX_INSTANCES: usize = 4 << 20;
/// A catch-up over more changed rows than this clears the frequent-term lists instead
/// of patching them (re-tokenizing and splicing a bulk load costs more than re-reading).
const HOT_PATCH_MAX_ROWS: usize = 64;
/// Marks a rowid whose token count is not held (row not indexed).
const ABSENT: u32 = u32::MAX;
/// Rowids below this are held in a dense vector; larger ones (rare: explicit rowids) in
/// a map.
const DENSE_MAX: i64 = 1 << 26;

/// A query the fast path can rank: every term is a word or a quoted phrase (no prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FastQuery {
    /// Each user term as its words (a phrase when more than one).
    pub terms: Vec<Vec<String>>,
    /// Rows must contain every term (AND) or any of them (OR).
    pub all: bool,
    /// The whole text is one more phrase (FTS expression `(...) OR "w1 w2 ..."`).
    pub whole_phrase: bool,
}

/// Token counts of indexed rows, shared by the read-pool threads of one store.
pub(crate) struct DocLens {
    /// The database file (each read-pool thread opens its own raw connection to it).
    path: PathBuf,
    inner: RwLock<Lens>,
    /// Held while one thread catches the counts up, so others do not repeat the work.
    refresh: Mutex<()>,
    /// Instances from which a term is kept in memory ([`HOT_MIN`]; tests lower it).
    hot_min: usize,
}

struct Lens {
    /// `_knowledge_touched.seq` the counts (and `hot`) are current to; -1 = never loaded.
    seq: i64,
    dense: Vec<u32>,
    sparse: HashMap<i64, u32>,
    /// Instance lists of frequent terms (at least `DocLens::hot_min` instances), kept
    /// exact like the counts: a few changed rows are re-tokenized and spliced in; a bulk
    /// change clears them (queries admit them again).
    hot: HashMap<String, Arc<Vec<Inst>>>,
    /// Instances held in `hot` (bounded by [`HOT_MAX_INSTANCES`]).
    hot_instances: usize,
}

impl Lens {
    fn empty(seq: i64) -> Lens {
        Lens {
            seq,
            dense: Vec::new(),
            sparse: HashMap::new(),
            hot: HashMap::new(),
            hot_instances: 0,
        }
    }
    fn clear_hot(&mut self) {
        self.hot.clear();
        self.hot_instances = 0;
    }
    fn get(&self, rid: i64) -> Option<u32> {
        let v = if (0..DENSE_MAX).contains(&rid) {
            self.dense.get(rid as usize).copied().unwrap_or(ABSENT)
        } else {
            self.sparse.get(&rid).copied().unwrap_or(ABSENT)
        };
        (v != ABSENT).then_some(v)
    }
    fn set(&mut self, rid: i64, len: Option<u32>) {
        let v = match len {
            Some(n) => n.min(ABSENT - 1),
            None => ABSENT,
        };
        if (0..DENSE_MAX).contains(&rid) {
            let i = rid as usize;
            if i >= self.dense.len() {
                if v == ABSENT {
                    return;
                }
                self.dense.resize((i + 1).max(self.dense.len() * 5 / 4), ABSENT);
            }
            self.dense[i] = v;
        } else if v == ABSENT {
            self.sparse.remove(&rid);
        } else {
            self.sparse.insert(rid, v);
        }
    }
}

impl std::fmt::Debug for DocLens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocLens").field("path", &self.path).finish_non_exhaustive()
    }
}

impl DocLens {
    pub(crate) fn new(path: &Path) -> Self {
        DocLens {
            path: path.to_path_buf(),
            inner: RwLock::new(Lens::empty(-1)),
            refresh: Mutex::new(()),
            hot_min: HOT_MIN,
        }
    }

    #[cfg(test)]
    fn with_hot_min(path: &Path, hot_min: usize) -> Self {
        DocLens {
            hot_min,
            ..DocLens::new(path)
        }
    }

    /// Frequent-term statistics for the benchmark: (terms held, instances held).
    pub(crate) fn hot_stats(&self) -> (usize, usize) {
        self.inner.read().map(|g| (g.hot.len(), g.hot_instances)).unwrap_or((0, 0))
    }
}

/// Instance lists by term (FTS5 token).
type Lists = HashMap<String, Arc<Vec<Inst>>>;
/// A changed row and the frequent terms' instances in it.
type RowInstances = (i64, Vec<(String, Inst)>);

/// One instance of a term: row, column index, token offset in the column.
#[derive(Debug, Clone, Copy)]
struct Inst {
    doc: i64,
    col: u8,
    off: u32,
}

fn err(msg: impl std::fmt::Display) -> SearchError {
    SearchError::Store(edgeswarm_store::StoreError::sql(format!("fast lexical ranking: {msg}")))
}

// ---- raw connection ------------------------------------------------------------------

/// A raw read-only connection with its prepared statements and the FTS5 tokenizer.
struct RawConn {
    path: PathBuf,
    db: *mut ffi::sqlite3,
    stmts: HashMap<&'static str, *mut ffi::sqlite3_stmt>,
    tok_api: ffi::fts5_tokenizer,
    tok: *mut ffi::Fts5Tokenizer,
    /// The last query's instance lists and the `PRAGMA data_version` they were read at:
    /// a relaxed (OR) retry or the next page reuses them while nothing was committed.
    memo: Option<(i64, Lists)>,
}

impl Drop for RawConn {
    fn drop(&mut self) {
        // SAFETY: every pointer came from SQLite and is released exactly once here.
        unsafe {
            for s in self.stmts.values() {
                ffi::sqlite3_finalize(*s);
            }
            if !self.tok.is_null() {
                if let Some(del) = self.tok_api.xDelete {
                    del(self.tok);
                }
            }
            ffi::sqlite3_close_v2(self.db);
        }
    }
}

/// Resets a statement (and clears its bindings) when the use ends, however it ends.
struct Running(*mut ffi::sqlite3_stmt);
impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: the statement is alive (owned by the RawConn's cache).
        unsafe {
            ffi::sqlite3_reset(self.0);
            ffi::sqlite3_clear_bindings(self.0);
        }
    }
}

impl Running {
    /// Steps once: `Ok(true)` = a row is ready.
    fn step(&self, db: *mut ffi::sqlite3) -> Result<bool> {
        // SAFETY: valid statement.
        match unsafe { ffi::sqlite3_step(self.0) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            _ => Err(err(errmsg(db))),
        }
    }
    fn i64(&self, i: c_int) -> i64 {
        // SAFETY: valid statement positioned on a row.
        unsafe { ffi::sqlite3_column_int64(self.0, i) }
    }
    fn is_null(&self, i: c_int) -> bool {
        // SAFETY: as above.
        unsafe { ffi::sqlite3_column_type(self.0, i) == ffi::SQLITE_NULL }
    }
    /// The column's bytes (text or blob), valid until the next step.
    fn bytes(&self, i: c_int) -> &[u8] {
        // SAFETY: as above; the pointer is valid for `n` bytes until the next step/reset,
        // and the returned slice borrows `self`, which is not stepped while it lives.
        unsafe {
            let p = ffi::sqlite3_column_blob(self.0, i) as *const u8;
            let n = ffi::sqlite3_column_bytes(self.0, i);
            if p.is_null() || n <= 0 {
                &[]
            } else {
                std::slice::from_raw_parts(p, n as usize)
            }
        }
    }
}

fn errmsg(db: *mut ffi::sqlite3) -> String {
    // SAFETY: sqlite3_errmsg returns a valid NUL-terminated string for any handle.
    unsafe {
        let p = ffi::sqlite3_errmsg(db);
        if p.is_null() {
            "unknown SQLite error".into()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// The tokenizer of `knowledge_fts` (see the store schema): porter over unicode61 with
/// diacritics removed.
const TOKENIZER: &CStr = c"porter";
const TOKENIZER_ARGS: [&CStr; 3] = [c"unicode61", c"remove_diacritics", c"2"];
/// Temp vocabulary table over the index: one row per term instance.
const VOCAB_SQL: &str = "CREATE VIRTUAL TABLE IF NOT EXISTS temp.es_knowledge_inst USING fts5vocab(main, knowledge_fts, instance)";

impl RawConn {
    fn open(path: &Path) -> Result<RawConn> {
        let c_path = CString::new(path.to_string_lossy().as_bytes()).map_err(|_| err("the path contains NUL"))?;
        let mut db = std::ptr::null_mut();
        // SAFETY: valid out-pointer and NUL-terminated path.
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                c_path.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READONLY | ffi::SQLITE_OPEN_NOMUTEX,
                std::ptr::null(),
            )
        };
        let mut conn = RawConn {
            path: path.to_path_buf(),
            db,
            stmts: HashMap::new(),
            // SAFETY: an all-None table of function pointers is a valid value.
            tok_api: unsafe { std::mem::zeroed() },
            tok: std::ptr::null_mut(),
            memo: None,
        };
        if rc != ffi::SQLITE_OK {
            return Err(err(format!("cannot open {}: {}", path.display(), errmsg(db))));
        }
        // SAFETY: valid handle.
        unsafe { ffi::sqlite3_busy_timeout(db, 5_000) };
        conn.exec("PRAGMA mmap_size = 1073741824")?;
        conn.exec(VOCAB_SQL)?;
        conn.load_tokenizer()?;
        Ok(conn)
    }

    fn exec(&self, sql: &str) -> Result<()> {
        let c = CString::new(sql).map_err(|_| err("SQL contains NUL"))?;
        // SAFETY: valid handle and NUL-terminated SQL.
        let rc = unsafe { ffi::sqlite3_exec(self.db, c.as_ptr(), None, std::ptr::null_mut(), std::ptr::null_mut()) };
        if rc != ffi::SQLITE_OK {
            return Err(err(format!("{sql}: {}", errmsg(self.db))));
        }
        Ok(())
    }

    fn prepare(&mut self, sql: &'static str) -> Result<Running> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(Running(*s));
        }
        let mut st = std::ptr::null_mut();
        // SAFETY: valid handle; `sql` outlives the call.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                self.db,
                sql.as_ptr() as *const c_char,
                sql.len() as c_int,
                &mut st,
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK || st.is_null() {
            return Err(err(format!("{sql}: {}", errmsg(self.db))));
        }
        self.stmts.insert(sql, st);
        Ok(Running(st))
    }

    fn bind_i64(&self, r: &Running, i: c_int, v: i64) {
        // SAFETY: valid statement and parameter index.
        unsafe { ffi::sqlite3_bind_int64(r.0, i, v) };
    }

    fn bind_text(&self, r: &Running, i: c_int, v: &str) {
        // SAFETY: SQLITE_TRANSIENT makes SQLite copy the text before the call returns.
        unsafe {
            ffi::sqlite3_bind_text(r.0, i, v.as_ptr() as *const c_char, v.len() as c_int, ffi::SQLITE_TRANSIENT());
        }
    }

    /// Finds the `fts5_api` and creates the porter tokenizer with the table's arguments.
    fn load_tokenizer(&mut self) -> Result<()> {
        let mut api: *mut ffi::fts5_api = std::ptr::null_mut();
        let sql = "SELECT fts5(?1)";
        let r = self.prepare(sql)?;
        // SAFETY: binds a pointer to our local out-variable under the type name FTS5
        // checks; the statement is stepped and reset before `api` goes out of scope.
        unsafe {
            ffi::sqlite3_bind_pointer(r.0, 1, &mut api as *mut _ as *mut c_void, c"fts5_api_ptr".as_ptr(), None);
        }
        r.step(self.db)?;
        drop(r);
        if api.is_null() {
            return Err(err("FTS5 is not available on this connection"));
        }
        let mut user: *mut c_void = std::ptr::null_mut();
        // SAFETY: `api` is the live fts5_api of this connection; out-pointers are valid.
        unsafe {
            let find = (*api).xFindTokenizer.ok_or_else(|| err("fts5_api has no xFindTokenizer"))?;
            if find(api, TOKENIZER.as_ptr(), &mut user, &mut self.tok_api) != ffi::SQLITE_OK {
                return Err(err("the porter tokenizer is not registered"));
            }
            let create = self.tok_api.xCreate.ok_or_else(|| err("tokenizer has no xCreate"))?;
            let mut args: Vec<*const c_char> = TOKENIZER_ARGS.iter().map(|a| a.as_ptr()).collect();
            if create(user, args.as_mut_ptr(), args.len() as c_int, &mut self.tok) != ffi::SQLITE_OK {
                return Err(err("cannot create the porter tokenizer"));
            }
        }
        Ok(())
    }

    /// FTS5's tokens of `text` with their byte ranges (`flags`: query or document
    /// tokenization); `None` if it yields colocated (synonym) tokens.
    fn tokens(&self, text: &str, flags: c_int) -> Result<Option<Vec<(String, usize, usize)>>> {
        struct Ctx {
            out: Vec<(String, usize, usize)>,
            colocated: bool,
        }
        unsafe extern "C" fn on_token(ctx: *mut c_void, flags: c_int, p: *const c_char, n: c_int, start: c_int, end: c_int) -> c_int {
            // SAFETY: `ctx` is the `Ctx` passed below; `p` points at `n` bytes.
            let ctx = unsafe { &mut *(ctx as *mut Ctx) };
            if flags & ffi::FTS5_TOKEN_COLOCATED != 0 {
                ctx.colocated = true;
            }
            let bytes = if p.is_null() || n <= 0 {
                &[][..]
            } else {
                // SAFETY: as above.
                unsafe { std::slice::from_raw_parts(p as *const u8, n as usize) }
            };
            ctx.out.push((
                String::from_utf8_lossy(bytes).into_owned(),
                start.max(0) as usize,
                end.max(0) as usize,
            ));
            ffi::SQLITE_OK
        }
        let mut ctx = Ctx {
            out: Vec::new(),
            colocated: false,
        };
        let tokenize = self.tok_api.xTokenize.ok_or_else(|| err("tokenizer has no xTokenize"))?;
        // SAFETY: live tokenizer; `ctx` outlives the call; text pointer/length are valid.
        let rc = unsafe {
            tokenize(
                self.tok,
                &mut ctx as *mut Ctx as *mut c_void,
                flags,
                text.as_ptr() as *const c_char,
                text.len() as c_int,
                Some(on_token),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(err(format!("tokenizer failed on {text:?}")));
        }
        Ok((!ctx.colocated).then_some(ctx.out))
    }

    /// Every instance of `term`, ordered by (row, column, offset).
    fn instances(&mut self, term: &str) -> Result<Vec<Inst>> {
        let db = self.db;
        let r = self.prepare("SELECT doc, col, offset FROM temp.es_knowledge_inst WHERE term = ?1")?;
        self.bind_text(&r, 1, term);
        let mut out = Vec::new();
        while r.step(db)? {
            let col = match r.bytes(1) {
                b"topic" => 0,
                b"content" => 1,
                b"tags" => 2,
                other => return Err(err(format!("unexpected FTS column {:?}", String::from_utf8_lossy(other)))),
            };
            out.push(Inst {
                doc: r.i64(0),
                col,
                off: r.i64(2) as u32,
            });
        }
        Ok(out)
    }

    /// (rows, total tokens) from the index's averages record; (0, 0) when empty.
    fn totals(&mut self) -> Result<(i64, i64)> {
        let db = self.db;
        let r = self.prepare("SELECT block FROM knowledge_fts_data WHERE id = 1")?;
        if !r.step(db)? {
            return Ok((0, 0));
        }
        let mut b = r.bytes(0);
        let rows = varint(&mut b) as i64;
        let mut tokens = 0i64;
        while !b.is_empty() {
            tokens += varint(&mut b) as i64;
        }
        Ok((rows, tokens))
    }

    fn scalar(&mut self, sql: &'static str) -> Result<i64> {
        let db = self.db;
        let r = self.prepare(sql)?;
        Ok(if r.step(db)? && !r.is_null(0) { r.i64(0) } else { 0 })
    }

    fn doc_size(&mut self, rid: i64) -> Result<Option<u32>> {
        let db = self.db;
        let r = self.prepare("SELECT sz FROM knowledge_fts_docsize WHERE id = ?1")?;
        self.bind_i64(&r, 1, rid);
        Ok(if r.step(db)? { Some(size_sum(r.bytes(0))) } else { None })
    }
}

/// SQLite's varint (as FTS5 writes it): 7 bits a byte, high bit = more; the 9th byte
/// carries 8 bits.
fn varint(b: &mut &[u8]) -> u64 {
    let mut v: u64 = 0;
    for i in 0..9 {
        let Some((&c, rest)) = b.split_first() else { return v };
        *b = rest;
        if i == 8 {
            return (v << 8) | c as u64;
        }
        v = (v << 7) | (c & 0x7f) as u64;
        if c & 0x80 == 0 {
            return v;
        }
    }
    v
}

/// Total tokens of a row from its docsize blob (one varint per column).
fn size_sum(mut b: &[u8]) -> u32 {
    let mut n: u64 = 0;
    while !b.is_empty() {
        n += varint(&mut b);
    }
    n.min((ABSENT - 1) as u64) as u32
}

thread_local! {
    /// This read-pool thread's raw connection (one store per read pool, so one path).
    static CONN: RefCell<Option<RawConn>> = const { RefCell::new(None) };
}

/// Ends the read transaction however the query ends.
struct ReadTxn(*mut ffi::sqlite3);
impl Drop for ReadTxn {
    fn drop(&mut self) {
        // SAFETY: valid handle; COMMIT of a read transaction only releases the snapshot.
        unsafe {
            ffi::sqlite3_exec(self.0, c"COMMIT".as_ptr(), None, std::ptr::null_mut(), std::ptr::null_mut());
        }
    }
}

/// Ranks `q`: up to `limit` (rowid, rank) pairs after skipping `offset`, ordered by
/// (rank, rowid) like `ORDER BY knowledge_fts.rank, knowledge_fts.rowid`, starting after
/// `after` when given. `Ok(None)` = not answerable here; run the FTS5 statement.
/// Blocking: call on a read-pool thread.
pub(crate) fn ranked(
    lens: &DocLens,
    q: &FastQuery,
    limit: usize,
    offset: usize,
    after: Option<(f64, i64)>,
) -> Result<Option<Vec<(i64, f64)>>> {
    CONN.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|c| c.path != lens.path) {
            *slot = None;
            *slot = Some(RawConn::open(&lens.path)?);
        }
        let conn = slot.as_mut().expect("opened above");
        conn.exec("BEGIN")?;
        let _txn = ReadTxn(conn.db);
        rank_in_txn(conn, lens, q, limit, offset, after)
    })
}

/// The query's phrases as FTS5 tokens, in FTS5's phrase order (the terms, then the whole
/// text when `whole_phrase`). `None` if a word does not stay one token.
fn phrases_of(conn: &RawConn, q: &FastQuery) -> Result<Option<Vec<Vec<String>>>> {
    let mut phrases: Vec<Vec<String>> = Vec::with_capacity(q.terms.len() + 1);
    for words in &q.terms {
        let mut toks = Vec::with_capacity(words.len());
        for w in words {
            match conn.tokens(w, ffi::FTS5_TOKENIZE_QUERY)? {
                Some(t) if t.len() == 1 => toks.extend(t.into_iter().map(|t| t.0)),
                _ => return Ok(None),
            }
        }
        phrases.push(toks);
    }
    if q.whole_phrase {
        phrases.push(phrases.iter().flatten().cloned().collect());
    }
    Ok(Some(phrases))
}

fn rank_in_txn(
    conn: &mut RawConn,
    lens: &DocLens,
    q: &FastQuery,
    limit: usize,
    offset: usize,
    after: Option<(f64, i64)>,
) -> Result<Option<Vec<(i64, f64)>>> {
    let Some(phrases) = phrases_of(conn, q)? else { return Ok(None) };
    let nterms = q.terms.len();
    let (nrow, ntok) = conn.totals()?;
    if nrow <= 0 {
        return Ok(Some(vec![]));
    }
    let snap = conn.scalar("SELECT max(seq) FROM _knowledge_touched")?;
    catch_up(conn, lens, snap)?;

    let version = conn.scalar("PRAGMA data_version")?;
    let mut inst: Lists = match conn.memo.take() {
        Some((v, m)) if v == version => m,
        _ => HashMap::new(),
    };
    inst.retain(|t, _| phrases.iter().flatten().any(|p| p == t));
    for t in phrases.iter().flatten() {
        if inst.contains_key(t.as_str()) {
            continue;
        }
        let held = {
            let g = lens.inner.read().map_err(|_| err("doc length cache poisoned"))?;
            if g.seq == snap {
                g.hot.get(t).cloned()
            } else {
                None
            }
        };
        let list = match held {
            Some(l) => l,
            None => {
                let l = Arc::new(conn.instances(t)?);
                if l.len() >= lens.hot_min {
                    let mut g = lens.inner.write().map_err(|_| err("doc length cache poisoned"))?;
                    if g.seq == snap && g.hot_instances + l.len() <= HOT_MAX_INSTANCES && !g.hot.contains_key(t) {
                        g.hot_instances += l.len();
                        g.hot.insert(t.clone(), l.clone());
                    }
                }
                l
            }
        };
        inst.insert(t.clone(), list);
    }
    // Per phrase: (row, weighted frequency), ordered by row.
    let hits: Vec<Vec<(i64, f64)>> = phrases
        .iter()
        .map(|p| {
            let lists: Vec<&[Inst]> = p.iter().map(|t| inst[t.as_str()].as_slice()).collect();
            phrase_hits(&lists)
        })
        .collect();
    // Matching rows: all / any of the user's terms (the whole phrase implies all terms).
    let matched: Vec<i64> = if q.all {
        intersect(&hits[..nterms])
    } else {
        union(&hits[..nterms])
    };
    let avgdl = ntok as f64 / nrow as f64;
    let idf: Vec<f64> = hits
        .iter()
        .map(|h| {
            let n_hit = h.len() as f64;
            let idf = ((nrow as f64 - n_hit + 0.5) / (n_hit + 0.5)).ln();
            if idf <= 0.0 {
                1e-6
            } else {
                idf
            }
        })
        .collect();

    let guard = lens.inner.read().map_err(|_| err("doc length cache poisoned"))?;
    if guard.seq != snap {
        // Another thread moved the counts past this snapshot; rank through FTS5.
        return Ok(None);
    }
    let mut cursors = vec![0usize; hits.len()];
    let mut scored: Vec<(f64, i64)> = Vec::with_capacity(matched.len());
    for &doc in &matched {
        let Some(d) = guard.get(doc) else { return Ok(None) };
        let d = d as f64;
        let mut score = 0.0f64;
        for (p, h) in hits.iter().enumerate() {
            let c = &mut cursors[p];
            while *c < h.len() && h[*c].0 < doc {
                *c += 1;
            }
            let f = if *c < h.len() && h[*c].0 == doc { h[*c].1 } else { 0.0 };
            score += idf[p] * ((f * (K1 + 1.0)) / (f + K1 * (1.0 - B + B * d / avgdl)));
        }
        let rank = -score;
        if let Some((ar, arow)) = after {
            if !(rank > ar || (rank == ar && doc > arow)) {
                continue;
            }
        }
        scored.push((rank, doc));
    }
    drop(guard);
    conn.memo = Some((version, inst));
    let want = offset.saturating_add(limit).min(scored.len());
    let cmp = |a: &(f64, i64), b: &(f64, i64)| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal).then(a.1.cmp(&b.1));
    if want < scored.len() && want > 0 {
        scored.select_nth_unstable_by(want - 1, cmp);
        scored.truncate(want);
    }
    scored.sort_unstable_by(cmp);
    Ok(Some(scored.into_iter().skip(offset).take(limit).map(|(r, d)| (d, r)).collect()))
}

/// Brings [`DocLens`] to `_knowledge_touched.seq == snap`, as seen by this snapshot.
fn catch_up(conn: &mut RawConn, lens: &DocLens, snap: i64) -> Result<()> {
    let current = |l: &DocLens| l.inner.read().map(|g| g.seq).map_err(|_| err("doc length cache poisoned"));
    if current(lens)? == snap {
        return Ok(());
    }
    let _one = lens.refresh.lock().map_err(|_| err("doc length cache poisoned"))?;
    let have = current(lens)?;
    if have >= snap {
        return Ok(()); // up to date, or ahead of this snapshot (the caller checks)
    }
    let oldest = conn.scalar("SELECT min(seq) FROM _knowledge_touched")?;
    if have < 0 || oldest > have + 1 {
        // Never loaded, or the log no longer reaches back to what we hold: reload all.
        let db = conn.db;
        let mut fresh = Lens::empty(snap);
        let r = conn.prepare("SELECT id, sz FROM knowledge_fts_docsize")?;
        while r.step(db)? {
            fresh.set(r.i64(0), Some(size_sum(r.bytes(1))));
        }
        drop(r);
        *lens.inner.write().map_err(|_| err("doc length cache poisoned"))? = fresh;
        return Ok(());
    }
    let db = conn.db;
    let mut rids = Vec::new();
    {
        let r = conn.prepare("SELECT rid FROM _knowledge_touched WHERE seq > ?1 AND seq <= ?2")?;
        conn.bind_i64(&r, 1, have);
        conn.bind_i64(&r, 2, snap);
        while r.step(db)? {
            rids.push(r.i64(0));
        }
    }
    rids.sort_unstable();
    rids.dedup();
    let mut sizes = Vec::with_capacity(rids.len());
    for rid in &rids {
        sizes.push((*rid, conn.doc_size(*rid)?));
    }
    let hot_terms: Vec<String> = lens.inner.read().map(|g| g.hot.keys().cloned().collect()).unwrap_or_default();
    // The frequent terms' new instances in each changed row (None: too many rows, or a
    // tokenization we cannot mirror; the lists are then dropped).
    let patch: Option<Vec<RowInstances>> = if hot_terms.is_empty() || rids.len() > HOT_PATCH_MAX_ROWS {
        None
    } else {
        let mut out = Vec::with_capacity(rids.len());
        let mut ok = true;
        for &(rid, sz) in &sizes {
            if sz.is_none() {
                out.push((rid, vec![])); // no longer indexed: only removal
                continue;
            }
            match row_instances(conn, rid, &hot_terms)? {
                Some(v) => out.push((rid, v)),
                None => {
                    ok = false;
                    break;
                }
            }
        }
        ok.then_some(out)
    };
    let mut g = lens.inner.write().map_err(|_| err("doc length cache poisoned"))?;
    for (rid, sz) in sizes {
        g.set(rid, sz);
    }
    match patch {
        Some(rows) if !g.hot.is_empty() => {
            // A term admitted meanwhile was not tokenized for: drop it (queries re-admit).
            g.hot.retain(|t, _| hot_terms.contains(t));
            for (term, list) in g.hot.iter_mut() {
                let v = Arc::make_mut(list);
                for (rid, insts) in &rows {
                    let s = v.partition_point(|x| x.doc < *rid);
                    let e = s + v[s..].partition_point(|x| x.doc == *rid);
                    v.splice(s..e, insts.iter().filter(|(t, _)| t == term).map(|(_, i)| *i));
                }
            }
            g.hot_instances = g.hot.values().map(|l| l.len()).sum();
        }
        _ => g.clear_hot(),
    }
    g.seq = snap;
    Ok(())
}

/// The instances of `terms` in row `rid`, tokenized from the row's current columns as
/// FTS5 indexed them (the same tokenizer, document mode), ordered by (column, offset).
/// `None` if the row is gone or its tokenization yields synonyms.
fn row_instances(conn: &mut RawConn, rid: i64, terms: &[String]) -> Result<Option<Vec<(String, Inst)>>> {
    let db = conn.db;
    let texts = {
        let r = conn.prepare("SELECT topic, content, tags FROM knowledge WHERE rowid = ?1 AND deleted = 0")?;
        conn.bind_i64(&r, 1, rid);
        if !r.step(db)? {
            return Ok(None);
        }
        let t = |i| String::from_utf8_lossy(r.bytes(i)).into_owned();
        [t(0), t(1), t(2)]
    };
    let mut out = Vec::new();
    for (col, text) in texts.iter().enumerate() {
        let Some(toks) = conn.tokens(text, ffi::FTS5_TOKENIZE_DOCUMENT)? else {
            return Ok(None);
        };
        for (off, (tok, _, _)) in toks.into_iter().enumerate() {
            if terms.contains(&tok) {
                out.push((
                    tok,
                    Inst {
                        doc: rid,
                        col: col as u8,
                        off: off as u32,
                    },
                ));
            }
        }
    }
    Ok(Some(out))
}

/// Rows where the phrase `lists[0] lists[1] ...` occurs, with its weighted frequency
/// (sum of the column weights of its occurrences), ordered by row.
fn phrase_hits(lists: &[&[Inst]]) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    let first = lists[0];
    let mut pos = vec![0usize; lists.len()];
    let mut i = 0;
    while i < first.len() {
        let doc = first[i].doc;
        let mut end = i;
        while end < first.len() && first[end].doc == doc {
            end += 1;
        }
        let mut f = 0.0f64;
        if lists.len() == 1 {
            for x in &first[i..end] {
                f += WEIGHTS[x.col as usize];
            }
        } else {
            // The slice of each later token's list for this row.
            let mut slices: Vec<&[Inst]> = Vec::with_capacity(lists.len() - 1);
            let mut present = true;
            for (k, l) in lists.iter().enumerate().skip(1) {
                let p = &mut pos[k];
                while *p < l.len() && l[*p].doc < doc {
                    *p += 1;
                }
                let s = *p;
                let mut e = s;
                while e < l.len() && l[e].doc == doc {
                    e += 1;
                }
                if s == e {
                    present = false;
                    break;
                }
                slices.push(&l[s..e]);
            }
            if present {
                for x in &first[i..end] {
                    let all = slices.iter().enumerate().all(|(j, s)| {
                        let want = (x.col, x.off + j as u32 + 1);
                        s.binary_search_by(|y| (y.col, y.off).cmp(&want)).is_ok()
                    });
                    if all {
                        f += WEIGHTS[x.col as usize];
                    }
                }
            }
        }
        if f > 0.0 {
            out.push((doc, f));
        }
        i = end;
    }
    out
}

fn intersect(lists: &[Vec<(i64, f64)>]) -> Vec<i64> {
    let Some((first, rest)) = lists.split_first() else { return vec![] };
    let mut pos = vec![0usize; rest.len()];
    let mut out = Vec::new();
    'docs: for &(doc, _) in first {
        for (k, l) in rest.iter().enumerate() {
            let p = &mut pos[k];
            while *p < l.len() && l[*p].0 < doc {
                *p += 1;
            }
            if *p >= l.len() || l[*p].0 != doc {
                continue 'docs;
            }
        }
        out.push(doc);
    }
    out
}

fn union(lists: &[Vec<(i64, f64)>]) -> Vec<i64> {
    let mut out: Vec<i64> = lists.iter().flat_map(|l| l.iter().map(|(d, _)| *d)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

// ---- snippets ------------------------------------------------------------------------

/// A hydrated lexical hit: rowid, id, category, topic, snippet, created_at.
pub(crate) type HitRow = (i64, String, String, String, String, i64);

/// Display fields and FTS5-identical snippets (`snippet(knowledge_fts, -1, open, close,
/// ellipsis, tokens)`) for rows just ranked by [`ranked`] with the same query on this
/// thread. Reuses that call's instance lists, so it answers only while nothing was
/// committed since (`PRAGMA data_version` unchanged); otherwise `Ok(None)`.
/// Blocking: call on a read-pool thread.
pub(crate) fn hydrate(q: &FastQuery, ids: &[i64], marks: (&str, &str, &str), ntoken: i64) -> Result<Option<Vec<HitRow>>> {
    CONN.with(|cell| {
        let mut slot = cell.borrow_mut();
        let Some(conn) = slot.as_mut() else { return Ok(None) };
        conn.exec("BEGIN")?;
        let _txn = ReadTxn(conn.db);
        let version = conn.scalar("PRAGMA data_version")?;
        let Some(memo) = conn.memo.take() else { return Ok(None) };
        let out = if memo.0 == version {
            hydrate_in_txn(conn, &memo.1, q, ids, marks, ntoken)
        } else {
            Ok(None)
        };
        conn.memo = Some(memo);
        out
    })
}

fn hydrate_in_txn(
    conn: &mut RawConn,
    inst: &Lists,
    q: &FastQuery,
    ids: &[i64],
    marks: (&str, &str, &str),
    ntoken: i64,
) -> Result<Option<Vec<HitRow>>> {
    let Some(phrases) = phrases_of(conn, q)? else { return Ok(None) };
    let mut lists: Vec<Vec<&[Inst]>> = Vec::with_capacity(phrases.len());
    for p in &phrases {
        let mut l = Vec::with_capacity(p.len());
        for t in p {
            let Some(v) = inst.get(t) else { return Ok(None) };
            l.push(v.as_slice());
        }
        lists.push(l);
    }
    let sizes: Vec<i64> = phrases.iter().map(|p| p.len() as i64).collect();
    let db = conn.db;
    let mut out = Vec::with_capacity(ids.len());
    for &rid in ids {
        let row = {
            let r =
                conn.prepare("SELECT id, category, topic, content, tags, created_at FROM knowledge WHERE rowid = ?1 AND deleted = 0")?;
            conn.bind_i64(&r, 1, rid);
            if !r.step(db)? {
                continue;
            }
            let t = |i| String::from_utf8_lossy(r.bytes(i)).into_owned();
            (t(0), t(1), t(2), [t(2), t(3), t(4)], r.i64(5))
        };
        // This row's phrase instances in xInst order: by column, offset, then phrase.
        let mut insts: Vec<(usize, u8, i64)> = Vec::new();
        for (ip, l) in lists.iter().enumerate() {
            for (col, off) in phrase_positions(l, rid) {
                insts.push((ip, col, off as i64));
            }
        }
        if insts.is_empty() {
            return Ok(None); // ranked but no instance here: not the snapshot we ranked
        }
        insts.sort_by_key(|&(ip, col, off)| (col, off, ip));
        let Some(snippet) = snippet(conn, &row.3, &insts, &sizes, marks, ntoken)? else {
            return Ok(None);
        };
        out.push((rid, row.0, row.1, row.2, snippet, row.4));
    }
    Ok(Some(out))
}

/// (column, offset) of every occurrence of the phrase `lists` in row `doc`.
fn phrase_positions(lists: &[&[Inst]], doc: i64) -> Vec<(u8, u32)> {
    let range = |l: &[Inst]| {
        let s = l.partition_point(|x| x.doc < doc);
        let e = s + l[s..].partition_point(|x| x.doc == doc);
        s..e
    };
    let first = &lists[0][range(lists[0])];
    let rest: Vec<&[Inst]> = lists[1..].iter().map(|l| &l[range(l)]).collect();
    first
        .iter()
        .filter(|x| {
            rest.iter().enumerate().all(|(j, s)| {
                let want = (x.col, x.off + j as u32 + 1);
                s.binary_search_by(|y| (y.col, y.off).cmp(&want)).is_ok()
            })
        })
        .map(|x| (x.col, x.off))
        .collect()
}

/// FTS5's `fts5SnippetScore`: score of the `ntoken` window at `pos` of column `col`
/// (1000 per distinct phrase, 1 per repeat) and the window start centred on its hits.
fn window_score(insts: &[(usize, u8, i64)], sizes: &[i64], nphrase: usize, col: u8, pos: i64, ntoken: i64, ndoc: i64) -> (i64, i64) {
    let mut seen = vec![false; nphrase];
    let (mut score, mut first, mut last) = (0i64, -1i64, 0i64);
    let end = pos + ntoken;
    for &(ip, ic, off) in insts {
        if ic == col && off >= pos && off < end {
            score += if seen[ip] { 1 } else { 1000 };
            seen[ip] = true;
            if first < 0 {
                first = off;
            }
            last = off + sizes[ip];
        }
    }
    let mut adj = first - (ntoken - (last - first)) / 2;
    if adj + ntoken > ndoc {
        adj = ndoc - ntoken;
    }
    (score, adj.max(0))
}

/// A port of FTS5's `snippet()` for `iCol = -1` over the row's columns `texts`, given
/// its phrase instances (phrase, column, offset) in xInst order. `None` if a column's
/// tokenization yields synonyms (never with the porter tokenizer).
fn snippet(
    conn: &RawConn,
    texts: &[String; 3],
    insts: &[(usize, u8, i64)],
    sizes: &[i64],
    (open, close, ellipsis): (&str, &str, &str),
    ntoken: i64,
) -> Result<Option<String>> {
    let nphrase = sizes.len();
    let mut toks: [Option<Vec<(String, usize, usize)>>; 3] = [None, None, None];
    let (mut best_score, mut best_col, mut best_start) = (0i64, 0u8, 0i64);
    for col in 0..3u8 {
        if !insts.iter().any(|i| i.1 == col) {
            continue; // no instance here: this column cannot score
        }
        let text = &texts[col as usize];
        let Some(t) = conn.tokens(text, ffi::FTS5_TOKENIZE_DOCUMENT)? else {
            return Ok(None);
        };
        // First token of each sentence (after '.' or ':' and whitespace), as FTS5 finds them.
        let bytes = text.as_bytes();
        let mut firsts = vec![0i64];
        for (pos, (_, start, _)) in t.iter().enumerate().skip(1) {
            let mut i = *start as i64 - 1;
            let mut c = 0u8;
            while i >= 0 {
                c = bytes[i as usize];
                if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                i -= 1;
            }
            if i != *start as i64 - 1 && (c == b'.' || c == b':') {
                firsts.push(pos as i64);
            }
        }
        let ndoc = t.len() as i64;
        for &(_, ic, io) in insts.iter().filter(|i| i.1 == col) {
            if io > ndoc {
                continue;
            }
            let (sc, adj) = window_score(insts, sizes, nphrase, col, io, ntoken, ndoc);
            if sc > best_score {
                (best_score, best_col, best_start) = (sc, ic, adj);
            }
            if ndoc > ntoken {
                let mut jj = 0;
                while jj + 1 < firsts.len() && firsts[jj + 1] <= io {
                    jj += 1;
                }
                if firsts[jj] < io {
                    let (sc, _) = window_score(insts, sizes, nphrase, col, firsts[jj], ntoken, ndoc);
                    let sc = sc + if firsts[jj] == 0 { 120 } else { 100 };
                    if sc > best_score {
                        (best_score, best_col, best_start) = (sc, col, firsts[jj]);
                    }
                }
            }
        }
        toks[col as usize] = Some(t);
    }
    let text = &texts[best_col as usize];
    let t = match toks[best_col as usize].take() {
        Some(t) => t,
        None => match conn.tokens(text, ffi::FTS5_TOKENIZE_DOCUMENT)? {
            Some(t) => t,
            None => return Ok(None),
        },
    };
    let ncol = t.len() as i64;
    // Coalesced instances of the best column: overlapping phrase hits become one span.
    let mut spans: Vec<(i64, i64)> = Vec::new();
    for &(ip, ic, io) in insts {
        if ic != best_col {
            continue;
        }
        let end = io - 1 + sizes[ip];
        match spans.last_mut() {
            Some(last) if io <= last.1 => last.1 = last.1.max(end),
            _ => spans.push((io, end)),
        }
    }
    let (range_start, range_end) = (best_start, best_start + ntoken - 1);
    let mut out = String::new();
    if best_start > 0 {
        out.push_str(ellipsis);
    }
    let mut it = spans.iter().copied().skip_while(|s| s.0 < best_start).peekable();
    let mut cur = it.next().unwrap_or((-1, -1));
    let (mut off, mut is_open) = (0usize, false);
    for (pos, (_, start, end)) in t.iter().enumerate() {
        let (pos, start, end) = (pos as i64, *start, *end);
        if pos < range_start || pos > range_end {
            continue;
        }
        if range_start != 0 && pos == range_start {
            off = start;
        }
        if is_open && (pos <= cur.0 || cur.0 < 0) && start > off {
            out.push_str(close);
            is_open = false;
        }
        if pos == cur.0 && !is_open {
            out.push_str(&text[off..start]);
            out.push_str(open);
            off = start;
            is_open = true;
        }
        if pos == cur.1 {
            if !is_open {
                out.push_str(open);
                is_open = true;
            }
            out.push_str(&text[off..end]);
            off = end;
            cur = it.next().unwrap_or((-1, -1));
        }
        if pos == range_end {
            if is_open {
                if cur.0 >= 0 && pos >= cur.0 {
                    out.push_str(&text[off..end]);
                    off = end;
                }
                out.push_str(close);
                is_open = false;
            }
            out.push_str(&text[off..end]);
            off = end;
        }
    }
    if is_open {
        out.push_str(close);
    }
    if range_end >= ncol - 1 {
        out.push_str(&text[off.min(text.len())..]);
    } else {
        out.push_str(ellipsis);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_the_fts5_rank_weights() {
        let w: Vec<String> = WEIGHTS.iter().map(|w| format!("{w:.1}")).collect();
        assert_eq!(crate::engine::BM25_WEIGHTS, format!("bm25({})", w.join(", ")));
    }

    #[test]
    fn varints_decode_like_sqlite() {
        let mut b: &[u8] = &[0x86, 0x8D, 0x20, 0x05];
        assert_eq!(varint(&mut b), 100_000);
        assert_eq!(varint(&mut b), 5);
        assert!(b.is_empty());
        assert_eq!(size_sum(&[3, 0x81, 0x00, 2]), 3 + 128 + 2);
    }

    #[test]
    fn phrase_hits_need_consecutive_tokens_in_one_column() {
        let a = [
            Inst { doc: 1, col: 1, off: 0 },
            Inst { doc: 1, col: 1, off: 5 },
            Inst { doc: 2, col: 0, off: 3 },
            Inst { doc: 3, col: 1, off: 0 },
        ];
        let b = [
            Inst { doc: 1, col: 1, off: 1 },
            Inst { doc: 2, col: 1, off: 4 },
            Inst { doc: 3, col: 1, off: 1 },
        ];
        // doc 1: one phrase occurrence in content; doc 2: tokens in different columns;
        // doc 3: one occurrence.
        assert_eq!(phrase_hits(&[&a, &b]), vec![(1, 1.0), (3, 1.0)]);
        assert_eq!(phrase_hits(&[&a]), vec![(1, 2.0), (2, 10.0), (3, 1.0)]);
    }

    #[test]
    fn and_or_merge() {
        let x = vec![(1, 1.0), (3, 1.0), (5, 1.0)];
        let y = vec![(3, 1.0), (4, 1.0), (5, 1.0)];
        assert_eq!(intersect(&[x.clone(), y.clone()]), vec![3, 5]);
        assert_eq!(union(&[x, y]), vec![1, 3, 4, 5]);
    }

    /// The point of this module: the same rows, in the same order, with bit-identical
    /// scores as FTS5's own `bm25()` — over inserts, updates (content and tags), deletes
    /// (tombstones remove FTS entries), diacritics, stemming, repeated words and phrases,
    /// AND and OR forms, pagination, and after more writes (the incremental catch-up).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scores_equal_fts5_bm25() {
        use crate::knowledge::{add_knowledge, delete_knowledge, update_knowledge, KnowledgeUpdate};
        use crate::query::parse;
        use edgeswarm_core::{Durability, Knowledge, StoreConfig};
        use edgeswarm_store::{SqlValue, Store};
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::at(dir.path().join("k.db"));
        cfg.durability = Durability::Normal;
        let store = Store::open(cfg).await.unwrap();
        let words = [
            "agent", "agents", "memory", "swarm", "region", "café", "CAFE", "naïve", "running", "runs", "sync", "latency", "vector",
            "index", "query", "Über", "uber", "write", "writes", "disk", "edge", "node", "tokyo", "paris", "x1", "42",
        ];
        let mut seed = 7u64;
        let mut rnd = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let text = |rnd: &mut dyn FnMut(usize) -> usize, lo: usize, hi: usize| {
            let n = lo + rnd(hi - lo + 1);
            let mut t = String::new();
            for i in 0..n {
                if i > 0 {
                    t.push_str([" ", " ", " ", " ", " ", ". ", ": ", " \n "][rnd(8)]);
                }
                t.push_str(words[rnd(words.len())]);
            }
            t
        };
        let mut ids = Vec::new();
        for i in 0..400 {
            let topic = text(&mut rnd, 1, 5);
            let content = format!("{} entry{i}", text(&mut rnd, 3, 40));
            let tags: Vec<String> = (0..rnd(3)).map(|_| words[rnd(words.len())].to_lowercase()).collect();
            let k = Knowledge::new("notes", topic, content).tags(tags);
            let out = add_knowledge(&store, k).await.unwrap();
            if !out.duplicate {
                ids.push(out.id);
            }
        }
        assert!(ids.len() > 350, "the corpus was built ({} entries)", ids.len());

        // Every term is "frequent" here, so the in-memory lists are used and patched.
        let lens = Arc::new(DocLens::with_hot_min(&store.config().path, 1));
        let queries: Vec<String> = {
            let mut q: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            for _ in 0..40 {
                q.push(format!("{} {}", words[rnd(words.len())], words[rnd(words.len())]));
            }
            for _ in 0..15 {
                q.push(format!(
                    "\"{} {}\" {}",
                    words[rnd(words.len())],
                    words[rnd(words.len())],
                    words[rnd(words.len())]
                ));
            }
            q.extend([
                "agent agent".into(),
                "running runs".into(),
                "cafe naive".into(),
                "entry7".into(),
                "nothingmatches".into(),
            ]);
            q
        };
        let compare = |store: Store, lens: Arc<DocLens>, queries: Vec<String>| async move {
            store
                .read(move |r| {
                    let mut nonempty = 0;
                    let mut snippets = 0;
                    for text in &queries {
                        let parsed = parse(text);
                        for any in [false, true] {
                            let (Some(fts), Some(fq)) = (parsed.fts(any), parsed.fast(any)) else { continue };
                            let want = r
                                .query(
                                    "SELECT rowid, bm25(knowledge_fts, 10.0, 1.0, 4.0) AS s FROM knowledge_fts \
                                     WHERE knowledge_fts MATCH ?1 ORDER BY s, rowid LIMIT 1000",
                                    vec![SqlValue::Text(fts.clone())],
                                )
                                .unwrap();
                            let want: Vec<(i64, u64)> = want.rows.iter().map(|row| (row[0].as_i64().unwrap(), row[1].as_f64().unwrap().to_bits())).collect();
                            let got = ranked(&lens, &fq, 1000, 0, None).unwrap().expect("answerable");
                            let got: Vec<(i64, u64)> = got.iter().map(|(d, s)| (*d, s.to_bits())).collect();
                            assert_eq!(got, want, "query {text:?} ({fts})");
                            // Snippets: FTS5's snippet() for the same rows, byte for byte.
                            let top: Vec<i64> = want.iter().take(10).map(|w| w.0).collect();
                            let rows = hydrate(&fq, &top, ("[", "]", "…"), 16).unwrap().expect("hydratable");
                            assert_eq!(rows.iter().map(|x| x.0).collect::<Vec<_>>(), top);
                            for row in rows {
                                let s = r
                                    .query(
                                        "SELECT snippet(knowledge_fts, -1, '[', ']', '…', 16), k.id, k.topic FROM knowledge_fts \
                                         JOIN knowledge k ON k.rowid = knowledge_fts.rowid WHERE knowledge_fts MATCH ?1 AND knowledge_fts.rowid = ?2",
                                        vec![SqlValue::Text(fts.clone()), SqlValue::Integer(row.0)],
                                    )
                                    .unwrap();
                                assert_eq!(row.4, s.rows[0][0].as_str().unwrap(), "snippet of row {} for {text:?} ({fts})", row.0);
                                assert_eq!(row.1, s.rows[0][1].as_str().unwrap());
                                assert_eq!(row.3, s.rows[0][2].as_str().unwrap());
                                snippets += 1;
                            }
                            nonempty += !want.is_empty() as usize;
                            // Pagination: offset, and continuing after a cursor.
                            if want.len() > 6 {
                                let page = ranked(&lens, &fq, 3, 2, None).unwrap().unwrap();
                                assert_eq!(page.iter().map(|p| p.0).collect::<Vec<_>>(), want[2..5].iter().map(|p| p.0).collect::<Vec<_>>());
                                let after = (f64::from_bits(want[4].1), want[4].0);
                                let next = ranked(&lens, &fq, 2, 0, Some(after)).unwrap().unwrap();
                                assert_eq!(next.iter().map(|p| p.0).collect::<Vec<_>>(), want[5..7].iter().map(|p| p.0).collect::<Vec<_>>());
                            }
                        }
                    }
                    assert!(snippets > 300, "snippets compared: {snippets}");
                    Ok(nonempty)
                })
                .await
                .unwrap()
        };
        let nonempty = compare(store.clone(), lens.clone(), queries.clone()).await;
        assert!(nonempty > 60, "most queries match something ({nonempty})");
        assert!(lens.hot_stats().0 > 20, "frequent-term lists were admitted: {:?}", lens.hot_stats());

        // Small rounds of writes: the frequent-term lists are patched, not dropped.
        for round in 0..4 {
            for n in 0..6 {
                let id = &ids[200 + round * 6 + n];
                match n % 3 {
                    0 => {
                        delete_knowledge(&store, id).await.unwrap();
                    }
                    1 => {
                        let upd = KnowledgeUpdate {
                            topic: Some(text(&mut rnd, 1, 4)),
                            content: Some(text(&mut rnd, 1, 30)),
                            ..Default::default()
                        };
                        update_knowledge(&store, id, upd).await.unwrap();
                    }
                    _ => {
                        let k = Knowledge::new("notes", text(&mut rnd, 1, 3), format!("{} round{round}", text(&mut rnd, 3, 20)));
                        add_knowledge(&store, k).await.unwrap();
                    }
                }
            }
            let held = lens.hot_stats().0;
            compare(store.clone(), lens.clone(), queries.clone()).await;
            assert!(lens.hot_stats().0 >= held, "round {round}: lists were patched, not dropped");
        }

        // More writes: updates of content and tags, deletes, new rows; the cache catches up.
        for (n, id) in ids.iter().enumerate().take(120) {
            if n % 3 == 0 {
                delete_knowledge(&store, id).await.unwrap();
            } else {
                let upd = KnowledgeUpdate {
                    content: Some(text(&mut rnd, 1, 60)),
                    tags: Some(vec![words[rnd(words.len())].to_lowercase()]),
                    ..Default::default()
                };
                update_knowledge(&store, id, upd).await.unwrap();
            }
        }
        for i in 0..50 {
            let _ = add_knowledge(
                &store,
                Knowledge::new("notes", text(&mut rnd, 1, 3), format!("{} late{i}", text(&mut rnd, 3, 9))),
            )
            .await;
        }
        compare(store.clone(), lens.clone(), queries.clone()).await;
        // A fresh cache loads everything at once and agrees too.
        compare(store.clone(), Arc::new(DocLens::new(&store.config().path)), queries).await;
        store.shutdown().await.unwrap();
    }
}
