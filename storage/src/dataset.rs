//! Sophia's [`Dataset`] / [`SetDataset`] traits implemented directly on the stored quad
//! indexes.
//!
//! Quads are four `u64` term ids (graph id 0 = the default graph, which the chain never
//! writes) held in six index orders, `spog posg ospg gspo gpos gosp`, in the live segments
//! (`segment`). Every subset of bound positions is a key prefix of one order, so
//! [`Dataset::quads_matching`] answers any pattern with one prefix range per segment, merged
//! into one sorted stream; a matcher that is not a single constant (e.g. `Not(..)`, a list) is
//! applied as a filter on the decoded terms. A dataset value reads one snapshot of the live
//! segments, so a query never sees half of a commit.
//!
//! [`UnionDataset`] is the view SPARQL runs on: its default graph is the union of all graphs
//! (triples deduplicated across graphs, read from an index whose last component is the graph
//! so duplicates are adjacent), its named graphs are the stored ones.

use std::rc::Rc;
use std::time::Instant;

use sophia_api::dataset::{DResult, DTerm, Dataset, SetDataset};
use sophia_api::quad::Spog;
use sophia_api::term::matcher::{Any, GraphNameMatcher, TermMatcher};

use crate::error::DatasetError;
use crate::segment::{MergedScan, PERMS, QuadKey, unpermute};
use crate::store::{Inner, Live};
use crate::term::StoreTerm;

/// Names of the quad indexes, in [`PERMS`] order.
pub(crate) const INDEX_NAMES: [&str; 6] = ["spog", "posg", "ospg", "gspo", "gpos", "gosp"];
/// Id of the default graph in quad keys.
pub(crate) const DEFAULT_GRAPH_ID: u64 = 0;

/// The index whose key prefix covers the most bound positions, and that prefix length.
/// With `union`, only indexes ending in the graph qualify (so duplicates are adjacent).
fn choose_index(bound: [bool; 4], union: bool) -> (usize, usize) {
    let mut best = (0, 0);
    for (i, perm) in PERMS.iter().enumerate() {
        if union && perm[3] != 3 {
            continue;
        }
        let len = perm.iter().take_while(|&&pos| bound[pos]).count();
        if len > best.1 {
            best = (i, len);
        }
    }
    best
}

/// A prefix range over one index across the live segments, yielding quad ids; optionally
/// collapsing quads that differ only in their graph (union view) and checking a deadline.
struct IdScan<'a> {
    scan: Option<MergedScan<'a, QuadKey, Inner>>,
    index: usize,
    dedup: bool,
    last: Option<[u64; 3]>,
    deadline: Option<Instant>,
}

impl Iterator for IdScan<'_> {
    type Item = Result<[u64; 4], DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let scan = self.scan.as_mut()?;
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.scan = None;
                return Some(Err(DatasetError::Timeout));
            }
            let key = match scan.next()? {
                Ok(k) => k,
                Err(e) => {
                    self.scan = None;
                    return Some(Err(e));
                }
            };
            let ids = unpermute(self.index, &key);
            if self.dedup {
                let spo = [ids[0], ids[1], ids[2]];
                if self.last == Some(spo) {
                    continue;
                }
                self.last = Some(spo);
            }
            return Some(Ok(ids));
        }
    }
}

type QuadIter<'t> = Box<dyn Iterator<Item = Result<Spog<StoreTerm>, DatasetError>> + 't>;

fn error_iter<'t>(e: DatasetError) -> QuadIter<'t> {
    Box::new(std::iter::once(Err(e)))
}

enum Bound {
    Free,
    Id(u64),
    /// A constant the dictionary has never seen: nothing can match.
    Missing,
}

/// Read access to the quads, shared by the raw and the union view: the store and the
/// snapshot of live segments every read of this dataset uses.
#[derive(Clone)]
pub(crate) struct Core<'a> {
    pub(crate) inner: &'a Inner,
    pub(crate) segs: Live,
    pub(crate) deadline: Option<Instant>,
}

