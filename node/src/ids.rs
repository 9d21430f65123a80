//! Maps and sets keyed by transaction ids.
//!
//! The pool, the inclusion index and the cache of checked transactions are looked up for
//! every transaction of every block, on the chain task, in the milliseconds when every node
//! takes the same block up: with the standard library's SipHash that hashing was about a
//! tenth of a slot leader's chain-task work after each block (docs/PERFORMANCE.md, item 13).
//! foldhash is several times faster on 32-byte keys, and its per-process random seed keeps a
//! submitter from choosing transactions whose ids crowd one part of a table.

use std::collections::{HashMap, HashSet};

use provchain_consensus::Hash;

pub type IdMap<V> = HashMap<Hash, V, foldhash::fast::RandomState>;
pub type IdSet = HashSet<Hash, foldhash::fast::RandomState>;
