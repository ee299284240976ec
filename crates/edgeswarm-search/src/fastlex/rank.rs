//! Ranking: phrase matching over the terms' instance lists, FTS5's BM25 formula
//! evaluated phrase by phrase in FTS5's order (so the scores are bit-identical to
//! `bm25(knowledge_fts, 10.0, 1.0, 4.0)`), and the top-k with MaxScore pruning.

use super::lens::{self, DocLens, IndexConn, Lens};
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
    let out = {
        // Per phrase: its rows and weighted frequencies (a lone token's are derived once
        // per list version and shared; a phrase's are matched now).
        let owned: Vec<Option<RowHits>> = phrases
            .iter()
            .map(|p| {
                (p.len() > 1).then(|| {
                    let lists: Vec<&[Inst]> = p.iter().map(|t| inst[t.as_str()].as_slice()).collect();
                    let rows: Vec<&RowHits> = p.iter().map(|t| inst[t.as_str()].rows()).collect();
                    phrase_rows(&lists, &rows)
                })
            })
            .collect();
        let hits: Vec<&RowHits> = phrases
            .iter()
            .zip(&owned)
            .map(|(p, o)| o.as_ref().unwrap_or_else(|| inst[p[0].as_str()].rows()))
            .collect();
        let Some(guard) = lens.counts_at(snap)? else {
            // Another thread moved the counts past this snapshot; rank through FTS5.
            return Ok(None);
        };
        let top = top_k(&hits, nterms, q.all, nrow, ntok, offset.saturating_add(limit), after, &guard);
        drop(guard);
        top
    };
    conn.memo.set(Some((version, inst)));
    let Some(top) = out else { return Ok(None) };
    Ok(Some(top.into_iter().skip(offset).take(limit).map(|c| (c.doc, c.rank)).collect()))
}

/// A phrase's rows (ascending) with its weighted frequency in each, and the largest.
#[derive(Debug, Default)]
pub(super) struct RowHits {
    /// Rows where the phrase occurs, ascending.
    docs: Vec<i64>,
    /// The phrase's weighted frequency in `docs[i]` (sum of its occurrences' column
    /// weights).
    freq: Vec<f64>,
    /// The largest of `freq` (0 when empty): bounds the phrase's share of any score.
    fmax: f64,
}

impl RowHits {
    /// Appends row `doc` (above every row held) if `f` is positive.
    fn push(&mut self, doc: i64, f: f64) {
        if f > 0.0 {
            self.docs.push(doc);
            self.freq.push(f);
            self.fmax = self.fmax.max(f);
        }
    }
}

/// A ranked row: BM25 rank (lower is better, FTS5's sign) and rowid, ordered like
/// `ORDER BY rank, rowid`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cand {
    rank: f64,
    doc: i64,
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank.total_cmp(&other.rank).then(self.doc.cmp(&other.doc))
    }
}