impl<'a> Core<'a> {
    fn resolve<M: TermMatcher>(&self, m: &M) -> Result<Bound, DatasetError> {
        Ok(match m.constant() {
            None => Bound::Free,
            Some(t) => match self.inner.term_id(&self.segs, t)? {
                Some(id) => Bound::Id(id),
                None => Bound::Missing,
            },
        })
    }

    fn resolve_g<G: GraphNameMatcher>(&self, m: &G) -> Result<Bound, DatasetError> {
        Ok(match m.constant() {
            None => Bound::Free,
            Some(None) => Bound::Id(DEFAULT_GRAPH_ID),
            Some(Some(t)) => match self.inner.term_id(&self.segs, t)? {
                Some(id) => Bound::Id(id),
                None => Bound::Missing,
            },
        })
    }

    fn id_scan(&self, ids: [Option<u64>; 4], union: bool) -> Result<IdScan<'a>, DatasetError> {
        let bound = ids.map(|i| i.is_some());
        let (index, len) = choose_index(bound, union);
        let mut lo = [0u64; 4];
        let mut hi = [u64::MAX; 4];
        for (slot, &pos) in PERMS[index][..len].iter().enumerate() {
            lo[slot] = ids[pos].unwrap_or_default();
            hi[slot] = lo[slot];
        }
        Ok(IdScan {
            scan: Some(self.inner.scan(&self.segs, index, lo, hi)?),
            index,
            dedup: union,
            last: None,
            deadline: self.deadline,
        })
    }

    /// Quads matching the four matchers. With `union`, the default graph is the union of all
    /// graphs; otherwise it is the (always empty) stored default graph.
    fn matching<'t, S, P, O, G>(&self, sm: S, pm: P, om: O, gm: G, union: bool) -> QuadIter<'t>
    where
        'a: 't,
        S: TermMatcher + 't,
        P: TermMatcher + 't,
        O: TermMatcher + 't,
        G: GraphNameMatcher + 't,
    {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return error_iter(DatasetError::Timeout);
        }
        let resolved = (|| {
            Ok::<_, DatasetError>([
                self.resolve(&sm)?,
                self.resolve(&pm)?,
                self.resolve(&om)?,
                self.resolve_g(&gm)?,
            ])
        })();
        let resolved = match resolved {
            Ok(r) => r,
            Err(e) => return error_iter(e),
        };
        if resolved[..3].iter().any(|b| matches!(b, Bound::Missing)) {
            return Box::new(std::iter::empty());
        }
        let mut ids = [None; 4];
        for (i, b) in resolved.iter().enumerate() {
            if let Bound::Id(id) = b {
                ids[i] = Some(*id);
            }
        }
        let g_const = gm.constant().map(|g| g.is_none());
        let matchers = Rc::new((sm, pm, om, gm));
        let scan = |ids: [Option<u64>; 4], union: bool| self.id_scan(ids, union);
        let r = (|| -> Result<QuadIter<'t>, DatasetError> {
            Ok(match (union, &resolved[3]) {
                (_, Bound::Missing) => Box::new(std::iter::empty()),
                (false, _) => self.clone().decode(scan(ids, false)?, matchers, false),
                (true, Bound::Id(DEFAULT_GRAPH_ID)) if g_const == Some(true) => {
                    ids[3] = None;
                    self.clone().decode(scan(ids, true)?, matchers, true)
                }
                (true, Bound::Id(_)) => self.clone().decode(scan(ids, false)?, matchers, false),
                (true, Bound::Free) => {
                    let named = self
                        .clone()
                        .decode(scan(ids, false)?, matchers.clone(), false);
                    if matchers.3.matches(None::<&StoreTerm>) {
                        Box::new(
                            self.clone()
                                .decode(scan(ids, true)?, matchers, true)
                                .chain(named),
                        )
                    } else {
                        named
                    }
                }
            })
        })();
        r.unwrap_or_else(error_iter)
    }

    /// Decodes id quads into terms, applying the matchers. With `as_default`, quads are
    /// reported in the default graph.
    fn decode<'t, S, P, O, G>(
        self,
        scan: IdScan<'a>,
        m: Rc<(S, P, O, G)>,
        as_default: bool,
    ) -> QuadIter<'t>
    where
        'a: 't,
        S: TermMatcher + 't,
        P: TermMatcher + 't,
        O: TermMatcher + 't,
        G: GraphNameMatcher + 't,
    {
        let inner = self.inner;
        Box::new(scan.filter_map(move |r| {
            let ids = match r {
                Ok(ids) => ids,
                Err(e) => return Some(Err(e)),
            };
            let step = || -> Result<Option<Spog<StoreTerm>>, DatasetError> {
                let s = inner.term(ids[0])?;
                if !m.0.matches(&s) {
                    return Ok(None);
                }
                let p = inner.term(ids[1])?;
                if !m.1.matches(&p) {
                    return Ok(None);
                }
                let o = inner.term(ids[2])?;
                if !m.2.matches(&o) {
                    return Ok(None);
                }
                let g = if as_default || ids[3] == DEFAULT_GRAPH_ID {
                    None
                } else {
                    let g = inner.term(ids[3])?;
                    if !m.3.matches(Some(&g)) {
                        return Ok(None);
                    }
                    Some(g)
                };
                Ok(Some(([s, p, o], g)))
            };
            step().transpose()
        }))
    }

    /// Distinct named graphs, by skipping through the `gspo` index one graph at a time.
    fn graph_names(self) -> impl Iterator<Item = Result<StoreTerm, DatasetError>> + 'a {
        let mut next = Some(DEFAULT_GRAPH_ID + 1);
        std::iter::from_fn(move || {
            let start = next?;
            let r = (|| {
                let lo = [start, 0, 0, 0];
                let Some(key) = self.inner.scan(&self.segs, 3, lo, [u64::MAX; 4])?.next() else {
                    return Ok(None);
                };
                let g = key?[0];
                Ok(Some((g, self.inner.term(g)?)))
            })();
            match r {
                Ok(Some((g, t))) => {
                    next = g.checked_add(1);
                    Some(Ok(t))
                }
                Ok(None) => {
                    next = None;
                    None
                }
                Err(e) => {
                    next = None;
                    Some(Err(e))
                }
            }
        })
    }
}

