//! Ranking: phrase matching over the terms' instance lists, FTS5's BM25 formula
//! evaluated phrase by phrase in FTS5's order (so the scores are bit-identical to
//! `bm25(knowledge_fts, 10.0, 1.0, 4.0)`), and the top-k.

use super::lens::{self, DocLens, IndexConn};
use super::{FastQuery, Inst};
use crate::error::Result;

/// Column weights, in FTS column order (topic, content, tags); the same numbers as
/// [`crate::engine::BM25_WEIGHTS`].
pub(crate) const WEIGHTS: [f64; 3] = [10.0, 1.0, 4.0];
/// FTS5's bm25 constants.
const K1: f64 = 1.2;
const B: f64 = 0.75;

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
    lens::with_conn(lens, |conn| {
        let _txn = conn.read_txn()?;
        rank_in_txn(conn, lens, q, limit, offset, after)
    })
}

fn rank_in_txn(
    conn: &IndexConn,
    lens: &DocLens,
    q: &FastQuery,
    limit: usize,
    offset: usize,
    after: Option<(f64, i64)>,
) -> Result<Option<Vec<(i64, f64)>>> {
    let Some(phrases) = conn.phrases(q)? else { return Ok(None) };
    let nterms = q.terms.len();
    let (nrow, ntok) = conn.totals()?;
    if nrow <= 0 {
        return Ok(Some(vec![]));
    }
    let (snap, version, inst) = lens.term_lists(conn, &phrases)?;
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

    let Some(guard) = lens.counts_at(snap)? else {
        // Another thread moved the counts past this snapshot; rank through FTS5.
        return Ok(None);
    };
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
    conn.memo.set(Some((version, inst)));
    let want = offset.saturating_add(limit).min(scored.len());
    let cmp = |a: &(f64, i64), b: &(f64, i64)| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal).then(a.1.cmp(&b.1));
    if want < scored.len() && want > 0 {
        scored.select_nth_unstable_by(want - 1, cmp);
        scored.truncate(want);
    }
    scored.sort_unstable_by(cmp);
    Ok(Some(scored.into_iter().skip(offset).take(limit).map(|(r, d)| (d, r)).collect()))
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

/// Rows in any of `lists` (each ordered by row, rows unique), ordered: a k-way merge,
/// linear in the hits. (Sorting the concatenation cost most of a query's time when
/// every word matches a large share of the rows, as in one project's narrow vocabulary.)
fn union(lists: &[Vec<(i64, f64)>]) -> Vec<i64> {
    match lists {
        [] => return vec![],
        [one] => return one.iter().map(|(d, _)| *d).collect(),
        _ => {}
    }
    let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(longest * 2);
    let mut pos = vec![0usize; lists.len()];
    loop {
        let mut min: Option<i64> = None;
        for (l, &p) in lists.iter().zip(&pos) {
            if let Some(&(d, _)) = l.get(p) {
                if min.is_none_or(|m| d < m) {
                    min = Some(d);
                }
            }
        }
        let Some(m) = min else { break };
        out.push(m);
        for (l, p) in lists.iter().zip(pos.iter_mut()) {
            if l.get(*p).is_some_and(|&(d, _)| d == m) {
                *p += 1;
            }
        }
    }
    out
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
        assert_eq!(union(&[x.clone(), y.clone()]), vec![1, 3, 4, 5]);
        let z = vec![(0, 1.0), (5, 1.0), (9, 1.0)];
        assert_eq!(union(&[x.clone(), y, z]), vec![0, 1, 3, 4, 5, 9]);
        assert_eq!(union(&[x]), vec![1, 3, 5]);
        assert!(union(&[]).is_empty());
    }
}