/// The best `k` matching rows (after `after`), best first, with FTS5's bm25 scores.
/// `None` if a matching row's token count is not held.
///
/// Exact, but it scores only the rows that can still make the top `k` (MaxScore): each
/// phrase's contribution to any score is bounded by its largest weighted frequency over
/// the shortest possible row, and the phrases are visited in decreasing bound. Before
/// each phrase's rows are visited, if the `k`-th best score so far is above the sum of
/// the bounds of the phrases not yet visited, a row found only in those phrases cannot
/// enter the top `k`, and ranking stops. Each visited row is scored in full (every
/// phrase, in FTS5's order, so the sums are bit-identical) once: a row already seen
/// through an earlier phrase is skipped. For AND queries every match holds every term,
/// so one pass over the shortest term's rows sees them all.
#[allow(clippy::too_many_arguments)]
fn top_k(
    hits: &[&RowHits],
    nterms: usize,
    all: bool,
    nrow: i64,
    ntok: i64,
    k: usize,
    after: Option<(f64, i64)>,
    lens: &Lens,
) -> Option<Vec<Cand>> {
    if k == 0 || nterms == 0 {
        return Some(vec![]);
    }
    let avgdl = ntok as f64 / nrow as f64;
    let idf: Vec<f64> = hits
        .iter()
        .map(|h| {
            let n_hit = h.docs.len() as f64;
            let idf = ((nrow as f64 - n_hit + 0.5) / (n_hit + 0.5)).ln();
            if idf <= 0.0 {
                1e-6
            } else {
                idf
            }
        })
        .collect();
    // A phrase's share of a score is largest at its largest frequency in a row of no
    // tokens (the share grows with the frequency and shrinks with the row's length).
    let bound: Vec<f64> = hits
        .iter()
        .zip(&idf)
        .map(|(h, idf)| idf * ((h.fmax * (K1 + 1.0)) / (h.fmax + K1 * (1.0 - B))))
        .collect();
    let order: Vec<usize> = if all {
        // Every match holds every term: the shortest term's rows are all the candidates.
        let shortest = (0..nterms).min_by_key(|&p| hits[p].docs.len()).unwrap_or(0);
        vec![shortest]
    } else {
        let mut o: Vec<usize> = (0..hits.len()).collect();
        o.sort_by(|&a, &b| bound[b].total_cmp(&bound[a]).then(a.cmp(&b)));
        o
    };
    // rest[j]: the most a row outside order[..j] can score; a margin covers rounding
    // (the sums here are not added in the scoring order).
    let mut rest = vec![0.0f64; order.len() + 1];
    for j in (0..order.len()).rev() {
        rest[j] = rest[j + 1] + bound[order[j]];
    }
    for r in &mut rest {
        *r *= 1.0 + 1e-9;
    }

    let mut heap: std::collections::BinaryHeap<Cand> = std::collections::BinaryHeap::with_capacity(k.min(1024) + 1);
    let mut freq = vec![0.0f64; hits.len()];
    for (j, &p) in order.iter().enumerate() {
        if !all && heap.len() == k && heap.peek().is_some_and(|w| -w.rank > rest[j]) {
            break;
        }
        let mut cur = vec![0usize; hits.len()];
        'rows: for (ix, &doc) in hits[p].docs.iter().enumerate() {
            for &e in &order[..j] {
                if seek(&hits[e].docs, &mut cur[e], doc) {
                    continue 'rows; // scored when its phrase was visited
                }
            }
            let mut matched = all;
            for (q, h) in hits.iter().enumerate() {
                let f = if q == p {
                    hits[p].freq[ix]
                } else if order[..j].contains(&q) {
                    0.0
                } else if seek(&h.docs, &mut cur[q], doc) {
                    h.freq[cur[q]]
                } else {
                    0.0
                };
                freq[q] = f;
                if q < nterms {
                    if all {
                        matched &= f > 0.0;
                    } else {
                        matched |= f > 0.0;
                    }
                }
            }
            if !matched {
                continue;
            }
            let d = lens.get(doc)? as f64;
            let mut score = 0.0f64;
            for (f, idf) in freq.iter().zip(&idf) {
                score += idf * ((f * (K1 + 1.0)) / (f + K1 * (1.0 - B + B * d / avgdl)));
            }
            let c = Cand { rank: -score, doc };
            if let Some((ar, arow)) = after {
                if !(c.rank > ar || (c.rank == ar && doc > arow)) {
                    continue;
                }
            }
            if heap.len() < k {
                heap.push(c);
            } else if heap.peek().is_some_and(|w| c < *w) {
                heap.pop();
                heap.push(c);
            }
        }
    }
    Some(heap.into_sorted_vec())
}

/// Moves `pos` forward to the first of `docs` (ascending) that is not below `doc`
/// (galloping, as the rows looked up ascend too); whether it is `doc`.
fn seek(docs: &[i64], pos: &mut usize, doc: i64) -> bool {
    seek_by(docs, pos, |d| *d, doc)
}

