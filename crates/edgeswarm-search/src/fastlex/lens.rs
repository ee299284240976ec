//! The view over the FTS index that ranking reads: this read-pool thread's raw
//! connection ([`IndexConn`]: FTS5's own tokenizer, each term's instances through
//! `fts5vocab`, the index's totals), the token counts of indexed rows held in memory
//! ([`DocLens`], caught up from the `_knowledge_touched` log), and the instance lists of
//! frequent terms, held in memory and patched exactly on writes.

use super::{err, FastQuery, Inst, Lists, TermList};
use crate::error::Result;
use edgeswarm_store::raw::{Conn, OpenFlags, Stmt, Token, TokenizeMode};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

/// A term with at least this many instances is kept in memory once a query has read
/// it: reading it through `fts5vocab` costs ~0.4 µs an instance, so these are the
/// queries whose latency grows with the corpus. (At 1,000, a 5,000-entry memory of
/// natural-language notes re-read most of its query terms every time: 128 cut uncached
/// searches there from 0.58 to 0.43 ms a call, and searches right after a write from
/// 0.92 to 0.79 ms.)
const HOT_MIN: usize = 128;
/// Lists from here up are "frequent"; shorter ones are held only within
/// [`HOT_MAX_SHORT`], so a large corpus's long tail cannot take the whole budget.
const HOT_FREQUENT: usize = 1_000;
/// At most this many instances (16 bytes each: 64 MiB) are held in all (and at most as
/// many rows derived from them, 16 bytes each, once a query ranks them).
const HOT_MAX_INSTANCES: usize = 4 << 20;
/// A list shorter than [`HOT_FREQUENT`] is admitted only while everything held stays
/// under this many instances (16 MiB).
const HOT_MAX_SHORT: usize = 1 << 20;
/// A catch-up over more changed rows than this clears the frequent-term lists instead
/// of patching them (re-tokenizing and splicing a bulk load costs more than re-reading).
const HOT_PATCH_MAX_ROWS: usize = 64;
/// Marks a rowid whose token count is not held (row not indexed).
const ABSENT: u32 = u32::MAX;
/// Rowids below this are held in a dense vector; larger ones (rare: explicit rowids) in
/// a map.
const DENSE_MAX: i64 = 1 << 26;

/// Token counts of indexed rows, shared by the read-pool threads of one store.
pub(crate) struct DocLens {
    /// The database file (each read-pool thread opens its own raw connection to it).
    path: PathBuf,
    /// The counts and frequent-term lists, current to one `_knowledge_touched.seq`.
    inner: RwLock<Lens>,
    /// Held while one thread catches the counts up, so others do not repeat the work.
    refresh: Mutex<()>,
    /// Instances from which a term is kept in memory ([`HOT_MIN`]; tests lower it).
    hot_min: usize,
}

/// What [`DocLens`] holds, as of one position of the `_knowledge_touched` log.
pub(super) struct Lens {
    /// `_knowledge_touched.seq` the counts (and `hot`) are current to; -1 = never loaded.
    seq: i64,
    /// Token counts by rowid for rowids below [`DENSE_MAX`] ([`ABSENT`] = not indexed):
    /// rowids are mostly dense, so a vector is the smallest and fastest map.
    dense: Vec<u32>,
    /// Token counts of rowids outside the dense range.
    sparse: HashMap<i64, u32>,
    /// Instance lists of frequent terms (at least `DocLens::hot_min` instances), kept
    /// exact like the counts: a few changed rows are re-tokenized and spliced in; a bulk
    /// change clears them (queries admit them again).
    hot: HashMap<String, Arc<TermList>>,
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
    /// Counts for unit tests: (rowid, tokens).
    #[cfg(test)]
    pub(super) fn for_test(counts: &[(i64, u32)]) -> Lens {
        let mut l = Lens::empty(0);
        for &(rid, n) in counts {
            l.set(rid, Some(n));
        }
        l
    }
    /// The token count of row `rid`; `None` if it is not held (row not indexed).
    pub(super) fn get(&self, rid: i64) -> Option<u32> {
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
    pub(super) fn with_hot_min(path: &Path, hot_min: usize) -> Self {
        DocLens {
            hot_min,
            ..DocLens::new(path)
        }
    }

    /// Frequent-term statistics for the benchmark: (terms held, instances held).
    pub(crate) fn hot_stats(&self) -> (usize, usize) {
        self.inner.read().map(|g| (g.hot.len(), g.hot_instances)).unwrap_or((0, 0))
    }

    /// The token counts, if they are current to `snap`; `None` when another thread
    /// moved them past this snapshot meanwhile.
    pub(super) fn counts_at(&self, snap: i64) -> Result<Option<RwLockReadGuard<'_, Lens>>> {
        let guard = self.inner.read().map_err(|_| err("doc length cache poisoned"))?;
        Ok((guard.seq == snap).then_some(guard))
    }

