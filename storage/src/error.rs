//! Error types. Messages name the cause and, where there is one, the operator's next step.

use provchain_consensus::Hash;

use crate::rdf::RdfError;

/// Failures of the store's API.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0} (check the data directory's disk space and permissions)")]
    Sled(#[from] sled::Error),
    #[error(
        "the data directory belongs to another network: it was created for genesis {stored}, \
         this node runs genesis {configured}; point storage.data_dir at an empty directory or \
         use the matching genesis"
    )]
    GenesisMismatch { stored: Hash, configured: Hash },
    #[error(
        "the data directory uses storage schema version {found}, this build understands \
         {supported}; use a matching provchaind build"
    )]
    UnsupportedSchema { found: u32, supported: u32 },
    #[error(
        "stored {what} is corrupt: {detail}; run `provchain verify` on the data directory and \
         restore it from a peer or backup"
    )]
    Corrupt { what: String, detail: String },
    #[error(
        "block {got_hash} (height {got_height}, parent {got_parent}) does not extend the final \
         head: expected height {expected_height} with parent {expected_parent}"
    )]
    NotNextBlock {
        expected_height: u64,
        expected_parent: Hash,
        got_height: u64,
        got_parent: Hash,
        got_hash: Hash,
    },
    #[error(
        "transaction {tx} in block {height} is already in the chain or repeated in this commit"
    )]
    DuplicateTransaction { tx: Hash, height: u64 },
    #[error("transaction {tx} in block {height} carries RDF that does not parse: {error}")]
    InvalidRdf {
        tx: Hash,
        height: u64,
        error: RdfError,
    },
    #[error("the term dictionary ran out of ids")]
    TermIdsExhausted,
}

impl StorageError {
    pub fn corrupt(what: impl Into<String>, detail: impl ToString) -> Self {
        Self::Corrupt {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        Self::Sled(sled::Error::Io(e))
    }
}

/// Failures of a SPARQL query. [`SparqlError::Parse`] is the client's fault (HTTP 400);
/// `Timeout` and `TooManyRows` mean the query needs narrowing (HTTP 400/503 at the node's
/// choice); `Internal` is ours (HTTP 500).
#[derive(Debug, thiserror::Error)]
pub enum SparqlError {
    #[error("invalid SPARQL query: {0}")]
    Parse(String),
    #[error("query exceeded the {0:?} time limit; narrow it or add LIMIT")]
    Timeout(std::time::Duration),
    #[error("query produced more than {0} results; add LIMIT or narrow it")]
    TooManyRows(usize),
    #[error("query failed: {0}")]
    Internal(String),
}

/// Errors surfaced through sophia's `Dataset` trait.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("query deadline exceeded")]
    Timeout,
}

impl From<DatasetError> for StorageError {
    fn from(e: DatasetError) -> Self {
        match e {
            DatasetError::Sled(e) => Self::Sled(e),
            DatasetError::Corrupt { what, detail } => Self::Corrupt {
                what: what.into(),
                detail,
            },
            DatasetError::Timeout => Self::corrupt("dataset", "unexpected deadline"),
        }
    }
}