/// [`seek`] over any list ordered by `key`.
fn seek_by<T>(v: &[T], pos: &mut usize, key: impl Fn(&T) -> i64, doc: i64) -> bool {
    let i = *pos;
    if i >= v.len() {
        return false;
    }
    if key(&v[i]) >= doc {
        return key(&v[i]) == doc;
    }
    // key(v[lo]) < doc throughout.
    let (mut lo, mut step) = (i, 1usize);
    let mut hi = lo + step;
    while hi < v.len() && key(&v[hi]) < doc {
        lo = hi;
        step *= 2;
        hi = lo + step;
    }
    let hi = hi.min(v.len());
    let at = lo + 1 + v[lo + 1..hi].partition_point(|x| key(x) < doc);
    *pos = at;
    at < v.len() && key(&v[at]) == doc
}

/// The rows holding one token, with its weighted frequency (the sum of the column
/// weights of its instances) in each.
pub(super) fn term_rows(inst: &[Inst]) -> RowHits {
    let mut out = RowHits::default();
    let mut i = 0;
    while i < inst.len() {
        let doc = inst[i].doc;
        let mut f = 0.0f64;
        while i < inst.len() && inst[i].doc == doc {
            f += WEIGHTS[inst[i].col as usize];
            i += 1;
        }
        out.push(doc, f);
    }
    out
}

