//! Wire formats: gossip payloads and the sync request-response protocol.
//!
//! Everything is the consensus codec ([`provchain_consensus::codec`]) behind a one-byte version.
//! Sync messages travel as a `u32` little-endian length followed by the encoding; the length is
//! checked against the bound before a byte of the body is read.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use provchain_consensus::codec::{Reader, Writer};
use provchain_consensus::{Block, CompactBlock, Decode, DecodeError, Encode, Hash, Transaction};

use crate::{ChainStatus, GOSSIP_VERSION, MAX_GOSSIP_BATCH, MAX_REQUEST_BYTES, MAX_SYNC_BLOCKS};

const SYNC_VERSION: u8 = 1;
/// Longest reason string in an error response.
const MAX_REASON_LEN: usize = 256;

pub(crate) fn encode_gossip<T: Encode>(value: &T) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(GOSSIP_VERSION);
    value.encode_to(&mut w);
    w.into_vec()
}

pub(crate) fn decode_gossip<T: Decode>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != GOSSIP_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            what: "gossip message",
            version,
        });
    }
    let v = T::decode_from(&mut r)?;
    r.finish()?;
    Ok(v)
}

/// Version byte of a block in compact form ([`CompactBlock`]) on the block topic.
pub(crate) const COMPACT_BLOCK_VERSION: u8 = 3;

pub(crate) fn encode_compact_block(block: &CompactBlock) -> Vec<u8> {
    let mut w = Writer::with_capacity(256 + 32 * block.tx_ids.len());
    w.u8(COMPACT_BLOCK_VERSION);
    block.encode_to(&mut w);
    w.into_vec()
}

/// A block-topic payload: a full block (version 1) or a compact one (version 3).
#[derive(Debug)]
pub(crate) enum GossipBlock {
    Full(Block),
    Compact(CompactBlock),
}

pub(crate) fn decode_block(bytes: &[u8]) -> Result<GossipBlock, DecodeError> {
    match bytes.first() {
        Some(&COMPACT_BLOCK_VERSION) => {
            let mut r = Reader::new(&bytes[1..]);
            let block = CompactBlock::decode_from(&mut r)?;
            r.finish()?;
            Ok(GossipBlock::Compact(block))
        }
        _ => decode_gossip(bytes).map(GossipBlock::Full),
    }
}

/// Version byte of a transaction batch on the transaction topic. A node gossips the
/// transactions it admits in batches (one signed gossip message per batch, not per
/// transaction); a single transaction under [`GOSSIP_VERSION`] is still understood.
pub(crate) const TX_BATCH_VERSION: u8 = 2;

pub(crate) fn encode_txs(txs: &[Transaction]) -> Vec<u8> {
    let size = 5 + txs.iter().map(|t| 4 + t.encoded_len()).sum::<usize>();
    let mut w = Writer::with_capacity(size);
    w.u8(TX_BATCH_VERSION);
    w.u32(txs.len() as u32);
    for tx in txs {
        tx.encode_prefixed(&mut w);
    }
    w.into_vec()
}

/// A transaction-topic payload: a batch of 1..=[`MAX_GOSSIP_BATCH`] transactions, or one
/// transaction in the version-1 format.
pub(crate) fn decode_txs(bytes: &[u8]) -> Result<Vec<Transaction>, DecodeError> {
    let mut r = Reader::new(bytes);
    match r.u8()? {
        GOSSIP_VERSION => {
            let tx = Transaction::decode_from(&mut r)?;
            r.finish()?;
            Ok(vec![tx])
        }
        TX_BATCH_VERSION => {
            let what = "transaction batch";
            // Every transaction needs its length prefix and fixed fields.
            let n = r.count_fitting(what, MAX_GOSSIP_BATCH, 4 + 100)?;
            if n == 0 {
                return Err(DecodeError::Empty { what });
            }
            let mut txs = Vec::with_capacity(n);
            for _ in 0..n {
                let tx = r.bytes("transaction", bytes.len())?;
                txs.push(Transaction::decode(tx)?);
            }
            r.finish()?;
            Ok(txs)
        }
        version => Err(DecodeError::UnsupportedVersion {
            what: "transaction gossip",
            version,
        }),
    }
}

/// What a sync request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncQuery {
    Status,
    GetBlocks {
        from_height: u64,
        max: u32,
    },
    /// What the decoder makes of bytes that are not a request (request-response does not
    /// report codec errors on inbound streams, so they travel up as a value). Never sent.
    Invalid(String),
    /// Test hook: bytes written verbatim instead of an encoding.
    #[cfg(test)]
    Raw(Vec<u8>),
}

