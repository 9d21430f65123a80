//! The RDF dataset over sled: the term dictionary, the six quad indexes, and sophia's
//! [`Dataset`] / [`SetDataset`] traits implemented directly on them.
//!
//! Quads are stored as four `u64` term ids (graph id 0 = the default graph, which the chain
//! never writes) in six index trees, each key the 32-byte big-endian concatenation of the ids
//! in that index's order: `spog posg ospg gspo gpos gosp`. Every subset of bound positions is a
//! key prefix of one of them, so [`Dataset::quads_matching`] answers any pattern with one
//! prefix range; a matcher that is not a single constant (e.g. `Not(..)`, a list) is applied as
//! a filter on the decoded terms.
//!
//! [`UnionDataset`] is the view SPARQL runs on: its default graph is the union of all graphs
//! (triples deduplicated across graphs, read from an index whose last component is the graph
//! so duplicates are adjacent), its named graphs are the stored ones.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Instant;

use sophia_api::dataset::{DResult, DTerm, Dataset, SetDataset};
use sophia_api::quad::Spog;
use sophia_api::term::Term;
use sophia_api::term::matcher::{Any, GraphNameMatcher, TermMatcher};

use crate::error::DatasetError;
use crate::store::Inner;
use crate::term::{StoreTerm, decode_term, dictionary_key, encode_term};

/// Names of the quad index trees, in [`PERMS`] order.
pub(crate) const INDEX_NAMES: [&str; 6] = [
    "quads_spog",
    "quads_posg",
    "quads_ospg",
    "quads_gspo",
    "quads_gpos",
    "quads_gosp",
];
/// For each index, which quad position (s=0, p=1, o=2, g=3) sits at each key slot.
pub(crate) const PERMS: [[usize; 4]; 6] = [
    [0, 1, 2, 3],
    [1, 2, 0, 3],
    [2, 0, 1, 3],
    [3, 0, 1, 2],
    [3, 1, 2, 0],
    [3, 2, 0, 1],
];
/// Id of the default graph in quad keys.
pub(crate) const DEFAULT_GRAPH_ID: u64 = 0;
/// Bound on each dictionary cache (entries). When full a cache is cleared: crude, but bounded
/// and cheap; hot terms refill it at once.
pub(crate) const TERM_CACHE_ENTRIES: usize = 200_000;

pub(crate) fn quad_key(index: usize, ids: &[u64; 4]) -> [u8; 32] {
    let mut k = [0u8; 32];
    for (slot, &pos) in PERMS[index].iter().enumerate() {
        k[slot * 8..slot * 8 + 8].copy_from_slice(&ids[pos].to_be_bytes());
    }
    k
}

pub(crate) fn key_ids(index: usize, key: &[u8]) -> Option<[u64; 4]> {
    if key.len() != 32 {
        return None;
    }
    let mut ids = [0u64; 4];
    for (slot, &pos) in PERMS[index].iter().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&key[slot * 8..slot * 8 + 8]);
        ids[pos] = u64::from_be_bytes(b);
    }
    Some(ids)
}

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

/// The term dictionary with its bounded in-memory caches.
pub(crate) struct Dict {
    pub(crate) term_ids: sled::Tree,
    pub(crate) terms: sled::Tree,
    id_cache: Mutex<HashMap<Vec<u8>, u64>>,
    term_cache: Mutex<HashMap<u64, StoreTerm>>,
}

impl Dict {
    pub(crate) fn new(term_ids: sled::Tree, terms: sled::Tree) -> Self {
        Self {
            term_ids,
            terms,
            id_cache: Mutex::new(HashMap::new()),
            term_cache: Mutex::new(HashMap::new()),
        }
    }

    /// Id of a committed term by dictionary key.
    pub(crate) fn lookup_key(&self, key: &[u8]) -> Result<Option<u64>, DatasetError> {
        if let Ok(c) = self.id_cache.lock()
            && let Some(&id) = c.get(key)
        {
            return Ok(Some(id));
        }
        let Some(v) = self.term_ids.get(key)? else {
            return Ok(None);
        };
        let id = u64_value(&v).ok_or_else(|| DatasetError::Corrupt {
            what: "term dictionary",
            detail: format!("term id entry has {} bytes, expected 8", v.len()),
        })?;
        self.remember_id(key.to_vec(), id);
        Ok(Some(id))
    }

    pub(crate) fn remember_id(&self, key: Vec<u8>, id: u64) {
        if let Ok(mut c) = self.id_cache.lock() {
            if c.len() >= TERM_CACHE_ENTRIES {
                c.clear();
            }
            c.insert(key, id);
        }
    }

    /// Id of a committed term, `None` if the store has never seen it (or cannot hold it).
    pub(crate) fn lookup<T: Term + ?Sized>(&self, t: &T) -> Result<Option<u64>, DatasetError> {
        match encode_term(t) {
            None => Ok(None),
            Some(enc) => self.lookup_key(&dictionary_key(&enc)),
        }
    }

    pub(crate) fn term(&self, id: u64) -> Result<StoreTerm, DatasetError> {
        if let Ok(c) = self.term_cache.lock()
            && let Some(t) = c.get(&id)
        {
            return Ok(t.clone());
        }
        let v = self
            .terms
            .get(id.to_be_bytes())?
            .ok_or_else(|| DatasetError::Corrupt {
                what: "term dictionary",
                detail: format!("term id {id} is used by a quad but has no entry"),
            })?;
        let t = StoreTerm::new(decode_term(&v).map_err(|detail| DatasetError::Corrupt {
            what: "term dictionary",
            detail: format!("term {id}: {detail}"),
        })?);
        if let Ok(mut c) = self.term_cache.lock() {
            if c.len() >= TERM_CACHE_ENTRIES {
                c.clear();
            }
            c.insert(id, t.clone());
        }
        Ok(t)
    }
}