/// The stored dataset as sophia sees it: named graphs `urn:provchain:tx:…`,
/// `urn:provchain:chain` and any N-Quads graphs; an empty default graph. Borrowed from a
/// [`crate::Store`]; reads only (writes go through [`crate::Store::commit_final`], hence
/// [`SetDataset`] but no `MutableDataset`).
#[derive(Clone)]
pub struct SledDataset<'a> {
    pub(crate) core: Core<'a>,
}

impl std::fmt::Debug for SledDataset<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SledDataset")
    }
}

impl<'a> SledDataset<'a> {
    /// The union view of this dataset (what SPARQL queries run on).
    pub fn union(self) -> UnionDataset<'a> {
        UnionDataset { core: self.core }
    }
    /// Makes every iterator report [`DatasetError::Timeout`] once `deadline` passes.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.core.deadline = Some(deadline);
        self
    }
}

impl<'a> Dataset for SledDataset<'a> {
    type Quad<'x>
        = Spog<StoreTerm>
    where
        Self: 'x;
    type Error = DatasetError;

    fn quads(&self) -> impl Iterator<Item = DResult<Self, Self::Quad<'_>>> + '_ {
        self.core.matching(Any, Any, Any, Any, false)
    }

    fn quads_matching<'s, 't, S, P, O, G>(
        &'s self,
        sm: S,
        pm: P,
        om: O,
        gm: G,
    ) -> impl Iterator<Item = DResult<Self, Self::Quad<'s>>> + 't
    where
        's: 't,
        S: TermMatcher + 't,
        P: TermMatcher + 't,
        O: TermMatcher + 't,
        G: GraphNameMatcher + 't,
    {
        self.core.matching(sm, pm, om, gm, false)
    }