    /// Brings the counts to this snapshot's `_knowledge_touched` position and returns
    /// that position (`snap`), the snapshot's `PRAGMA data_version`, and the instance
    /// lists of every token of `phrases`: from the last query's lists while nothing was
    /// committed since, from the frequent-term lists, or read through `fts5vocab` (and
    /// then held when frequent). Call inside the connection's read transaction.
    pub(super) fn term_lists(&self, conn: &IndexConn, phrases: &[Vec<String>]) -> Result<(i64, i64, Lists)> {
        let snap = conn.scalar("SELECT max(seq) FROM _knowledge_touched")?;
        self.catch_up(conn, snap)?;

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
                let g = self.inner.read().map_err(|_| err("doc length cache poisoned"))?;
                if g.seq == snap {
                    g.hot.get(t).cloned()
                } else {
                    None
                }
            };
            let list = match held {
                Some(l) => l,
                None => {
                    let l = Arc::new(TermList::new(conn.instances(t)?));
                    if l.len() >= self.hot_min {
                        let mut g = self.inner.write().map_err(|_| err("doc length cache poisoned"))?;
                        let cap = if l.len() >= HOT_FREQUENT {
                            HOT_MAX_INSTANCES
                        } else {
                            HOT_MAX_SHORT
                        };
                        if g.seq == snap && g.hot_instances + l.len() <= cap && !g.hot.contains_key(t) {
                            g.hot_instances += l.len();
                            g.hot.insert(t.clone(), l.clone());
                        }
                    }
                    l
                }
            };
            inst.insert(t.clone(), list);
        }
        Ok((snap, version, inst))
    }

    /// Brings the counts to `_knowledge_touched.seq == snap`, as seen by this snapshot.
    fn catch_up(&self, conn: &IndexConn, snap: i64) -> Result<()> {
        let current = |l: &DocLens| l.inner.read().map(|g| g.seq).map_err(|_| err("doc length cache poisoned"));
        if current(self)? == snap {
            return Ok(());
        }
        let _one = self.refresh.lock().map_err(|_| err("doc length cache poisoned"))?;
        let have = current(self)?;
        if have >= snap {
            return Ok(()); // up to date, or ahead of this snapshot (the caller checks)
        }
        let oldest = conn.scalar("SELECT min(seq) FROM _knowledge_touched")?;
        if have < 0 || oldest > have + 1 {
            // Never loaded, or the log no longer reaches back to what we hold: reload all.
            let mut fresh = Lens::empty(snap);
            let mut r = conn.stmt("SELECT id, sz FROM knowledge_fts_docsize")?;
            while r.step().map_err(err)? {
                fresh.set(r.column_i64(0), Some(size_sum(r.column_blob(1))));
            }
            drop(r);
            *self.inner.write().map_err(|_| err("doc length cache poisoned"))? = fresh;
            return Ok(());
        }
        let mut rids = Vec::new();
        {
            let mut r = conn.stmt("SELECT rid FROM _knowledge_touched WHERE seq > ?1 AND seq <= ?2")?;
            r.bind_i64(1, have).map_err(err)?;
            r.bind_i64(2, snap).map_err(err)?;
            while r.step().map_err(err)? {
                rids.push(r.column_i64(0));
            }
        }
        rids.sort_unstable();
        rids.dedup();
        let mut sizes = Vec::with_capacity(rids.len());
        for rid in &rids {
            sizes.push((*rid, conn.doc_size(*rid)?));
        }
        let hot_terms: HashSet<String> = self.inner.read().map(|g| g.hot.keys().cloned().collect()).unwrap_or_default();
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
                match conn.row_instances(rid, &hot_terms)? {
                    Some(v) => out.push((rid, v)),
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            ok.then_some(out)
        };
        let mut g = self.inner.write().map_err(|_| err("doc length cache poisoned"))?;
        for (rid, sz) in sizes {
            g.set(rid, sz);
        }
        match patch {
            Some(rows) if !g.hot.is_empty() => {
                // A term admitted meanwhile was not tokenized for: drop it (queries re-admit).
                g.hot.retain(|t, _| hot_terms.contains(t));
                // Each changed row's new instances, by term.
                let rows: Vec<(i64, HashMap<String, Vec<Inst>>)> = rows
                    .into_iter()
                    .map(|(rid, insts)| {
                        let mut by_term: HashMap<String, Vec<Inst>> = HashMap::new();
                        for (t, i) in insts {
                            by_term.entry(t).or_default().push(i);
                        }
                        (rid, by_term)
                    })
                    .collect();
                for (term, list) in g.hot.iter_mut() {
                    for (rid, by_term) in &rows {
                        let new = by_term.get(term);
                        let v = list.as_slice();
                        let s = v.partition_point(|x| x.doc < *rid);
                        let e = s + v[s..].partition_point(|x| x.doc == *rid);
                        if s == e && new.is_none() {
                            continue; // neither held nor holds the term: untouched (not copied)
                        }
                        Arc::make_mut(list).inst_mut().splice(s..e, new.into_iter().flatten().copied());
                    }
                }
                g.hot_instances = g.hot.values().map(|l| l.len()).sum();
            }
            _ => g.clear_hot(),
        }
        g.seq = snap;
        Ok(())
    }
}