pub(crate) fn u64_value(v: &[u8]) -> Option<u64> {
    let b: [u8; 8] = v.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// A prefix range over one index, yielding quad ids; optionally collapsing quads that differ
/// only in their graph (union view) and checking a deadline.
struct IdScan {
    iter: Option<sled::Iter>,
    index: usize,
    dedup: bool,
    last: Option<[u64; 3]>,
    deadline: Option<Instant>,
}

impl Iterator for IdScan {
    type Item = Result<[u64; 4], DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let iter = self.iter.as_mut()?;
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.iter = None;
                return Some(Err(DatasetError::Timeout));
            }
            let (k, _) = match iter.next()? {
                Ok(kv) => kv,
                Err(e) => {
                    self.iter = None;
                    return Some(Err(e.into()));
                }
            };
            let Some(ids) = key_ids(self.index, &k) else {
                self.iter = None;
                return Some(Err(DatasetError::Corrupt {
                    what: "quad index",
                    detail: format!("{} key of {} bytes", INDEX_NAMES[self.index], k.len()),
                }));
            };
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

/// Read access to the quads, shared by the raw and the union view.
#[derive(Clone, Copy)]
pub(crate) struct Core<'a> {
    pub(crate) inner: &'a Inner,
    pub(crate) deadline: Option<Instant>,
}

impl<'a> Core<'a> {
    fn resolve<M: TermMatcher>(&self, m: &M) -> Result<Bound, DatasetError> {
        Ok(match m.constant() {
            None => Bound::Free,
            Some(t) => match self.inner.dict.lookup(t)? {
                Some(id) => Bound::Id(id),
                None => Bound::Missing,
            },
        })
    }

    fn resolve_g<G: GraphNameMatcher>(&self, m: &G) -> Result<Bound, DatasetError> {
        Ok(match m.constant() {
            None => Bound::Free,
            Some(None) => Bound::Id(DEFAULT_GRAPH_ID),
            Some(Some(t)) => match self.inner.dict.lookup(t)? {
                Some(id) => Bound::Id(id),
                None => Bound::Missing,
            },
        })
    }

    fn id_scan(&self, ids: [Option<u64>; 4], union: bool) -> IdScan {
        let bound = ids.map(|i| i.is_some());
        let (index, len) = choose_index(bound, union);
        let mut prefix = Vec::with_capacity(len * 8);
        for &pos in &PERMS[index][..len] {
            prefix.extend_from_slice(&ids[pos].unwrap_or_default().to_be_bytes());
        }
        IdScan {
            iter: Some(self.inner.idx[index].scan_prefix(prefix)),
            index,
            dedup: union,
            last: None,
            deadline: self.deadline,
        }
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
        let core = *self;
        match (union, &resolved[3]) {
            (_, Bound::Missing) => Box::new(std::iter::empty()),
            (false, _) => core.decode(core.id_scan(ids, false), matchers, false),
            (true, Bound::Id(DEFAULT_GRAPH_ID)) if g_const == Some(true) => {
                ids[3] = None;
                core.decode(core.id_scan(ids, true), matchers, true)
            }
            (true, Bound::Id(_)) => core.decode(core.id_scan(ids, false), matchers, false),
            (true, Bound::Free) => {
                let named = core.decode(core.id_scan(ids, false), matchers.clone(), false);
                if matchers.3.matches(None::<&StoreTerm>) {
                    Box::new(
                        core.decode(core.id_scan(ids, true), matchers, true)
                            .chain(named),
                    )
                } else {
                    named
                }
            }
        }
    }

    /// Decodes id quads into terms, applying the matchers. With `as_default`, quads are
    /// reported in the default graph.
    fn decode<'t, S, P, O, G>(
        self,
        scan: IdScan,
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
        let dict = &self.inner.dict;
        Box::new(scan.filter_map(move |r| {
            let ids = match r {
                Ok(ids) => ids,
                Err(e) => return Some(Err(e)),
            };
            let step = || -> Result<Option<Spog<StoreTerm>>, DatasetError> {
                let s = dict.term(ids[0])?;
                if !m.0.matches(&s) {
                    return Ok(None);
                }
                let p = dict.term(ids[1])?;
                if !m.1.matches(&p) {
                    return Ok(None);
                }
                let o = dict.term(ids[2])?;
                if !m.2.matches(&o) {
                    return Ok(None);
                }
                let g = if as_default || ids[3] == DEFAULT_GRAPH_ID {
                    None
                } else {
                    let g = dict.term(ids[3])?;
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
            let tree = &self.inner.idx[3];
            let r = (|| {
                let Some((k, _)) = tree.range(start.to_be_bytes()..).next().transpose()? else {
                    return Ok(None);
                };
                let g = k
                    .get(..8)
                    .and_then(u64_value)
                    .ok_or(DatasetError::Corrupt {
                        what: "quad index",
                        detail: "short gspo key".into(),
                    })?;
                Ok(Some((g, self.inner.dict.term(g)?)))
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
#[derive(Clone, Copy)]
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
        self.core.graph_names()
    }
}

impl SetDataset for SledDataset<'_> {}

/// The dataset with the SPARQL default graph = the union of all graphs (deduplicated); the
/// named graphs are those of [`SledDataset`].
#[derive(Clone, Copy)]
pub struct UnionDataset<'a> {
    core: Core<'a>,
}

impl std::fmt::Debug for UnionDataset<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnionDataset")
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
        self.core.graph_names()
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

    #[test]
    fn keys_round_trip() {
        let ids = [1, 2, 3, 4];
        for i in 0..6 {
            assert_eq!(key_ids(i, &quad_key(i, &ids)), Some(ids));
        }
    }
}