    fn graph_names(&self) -> impl Iterator<Item = DResult<Self, DTerm<'_, Self>>> + '_ {
        self.core.clone().graph_names()
    }
}

impl SetDataset for SledDataset<'_> {}

/// The dataset with the SPARQL default graph = the union of all graphs (deduplicated); the
/// named graphs are those of [`SledDataset`].
#[derive(Clone)]
pub struct UnionDataset<'a> {
    core: Core<'a>,
}

impl std::fmt::Debug for UnionDataset<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnionDataset")
    }
}

impl UnionDataset<'_> {
    /// The distinct graphs holding quads that match `s p o` (each a constant or `None` for
    /// any), or `None` if finding them would read more than `max_scan` quads or yield more
    /// than `max_graphs` graphs. A constant the store has never seen matches nothing.
    pub(crate) fn graphs_matching(
        &self,
        spo: [Option<&crate::term::OwnedTerm>; 3],
        max_scan: usize,
        max_graphs: usize,
    ) -> Result<Option<Vec<StoreTerm>>, DatasetError> {
        let core = &self.core;
        let mut ids = [None; 4];
        for (slot, t) in spo.iter().enumerate() {
            if let Some(t) = t {
                match core.inner.term_id(&core.segs, *t)? {
                    Some(id) => ids[slot] = Some(id),
                    None => return Ok(Some(Vec::new())),
                }
            }
        }
        let mut graphs = std::collections::BTreeSet::new();
        for (n, q) in core.id_scan(ids, false)?.enumerate() {
            if n >= max_scan {
                return Ok(None);
            }
            graphs.insert(q?[3]);
            if graphs.len() > max_graphs {
                return Ok(None);
            }
        }
        graphs
            .into_iter()
            .filter(|g| *g != DEFAULT_GRAPH_ID)
            .map(|g| core.inner.term(g).map(Some))
            .collect::<Result<Option<Vec<_>>, _>>()
    }
}

impl<'a> Dataset for UnionDataset<'a> {
    type Quad<'x>
        = Spog<StoreTerm>
    where
        Self: 'x;
    type Error = DatasetError;

    fn quads(&self) -> impl Iterator<Item = DResult<Self, Self::Quad<'_>>> + '_ {
        self.core.matching(Any, Any, Any, Any, true)
    }

    fn quads_matching<'s, 't, S, P, O, G>(
        &'s self,
        sm: S,
        pm: P,
        om: O,
        gm: G,
    ) -> impl Iterator<Item = DResult<Self, Self::Quad<'s>>> + 't
    where
        's: 't,
        S: TermMatcher + 't,
        P: TermMatcher + 't,
        O: TermMatcher + 't,
        G: GraphNameMatcher + 't,
    {
        self.core.matching(sm, pm, om, gm, true)
    }

    fn graph_names(&self) -> impl Iterator<Item = DResult<Self, DTerm<'_, Self>>> + '_ {
        self.core.clone().graph_names()
    }
}

impl SetDataset for UnionDataset<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_has_a_full_prefix() {
        for mask in 0u8..16 {
            let bound = [mask & 1 != 0, mask & 2 != 0, mask & 4 != 0, mask & 8 != 0];
            let (_, len) = choose_index(bound, false);
            assert_eq!(len, bound.iter().filter(|b| **b).count(), "{bound:?}");
            let spo = [bound[0], bound[1], bound[2], false];
            let (i, len) = choose_index(spo, true);
            assert_eq!(PERMS[i][3], 3);
            assert_eq!(len, spo.iter().filter(|b| **b).count(), "{spo:?}");
        }
    }
}