/// A changed row and the frequent terms' instances in it.
type RowInstances = (i64, Vec<(String, Inst)>);

// ---- this thread's connection to the index -------------------------------------------

/// The tokenizer of `knowledge_fts` (see the store schema): porter over unicode61 with
/// diacritics removed.
const TOKENIZER: &CStr = c"porter";
const TOKENIZER_ARGS: [&CStr; 3] = [c"unicode61", c"remove_diacritics", c"2"];
/// Temp vocabulary table over the index: one row per term instance.
const VOCAB_SQL: &str = "CREATE VIRTUAL TABLE IF NOT EXISTS temp.es_knowledge_inst USING fts5vocab(main, knowledge_fts, instance)";

/// A raw read-only connection to the index with its prepared statements and the FTS5
/// tokenizer (one per read-pool thread).
pub(super) struct IndexConn {
    /// The database file it is open on (a thread's connection is reopened if it changes).
    path: PathBuf,
    /// The raw connection (statement cache and tokenizer included).
    conn: Conn,
    /// The last query's instance lists and the `PRAGMA data_version` they were read at:
    /// a relaxed (OR) retry or the next page reuses them while nothing was committed.
    pub(super) memo: Cell<Option<(i64, Lists)>>,
}

/// Ends the read transaction however the query ends.
pub(super) struct ReadTxn<'c>(
    /// The connection whose transaction this is.
    &'c Conn,
);
impl Drop for ReadTxn<'_> {
    fn drop(&mut self) {
        // COMMIT of a read transaction only releases the snapshot; nothing to report.
        let _ = self.0.exec("COMMIT");
    }
}

impl IndexConn {
    fn open(path: &Path) -> Result<IndexConn> {
        let mut conn = Conn::open(&path.to_string_lossy(), OpenFlags::READ_ONLY | OpenFlags::NO_MUTEX)
            .map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(5_000);
        let exec = |c: &Conn, sql: &str| c.exec(sql).map_err(|e| err(format!("{sql}: {e}")));
        exec(&conn, "PRAGMA mmap_size = 1073741824")?;
        exec(&conn, VOCAB_SQL)?;
        conn.load_fts5_tokenizer(TOKENIZER, &TOKENIZER_ARGS).map_err(err)?;
        Ok(IndexConn {
            path: path.to_path_buf(),
            conn,
            memo: Cell::new(None),
        })
    }

