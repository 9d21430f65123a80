//! ProvChain's storage: the append-only final chain, the pending (non-final) blocks, and the
//! RDF dataset built from the chain's transactions, all in one embedded sled database.
//!
//! # What it owns
//!
//! [`Store`] is a cheap-to-clone handle (an `Arc` around the sled database and caches). Reads
//! work from any thread; exactly one writer (the node's chain task) calls
//! [`Store::commit_final`], [`Store::put_pending`] and [`Store::remove_pending`]. All calls
//! block on disk I/O: async callers use a blocking pool.
//!
//! # Tree layout (schema version [`SCHEMA_VERSION`])
//!
//! | tree | key | value |
//! |---|---|---|
//! | `blocks` | height `u64` BE | block, consensus codec |
//! | `block_index` | block hash | height `u64` BE |
//! | `tx_index` | tx id | height `u64` BE, index `u32` BE, triple count `u64` BE |
//! | `pending` | block hash | block, consensus codec |
//! | `meta` | name | schema version, genesis (+ hash), final head height and hash, next term id, counters |
//! | `terms` | term id `u64` BE | term in the compact binary encoding ([`term`]) |
//! | `term_ids` | encoding (or `0xFF` + blake3 of it when longer than 64 bytes) | term id |
//! | `quads_spog` … `quads_gosp` | four term ids, 32 bytes, in the index's order | empty |
//!
//! The six quad indexes (`spog posg ospg gspo gpos gosp`) make every pattern of bound
//! subject/predicate/object/graph a single prefix range ([`dataset`]). Term ids come from a
//! counter (one writer); hot lookups go through bounded in-memory caches.
//!
//! # Atomicity and durability
//!
//! [`Store::commit_final`] first validates and plans everything (linkage to the final head,
//! duplicate transactions, parsing every document), writing nothing on error. It then
//! applies the writes for whole blocks in one sled transaction over all trees touched —
//! blocks, indexes, dictionary, quads, the removal of the blocks from `pending`, and the new
//! final head and counters in `meta` — so a crash leaves either all of a block or none of it.
//! Very large calls are split at block boundaries ([`store::MAX_WRITES_PER_TRANSACTION`]);
//! each step leaves a consistent head. The call flushes before returning, so a block reported
//! final survives `kill -9`. [`Store::open`] never replays the chain: it checks the schema
//! version, the genesis hash, and that the recorded head block exists, decodes and matches.
//!
//! # RDF data model
//!
//! * Each transaction's default-graph statements go into the named graph
//!   `urn:provchain:tx:<tx id hex>` (the same IRI names the transaction in the metadata).
//! * N-Quads statements that name a graph keep it: a client that sends N-Quads asks for those
//!   graphs. The metadata records `pc:namedGraph` for each, so the provenance of a named graph
//!   is traceable to its transactions. Graph names (and subjects) in `urn:provchain:` are
//!   refused at parse time, so clients cannot write into the metadata.
//! * Blank nodes are relabelled per transaction (`<tx id hex>_<n>`, see [`rdf`]), so two
//!   transactions' `_:b` are distinct nodes.
//! * Chain metadata lives in `urn:provchain:chain` ([`vocab::CHAIN_GRAPH`]), with
//!   `prov:` = `http://www.w3.org/ns/prov#`, `pc:` = [`vocab::PC`] (`urn:provchain:vocab#`):
//!
//! ```text
//! <urn:provchain:tx:ID> a prov:Entity ;
//!     prov:wasAttributedTo <urn:provchain:node:SUBMITTER_KEY_HEX> ;
//!     prov:generatedAtTime "2026-11-22T10:00:00.000Z"^^xsd:dateTime ;   # acceptance time
//!     pc:inBlock <urn:provchain:block:HASH> ; pc:index 0 ; pc:tripleCount 10 ;
//!     pc:format "turtle" ;
//!     pc:client "subject" ;                 # when API auth recorded one
//!     pc:namedGraph <http://g> .            # per N-Quads graph written
//! <urn:provchain:block:HASH> a pc:Block ; pc:height 5 ; pc:slot 123 ;
//!     pc:proposer <urn:provchain:node:KEY_HEX> ; pc:parent <urn:provchain:block:PARENT> ;
//!     prov:generatedAtTime "…"^^xsd:dateTime .
//! ```
//!   Integers are `xsd:integer`. The genesis block has only `a pc:Block ; pc:height 0`.
//!
//! # SPARQL
//!
//! [`Store::sparql`] runs sophia_sparql directly on the sled indexes through
//! [`UnionDataset`]: sophia evaluates the default graph as "graph name = none", so the view
//! answers default-graph patterns from all graphs (triples deduplicated), while `GRAPH ?g`
//! and `FROM`/`FROM NAMED` see the stored named graphs (listed with an index skip-scan). The
//! deadline is checked on every quad read and every result row. Because clients can assert
//! any triple in their own graph, authoritative metadata questions should name
//! `GRAPH <urn:provchain:chain>`.

pub mod dataset;
pub mod error;
mod integrity;
pub mod rdf;
pub mod sparql;
pub mod store;
pub mod term;
pub mod vocab;

pub use dataset::{SledDataset, UnionDataset};
pub use error::{DatasetError, SparqlError, StorageError};
pub use integrity::{IntegrityCheck, IntegrityError, IntegrityReport};
pub use rdf::{OwnedQuad, RdfError};
pub use sparql::{QueryLimits, SparqlOutput};
pub use store::{CommitStats, SCHEMA_VERSION, Store, TxLocation};
pub use term::StoreTerm;