/// A sync request, bound to the requester's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncRequest {
    pub genesis_hash: Hash,
    pub query: SyncQuery,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncResponse {
    Status(ChainStatus),
    Blocks(Vec<Block>),
    /// The responder could not or would not answer (busy, other network).
    Error(String),
    /// Test hook: bytes written verbatim instead of an encoding.
    #[cfg(test)]
    Raw(Vec<u8>),
}

fn encode_request(req: &SyncRequest) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(SYNC_VERSION);
    w.fixed(&req.genesis_hash.0);
    match &req.query {
        SyncQuery::Status => w.u8(0),
        SyncQuery::GetBlocks { from_height, max } => {
            w.u8(1);
            w.u64(*from_height);
            w.u32(*max);
        }
        SyncQuery::Invalid(_) => return Vec::new(),
        #[cfg(test)]
        SyncQuery::Raw(bytes) => return bytes.clone(),
    }
    w.into_vec()
}

pub(crate) fn decode_request(bytes: &[u8]) -> Result<SyncRequest, DecodeError> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != SYNC_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            what: "sync request",
            version,
        });
    }
    let genesis_hash = Hash(r.fixed()?);
    let query = match r.u8()? {
        0 => SyncQuery::Status,
        1 => SyncQuery::GetBlocks {
            from_height: r.u64()?,
            max: r.u32()?,
        },
        tag => {
            return Err(DecodeError::InvalidTag {
                what: "sync request",
                tag,
            });
        }
    };
    r.finish()?;
    Ok(SyncRequest {
        genesis_hash,
        query,
    })
}

fn encode_status(w: &mut Writer, s: &ChainStatus) {
    w.fixed(&s.genesis_hash.0);
    w.u64(s.best_height);
    w.fixed(&s.best_hash.0);
    w.u64(s.final_height);
    w.fixed(&s.final_hash.0);
}

fn encode_response(resp: &SyncResponse) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(SYNC_VERSION);
    match resp {
        SyncResponse::Status(s) => {
            w.u8(0);
            encode_status(&mut w, s);
        }
        SyncResponse::Blocks(blocks) => {
            w.u8(1);
            w.u32(blocks.len() as u32);
            for b in blocks {
                w.bytes(&b.encode());
            }
        }
        SyncResponse::Error(reason) => {
            w.u8(2);
            let mut end = reason.len().min(MAX_REASON_LEN);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            w.str(&reason[..end]);
        }
        #[cfg(test)]
        SyncResponse::Raw(bytes) => return bytes.clone(),
    }
    w.into_vec()
}

/// Decodes a response; `max_block_bytes` bounds each block's encoding.
pub(crate) fn decode_response(
    bytes: &[u8],
    max_block_bytes: usize,
) -> Result<SyncResponse, DecodeError> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != SYNC_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            what: "sync response",
            version,
        });
    }
    let resp = match r.u8()? {
        0 => SyncResponse::Status(ChainStatus {
            genesis_hash: Hash(r.fixed()?),
            best_height: r.u64()?,
            best_hash: Hash(r.fixed()?),
            final_height: r.u64()?,
            final_hash: Hash(r.fixed()?),
        }),
        1 => {
            let n = r.count("sync blocks", MAX_SYNC_BLOCKS as usize)?;
            let mut blocks = Vec::with_capacity(n);
            for _ in 0..n {
                blocks.push(Block::decode(r.bytes("block", max_block_bytes)?)?);
            }
            SyncResponse::Blocks(blocks)
        }
        2 => SyncResponse::Error(r.str("error reason", MAX_REASON_LEN)?.to_owned()),
        tag => {
            return Err(DecodeError::InvalidTag {
                what: "sync response",
                tag,
            });
        }
    };
    r.finish()?;
    Ok(resp)
}