    /// Starts a read transaction: every read until the guard drops sees one snapshot.
    pub(super) fn read_txn(&self) -> Result<ReadTxn<'_>> {
        self.conn.exec("BEGIN").map_err(|e| err(format!("BEGIN: {e}")))?;
        Ok(ReadTxn(&self.conn))
    }

    /// The cached statement for `sql`.
    pub(super) fn stmt(&self, sql: &'static str) -> Result<Stmt<'_>> {
        self.conn.prepare_cached(sql).map_err(|e| err(format!("{sql}: {e}")))
    }

    /// FTS5's tokens of `text` with their byte ranges (`mode`: query or document
    /// tokenization); `None` if it yields colocated (synonym) tokens.
    pub(super) fn tokens(&self, text: &str, mode: TokenizeMode) -> Result<Option<Vec<Token>>> {
        self.conn.tokenize(text, mode).map_err(err)
    }

    /// Every instance of `term`, ordered by (row, column, offset).
    fn instances(&self, term: &str) -> Result<Vec<Inst>> {
        let mut r = self.stmt("SELECT doc, col, offset FROM temp.es_knowledge_inst WHERE term = ?1")?;
        r.bind_text(1, term).map_err(err)?;
        let mut out = Vec::new();
        while r.step().map_err(err)? {
            let col = match r.column_blob(1) {
                b"topic" => 0,
                b"content" => 1,
                b"tags" => 2,
                other => return Err(err(format!("unexpected FTS column {:?}", String::from_utf8_lossy(other)))),
            };
            out.push(Inst {
                doc: r.column_i64(0),
                col,
                off: r.column_i64(2) as u32,
            });
        }
        Ok(out)
    }

    /// (rows, total tokens) from the index's averages record; (0, 0) when empty.
    pub(super) fn totals(&self) -> Result<(i64, i64)> {
        let mut r = self.stmt("SELECT block FROM knowledge_fts_data WHERE id = 1")?;
        if !r.step().map_err(err)? {
            return Ok((0, 0));
        }
        let mut b = r.column_blob(0);
        let rows = varint(&mut b) as i64;
        let mut tokens = 0i64;
        while !b.is_empty() {
            tokens += varint(&mut b) as i64;
        }
        Ok((rows, tokens))
    }

    /// The first column of `sql`'s first row as an integer (0 for no row or NULL).
    pub(super) fn scalar(&self, sql: &'static str) -> Result<i64> {
        let mut r = self.stmt(sql)?;
        Ok(if r.step().map_err(err)? && !r.column_is_null(0) {
            r.column_i64(0)
        } else {
            0
        })
    }

    fn doc_size(&self, rid: i64) -> Result<Option<u32>> {
        let mut r = self.stmt("SELECT sz FROM knowledge_fts_docsize WHERE id = ?1")?;
        r.bind_i64(1, rid).map_err(err)?;
        Ok(if r.step().map_err(err)? {
            Some(size_sum(r.column_blob(0)))
        } else {
            None
        })
    }

    /// The instances of `terms` in row `rid`, tokenized from the row's current columns as
    /// FTS5 indexed them (the same tokenizer, document mode), ordered by (column, offset).
    /// `None` if the row is gone or its tokenization yields synonyms.
    fn row_instances(&self, rid: i64, terms: &HashSet<String>) -> Result<Option<Vec<(String, Inst)>>> {
        let texts = {
            let mut r = self.stmt("SELECT topic, content, tags FROM knowledge WHERE rowid = ?1 AND deleted = 0")?;
            r.bind_i64(1, rid).map_err(err)?;
            if !r.step().map_err(err)? {
                return Ok(None);
            }
            let t = |i| String::from_utf8_lossy(r.column_blob(i)).into_owned();
            [t(0), t(1), t(2)]
        };
        let mut out = Vec::new();
        for (col, text) in texts.iter().enumerate() {
            let Some(toks) = self.tokens(text, TokenizeMode::Document)? else {
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

    /// The query's phrases as FTS5 tokens, in FTS5's phrase order (the terms, then the
    /// whole text when `whole_phrase`). `None` if a word does not stay one token.
    pub(super) fn phrases(&self, q: &FastQuery) -> Result<Option<Vec<Vec<String>>>> {
        let mut phrases: Vec<Vec<String>> = Vec::with_capacity(q.terms.len() + 1);
        for words in &q.terms {
            let mut toks = Vec::with_capacity(words.len());
            for w in words {
                match self.tokens(w, TokenizeMode::Query)? {
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
    static CONN: RefCell<Option<IndexConn>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's connection to `lens`'s file, opening it on first use (or
/// reopening it when the file changed).
pub(super) fn with_conn<R>(lens: &DocLens, f: impl FnOnce(&IndexConn) -> Result<R>) -> Result<R> {
    CONN.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|c| c.path != lens.path) {
            *slot = None;
            *slot = Some(IndexConn::open(&lens.path)?);
        }
        let conn = slot.as_ref().ok_or_else(|| err("the index connection did not open"))?;
        f(conn)
    })
}

/// Runs `f` on this thread's connection if one is open; `Ok(None)` otherwise.
pub(super) fn with_open_conn<R>(f: impl FnOnce(&IndexConn) -> Result<Option<R>>) -> Result<Option<R>> {
    CONN.with(|cell| {
        let slot = cell.borrow();
        let Some(conn) = slot.as_ref() else { return Ok(None) };
        f(conn)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode_like_sqlite() {
        let mut b: &[u8] = &[0x86, 0x8D, 0x20, 0x05];
        assert_eq!(varint(&mut b), 100_000);
        assert_eq!(varint(&mut b), 5);
        assert!(b.is_empty());
        assert_eq!(size_sum(&[3, 0x81, 0x00, 2]), 3 + 128 + 2);
    }
}
