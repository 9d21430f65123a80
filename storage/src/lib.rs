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
//! | `blocks` | height `u64` BE (‖ piece `u32` BE) | block, consensus codec, in pieces |
//! | `block_index` | block hash | height `u64` BE |
//! | `pending` | block hash (‖ piece `u32` BE) | block, consensus codec, in pieces |
//! | `meta` | name | schema version, genesis (+ hash), final head height and hash, counters, next term and segment ids, the segment manifest |
//! | `terms` | first term id of a chunk, `u64` BE | the encodings ([`term`]) of consecutive term ids (`dict`) |
//! | `segments` | segment id ‖ section ‖ page | a page of sorted records, or a segment header (`segment`) |
//!
//! The dataset — six quad index orders (`spog posg ospg gspo gpos gosp`), the term → id
//! dictionary and the transaction index — lives in immutable **segments**: every commit
//! writes one as a few dozen sorted, delta-encoded pages, and [`Store::merge_segments`]
//! (which the node runs on a blocking thread after each commit) merges small ones so that
//! at most ~16 are live. sled costs ~10 µs of CPU per key whatever its size, so this writes
//! a few dozen keys per block where one key per quad and index wrote ~13,000 (see
//! `docs/PERFORMANCE.md`). Every pattern of bound subject/predicate/object/graph is a prefix
//! range of one index order in each segment ([`dataset`]). Term ids come from a counter (one
//! writer); segment headers (page directories, Bloom filters over term hashes and
//! transaction ids) stay in memory, and hot lookups go through bounded caches.
//!
//! sled 0.34 keeps values larger than a few KB in memory for good, whatever its cache
//! capacity; blocks, pending blocks, term chunks and pages are therefore stored as pieces of
//! at most [`store::MAX_VALUE`] bytes (a block that fits in one piece is stored under its
//! height exactly as before).
//!
//! # Atomicity and durability
//!
//! [`Store::commit_final`] first validates and plans everything (linkage to the final head,
//! duplicate transactions, parsing and interning every document), writing nothing on error.
//! It then writes each step's segment and new terms, flushes, and commits the blocks, their
//! removal from `pending`, the final head, the counters and the new segment manifest in one
//! sled transaction, and flushes again ([`store`] has the protocol). A crash leaves either
//! all of a block or none of it; what an interrupted commit wrote before its commit point is
//! unreferenced and [`Store::open`] deletes it. Very large calls are split at block
//! boundaries ([`store::MAX_QUADS_PER_STEP`]); each step leaves a consistent head. The call
//! returns after the flush, so a block reported final survives `kill -9`. [`Store::open`]
//! never replays the chain: it checks the schema version, the genesis hash, that the
//! recorded head block exists, decodes and matches, and loads the live segment headers.
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
mod dict;
pub mod digest;
pub mod error;
mod integrity;
pub mod rdf;
mod segment;
pub mod sparql;
pub mod store;
pub mod term;
pub mod vocab;

pub use dataset::{SledDataset, UnionDataset};
pub use error::{DatasetError, SparqlError, StorageError};
pub use integrity::{IntegrityCheck, IntegrityError, IntegrityReport};
pub use rdf::{OwnedQuad, RdfError};
pub use sparql::{QueryLimits, SparqlOutput};
pub use store::{CommitStats, ParsedTx, SCHEMA_VERSION, StorageStats, Store, TxDigest, TxLocation};
pub use term::StoreTerm;