/// Length-prefixed sync codec with bounded reads.
#[derive(Debug, Clone)]
pub(crate) struct SyncCodec {
    /// Largest response body accepted: `max_message_bytes + RESPONSE_SLACK_BYTES`.
    pub max_response_bytes: usize,
    /// Largest single block in a response: `max_message_bytes`.
    pub max_block_bytes: usize,
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
    what: &str,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(invalid(format!(
            "{what} of {len} bytes exceeds the limit of {max}"
        )));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| invalid("frame too large"))?;
    io.write_all(&len.to_le_bytes()).await?;
    io.write_all(body).await?;
    io.flush().await?;
    io.close().await
}

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let invalid = |reason: String| SyncRequest {
            genesis_hash: Hash::default(),
            query: SyncQuery::Invalid(reason),
        };
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_REQUEST_BYTES {
            return Ok(invalid(format!(
                "sync request of {len} bytes exceeds the limit of {MAX_REQUEST_BYTES}"
            )));
        }
        let mut body = vec![0u8; len];
        io.read_exact(&mut body).await?;
        Ok(decode_request(&body).unwrap_or_else(|e| invalid(e.to_string())))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_frame(io, self.max_response_bytes, "sync response").await?;
        decode_response(&body, self.max_block_bytes).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SyncRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode_request(&req)).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: SyncResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode_response(&resp)).await
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn request_roundtrip_and_garbage() {
        let req = SyncRequest {
            genesis_hash: Hash([7; 32]),
            query: SyncQuery::GetBlocks {
                from_height: 5,
                max: 9,
            },
        };
        assert_eq!(decode_request(&encode_request(&req)), Ok(req));
        assert!(decode_request(&[]).is_err());
        assert!(decode_request(&[1, 2, 3]).is_err());
        assert!(decode_request(&[0xff; 100]).is_err());
    }

    #[test]
    fn transaction_batches_roundtrip_and_garbage() {
        let genesis = Hash([9; 32]);
        let key = provchain_consensus::Keypair::from_secret([3; 32]);
        let txs: Vec<Transaction> = (0..3)
            .map(|i| {
                let body = provchain_consensus::TxBody {
                    format: provchain_consensus::RdfFormat::NTriples,
                    data: format!("<http://a> <http://b> \"{i}\" .").into(),
                    submitter: key.public(),
                    client: None,
                    timestamp_ms: i,
                };
                Transaction::sign(body, &key, &genesis)
            })
            .collect();
        let batch = encode_txs(&txs);
        assert_eq!(decode_txs(&batch), Ok(txs.clone()));
        // One transaction in the version-1 format is still understood.
        assert_eq!(
            decode_txs(&encode_gossip(&txs[0])),
            Ok(vec![txs[0].clone()])
        );
        // Every truncation fails cleanly; so do trailing bytes.
        for len in 0..batch.len() {
            assert!(decode_txs(&batch[..len]).is_err(), "truncated at {len}");
        }
        let mut long = batch.clone();
        long.push(0);
        assert_eq!(decode_txs(&long), Err(DecodeError::TrailingBytes(1)));
        // Empty batches and counts beyond the cap or the payload are refused before allocating.
        assert!(matches!(
            decode_txs(&[TX_BATCH_VERSION, 0, 0, 0, 0]),
            Err(DecodeError::Empty { .. })
        ));
        let over = (MAX_GOSSIP_BATCH as u32 + 1).to_le_bytes();
        assert!(matches!(
            decode_txs(&[TX_BATCH_VERSION, over[0], over[1], over[2], over[3]]),
            Err(DecodeError::TooLong { .. })
        ));
        assert!(matches!(
            decode_txs(&[TX_BATCH_VERSION, 0xff, 0x0f, 0, 0]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode_txs(&[9, 1, 0, 0, 0]),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn response_roundtrip_and_garbage() {
        let status = ChainStatus {
            genesis_hash: Hash([1; 32]),
            best_height: 3,
            best_hash: Hash([2; 32]),
            final_height: 2,
            final_hash: Hash([3; 32]),
        };
        let resp = SyncResponse::Status(status);
        assert_eq!(decode_response(&encode_response(&resp), 1024), Ok(resp));
        let err = SyncResponse::Error("x".repeat(1000));
        let SyncResponse::Error(back) =
            decode_response(&encode_response(&err), 1024).unwrap_or(SyncResponse::Blocks(vec![]))
        else {
            panic!("error response did not round-trip");
        };
        assert_eq!(back.len(), MAX_REASON_LEN);
        // A block count above the cap is refused before allocating.
        assert!(decode_response(&[1, 1, 0xff, 0xff, 0xff, 0xff], 1024).is_err());
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = decode_response(&junk, 1024);
            let _ = decode_gossip::<Block>(&junk);
            let _ = decode_gossip::<Transaction>(&junk);
        }
    }
}
