//! Transactions: an RDF document in a signed envelope.
//!
//! The accepting node signs the envelope with its key (`submitter`), recording the authenticated
//! client subject when API auth is on and the acceptance time. `tx_id` is the blake3 hash of the
//! complete canonical encoding, signature included (ed25519 signatures are deterministic).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{Hash, Keypair, PublicKey, Signature, domain};

const TX_VERSION: u8 = 1;
/// Largest RDF payload one transaction may carry. Bounds decoding; the node's configured limit
/// may be lower.
pub const MAX_TX_DATA: usize = 8 * 1024 * 1024;
/// Longest client subject recorded in an envelope.
pub const MAX_CLIENT_LEN: usize = 256;

/// Serialisation of the RDF payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RdfFormat {
    Turtle,
    NTriples,
    NQuads,
}

impl RdfFormat {
    fn tag(self) -> u8 {
        match self {
            Self::Turtle => 1,
            Self::NTriples => 2,
            Self::NQuads => 3,
        }
    }
    fn from_tag(tag: u8) -> Result<Self, DecodeError> {
        Ok(match tag {
            1 => Self::Turtle,
            2 => Self::NTriples,
            3 => Self::NQuads,
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "rdf format",
                    tag,
                });
            }
        })
    }
    /// Accepts the names and media types clients use.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        let s = s.split(';').next().unwrap_or("").trim();
        Some(match s {
            "turtle" | "ttl" | "text/turtle" | "application/x-turtle" => Self::Turtle,
            "ntriples" | "n-triples" | "nt" | "application/n-triples" => Self::NTriples,
            "nquads" | "n-quads" | "nq" | "application/n-quads" => Self::NQuads,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Turtle => "turtle",
            Self::NTriples => "n-triples",
            Self::NQuads => "n-quads",
        }
    }
}

/// The signed part of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxBody {
    pub format: RdfFormat,
    /// The RDF document. Shared: a transaction is copied from the gossip batch to the pool,
    /// into blocks and to the storage writer, and each copy is a reference count, not 1 KB.
    pub data: Arc<str>,
    /// Key of the node that accepted the document.
    pub submitter: PublicKey,
    /// Authenticated API client subject, when auth is on.
    pub client: Option<String>,
    pub timestamp_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub body: TxBody,
    pub signature: Signature,
}

/// Why a transaction is invalid, independent of its RDF content.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError {
    #[error("transaction signature does not verify against submitter {0}")]
    BadSignature(PublicKey),
    #[error("transaction carries no RDF data")]
    Empty,
    #[error("transaction data is {size} bytes, the limit is {max}")]
    TooLarge { size: usize, max: usize },
}

impl TxBody {
    fn encode_to(&self, w: &mut Writer) {
        w.u8(TX_VERSION);
        w.u8(self.format.tag());
        w.str(&self.data);
        w.fixed(&self.submitter.0);
        w.option_str(self.client.as_deref());
        w.u64(self.timestamp_ms);
    }

    fn signing_message(&self, genesis_hash: &Hash) -> Hash {
        let mut w = Writer::with_capacity(self.data.len() + 128);
        self.encode_to(&mut w);
        domain::TX_SIGNATURE.hash(&[&genesis_hash.0, w.as_slice()])
    }
}

impl Transaction {
    /// Signs `body` for the network `genesis_hash`.
    pub fn sign(body: TxBody, key: &Keypair, genesis_hash: &Hash) -> Self {
        let msg = body.signing_message(genesis_hash);
        Self {
            signature: key.sign(&msg.0),
            body,
        }
    }

    pub fn id(&self) -> Hash {
        domain::TX_ID.hash(&[&self.encode()])
    }

    /// The message the submitter signed, for batch verification.
    pub fn signing_message(&self, genesis_hash: &Hash) -> Hash {
        self.body.signing_message(genesis_hash)
    }

    /// Structural checks and the envelope signature. RDF well-formedness is checked by the
    /// storage layer's parser, which owns the RDF model.
    pub fn validate(&self, genesis_hash: &Hash, max_data: usize) -> Result<(), TxError> {
        self.validate_shape(max_data)?;
        let msg = self.signing_message(genesis_hash);
        if !self.body.submitter.verify(&msg.0, &self.signature) {
            return Err(TxError::BadSignature(self.body.submitter));
        }
        Ok(())
    }

    /// The checks of [`Self::validate`] other than the signature (for callers that verify
    /// signatures in a batch).
    pub fn validate_shape(&self, max_data: usize) -> Result<(), TxError> {
        if self.body.data.trim().is_empty() {
            return Err(TxError::Empty);
        }
        if self.body.data.len() > max_data {
            return Err(TxError::TooLarge {
                size: self.body.data.len(),
                max: max_data,
            });
        }
        Ok(())
    }

    /// Appends the encoding with a `u32` length prefix (as blocks and batches carry it),
    /// without an intermediate buffer.
    pub fn encode_prefixed(&self, w: &mut Writer) {
        let len = self.encoded_len();
        debug_assert!(
            u32::try_from(len).is_ok(),
            "transactions are bounded far below 4 GiB"
        );
        w.u32(len as u32);
        self.encode_to(w);
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        1 + 1
            + 4
            + self.body.data.len()
            + 32
            + 1
            + self.body.client.as_ref().map_or(0, |c| 4 + c.len())
            + 8
            + 64
    }
}

impl Encode for Transaction {
    fn encode_to(&self, w: &mut Writer) {
        self.body.encode_to(w);
        w.fixed(&self.signature.0);
    }
    /// Sized up front: ids hash this encoding wherever a transaction is looked up.
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.encoded_len());
        self.encode_to(&mut w);
        w.into_vec()
    }
}

impl Decode for Transaction {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != TX_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "transaction",
                version,
            });
        }
        let format = RdfFormat::from_tag(r.u8()?)?;
        let data = Arc::from(r.str("transaction data", MAX_TX_DATA)?);
        let submitter = PublicKey(r.fixed()?);
        let client = r
            .option_str("client subject", MAX_CLIENT_LEN)?
            .map(str::to_owned);
        let timestamp_ms = r.u64()?;
        let signature = Signature(r.fixed()?);
        Ok(Self {
            body: TxBody {
                format,
                data,
                submitter,
                client,
                timestamp_ms,
            },
            signature,
        })
    }
}