/// Rows where the phrase `lists[0] lists[1] ...` (two tokens or more) occurs, with its
/// weighted frequency (sum of the column weights of its occurrences). `rows[i]` are
/// `lists[i]`'s rows: only rows holding every token are examined, driven by the rarest
/// token, and each token's instances in such a row are found by galloping.
fn phrase_rows(lists: &[&[Inst]], rows: &[&RowHits]) -> RowHits {
    let mut out = RowHits::default();
    let Some(drive) = (0..rows.len()).min_by_key(|&i| rows[i].docs.len()) else {
        return out;
    };
    let mut dcur = vec![0usize; rows.len()];
    let mut icur = vec![0usize; lists.len()];
    let mut slices: Vec<&[Inst]> = Vec::with_capacity(lists.len());
    'rows: for &doc in &rows[drive].docs {
        for (i, r) in rows.iter().enumerate() {
            if i != drive && !seek(&r.docs, &mut dcur[i], doc) {
                continue 'rows;
            }
        }
        slices.clear();
        for (l, c) in lists.iter().zip(icur.iter_mut()) {
            seek_by(l, c, |x| x.doc, doc);
            let s = *c;
            let e = s + l[s..].partition_point(|x| x.doc == doc);
            slices.push(&l[s..e]);
            *c = e;
        }
        let mut f = 0.0f64;
        for x in slices[0] {
            let all = slices[1..].iter().enumerate().all(|(j, s)| {
                let want = (x.col, x.off + j as u32 + 1);
                s.binary_search_by(|y| (y.col, y.off).cmp(&want)).is_ok()
            });
            if all {
                f += WEIGHTS[x.col as usize];
            }
        }
        out.push(doc, f);
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
        let (ra, rb) = (term_rows(&a), term_rows(&b));
        let two = phrase_rows(&[&a, &b], &[&ra, &rb]);
        assert_eq!((two.docs, two.freq, two.fmax), (vec![1, 3], vec![1.0, 1.0], 1.0));
        assert_eq!((&ra.docs, &ra.freq, ra.fmax), (&vec![1, 2, 3], &vec![2.0, 10.0, 1.0], 10.0));
        assert_eq!((&rb.docs, &rb.freq, rb.fmax), (&vec![1, 2, 3], &vec![1.0, 1.0, 1.0], 1.0));
        // A repeated token ("a a"): consecutive instances of the same list.
        let aa = [
            Inst { doc: 4, col: 1, off: 2 },
            Inst { doc: 4, col: 1, off: 3 },
            Inst { doc: 5, col: 1, off: 7 },
        ];
        let raa = term_rows(&aa);
        let rep = phrase_rows(&[&aa, &aa], &[&raa, &raa]);
        assert_eq!(rep.docs, vec![4]);
    }

    #[test]
    fn seek_gallops_forward() {
        let docs: Vec<i64> = (0..100).map(|i| i * 3).collect();
        let mut pos = 0;
        assert!(seek(&docs, &mut pos, 0));
        assert!(!seek(&docs, &mut pos, 4));
        assert_eq!(docs[pos], 6);
        assert!(seek(&docs, &mut pos, 150));
        assert_eq!(docs[pos], 150);
        assert!(seek(&docs, &mut pos, 297));
        assert!(!seek(&docs, &mut pos, 298));
        assert_eq!(pos, docs.len());
        assert!(!seek(&docs, &mut pos, 1_000));
        assert!(!seek(&[], &mut 0, 1));
    }

    /// The pruned top-k equals scoring every match and sorting, for OR and AND, every
    /// k, and continuing after a cursor: random phrases with skewed frequencies (a rare
    /// phrase with large weights beside common low-weight words, where pruning stops
    /// early, and the reverse).
    #[test]
    fn top_k_equals_scoring_every_match() {
        let mut seed = 11u64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..60 {
            let ndoc = 20 + rnd(300) as i64;
            let nphrase = 1 + rnd(4) as usize;
            let mut lens = Vec::new();
            for d in 0..ndoc {
                lens.push((d, 1 + rnd(60) as u32));
            }
            let lens = Lens::for_test(&lens);
            let hits: Vec<RowHits> = (0..nphrase)
                .map(|p| {
                    let share = 1 + rnd(if p % 2 == 0 { 3 } else { 40 });
                    let mut h = RowHits::default();
                    for d in 0..ndoc {
                        if rnd(share) == 0 {
                            let f = [1.0, 4.0, 10.0, 11.0, 2.0, 20.0][rnd(if round % 2 == 0 { 2 } else { 6 }) as usize];
                            h.docs.push(d);
                            h.freq.push(f);
                            h.fmax = h.fmax.max(f);
                        }
                    }
                    h
                })
                .collect();
            let refs: Vec<&RowHits> = hits.iter().collect();
            let (nrow, ntok) = (ndoc, lens_total(&lens, ndoc));
            for all in [false, true] {
                let nterms = if nphrase > 1 && round % 3 == 0 { nphrase - 1 } else { nphrase };
                let every = top_k(&refs, nterms, all, nrow, ntok, usize::MAX / 2, None, &lens).unwrap();
                for k in [1, 2, 3, 5, 10, 1000] {
                    let got = top_k(&refs, nterms, all, nrow, ntok, k, None, &lens).unwrap();
                    assert_eq!(got, every[..k.min(every.len())].to_vec(), "round {round} all {all} k {k}");
                    if every.len() > 4 {
                        let c = every[3];
                        let next = top_k(&refs, nterms, all, nrow, ntok, k, Some((c.rank, c.doc)), &lens).unwrap();
                        assert_eq!(next, every[4..(4 + k).min(every.len())].to_vec(), "round {round} after, k {k}");
                    }
                }
                // Matching: OR = in any term, AND = in every term.
                let want = (0..ndoc)
                    .filter(|d| {
                        let mut inn = refs[..nterms].iter().map(|h| h.docs.contains(d));
                        if all {
                            inn.all(|x| x)
                        } else {
                            inn.any(|x| x)
                        }
                    })
                    .count();
                assert_eq!(every.len(), want, "round {round} all {all}");
            }
        }
    }

    fn lens_total(lens: &Lens, ndoc: i64) -> i64 {
        (0..ndoc).map(|d| lens.get(d).unwrap() as i64).sum()
    }
}
