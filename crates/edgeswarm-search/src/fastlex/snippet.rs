//! Display fields and FTS5-identical snippets for rows the fast ranker just ranked, from
//! the same instance lists (no FTS5 query).

use super::lens::{self, IndexConn};
use super::{err, FastQuery, Inst, Lists};
use crate::error::Result;
use edgeswarm_store::raw::TokenizeMode;

/// A hydrated lexical hit: rowid, id, category, topic, snippet, created_at.
pub(crate) type HitRow = (i64, String, String, String, String, i64);

/// Display fields and FTS5-identical snippets (`snippet(knowledge_fts, -1, open, close,
/// ellipsis, tokens)`) for rows just ranked by [`super::ranked`] with the same query on this
/// thread. Reuses that call's instance lists, so it answers only while nothing was
/// committed since (`PRAGMA data_version` unchanged); otherwise `Ok(None)`.
/// Blocking: call on a read-pool thread.
pub(crate) fn hydrate(q: &FastQuery, ids: &[i64], marks: (&str, &str, &str), ntoken: i64) -> Result<Option<Vec<HitRow>>> {
    lens::with_open_conn(|conn| {
        let _txn = conn.read_txn()?;
        let version = conn.scalar("PRAGMA data_version")?;
        let Some(memo) = conn.memo.take() else { return Ok(None) };
        let out = if memo.0 == version {
            hydrate_in_txn(conn, &memo.1, q, ids, marks, ntoken)
        } else {
            Ok(None)
        };
        conn.memo.set(Some(memo));
        out
    })
}

fn hydrate_in_txn(
    conn: &IndexConn,
    inst: &Lists,
    q: &FastQuery,
    ids: &[i64],
    marks: (&str, &str, &str),
    ntoken: i64,
) -> Result<Option<Vec<HitRow>>> {
    let Some(phrases) = conn.phrases(q)? else { return Ok(None) };
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
    let mut out = Vec::with_capacity(ids.len());
    for &rid in ids {
        let row = {
            let mut r =
                conn.stmt("SELECT id, category, topic, content, tags, created_at FROM knowledge WHERE rowid = ?1 AND deleted = 0")?;
            r.bind_i64(1, rid).map_err(err)?;
            if !r.step().map_err(err)? {
                continue;
            }
            let t = |i| String::from_utf8_lossy(r.column_blob(i)).into_owned();
            (t(0), t(1), t(2), [t(2), t(3), t(4)], r.column_i64(5))
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
    conn: &IndexConn,
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
        let Some(t) = conn.tokens(text, TokenizeMode::Document)? else {
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
        None => match conn.tokens(text, TokenizeMode::Document)? {
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
