//! Fuzz target bodies for every surface that reads bytes a peer, a client or an operator controls:
//!
//! | target | input | checks beyond "never panics, never aborts" |
//! |---|---|---|
//! | `consensus_block` | `Block` / `BlockHeader` encoding | canonical round trip, `encoded_len`, validation on a fixed network |
//! | `consensus_tx` | `Transaction` encoding | canonical round trip, `encoded_len`, envelope validation |
//! | `consensus_genesis` | `Genesis` encoding | canonical round trip, genesis block |
//! | `wire_gossip` | gossip payloads (version byte + block, compact block, transaction or transaction batch) | canonical round trip |
//! | `wire_sync` | sync request / response bodies and length-prefixed frames | canonical round trip |
//! | `rdf_turtle`, `rdf_ntriples`, `rdf_nquads` | transaction RDF, as `POST /api/transactions` parses it | store term codec round trip; N-Triples rendering re-parses |
//! | `config_toml` | a TOML config file through the node's figment path, peer addresses, PSK files | accepted configs survive `--dump-config` and reload |
//!
//! The bodies live here rather than in `fuzz_targets/` so that `tests/corpus.rs` replays the
//! committed corpus through exactly the same code with a plain `cargo test` (no libFuzzer, no
//! nightly features): that is what CI runs. `run-ci.sh` describes both modes.

use std::sync::OnceLock;

use provchain_consensus::{
    Block, BlockHeader, Decode, Encode, Genesis, Keypair, Limits, RdfFormat, Transaction,
    ValidationContext, validate_block,
};

// The p2p wire codec is crate-private in `provchain-p2p`. Compiling its source file into this
// crate fuzzes exactly the code the node runs without widening p2p's public API; the items
// it imports from its crate root are re-exported below under the same names.
#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../p2p/src/wire.rs"]
mod wire;
pub(crate) use provchain_p2p::{
    ChainStatus, GOSSIP_VERSION, MAX_GOSSIP_BATCH, MAX_REQUEST_BYTES, MAX_SYNC_BLOCKS,
};

/// Block size bound used by the sync decoder in these targets (the node's default, 4 MiB).
const MAX_BLOCK_BYTES: usize = 4 * 1024 * 1024;

/// A fixed one-authority network for validation: the fuzzer's blocks are checked against it.
pub struct Net {
    pub key: Keypair,
    pub genesis: Genesis,
    pub genesis_block: Block,
}

pub fn net() -> &'static Net {
    static NET: OnceLock<Net> = OnceLock::new();
    NET.get_or_init(|| {
        let key = Keypair::from_secret([7; 32]);
        let genesis = Genesis {
            network_id: "provchain-fuzz".into(),
            authorities: vec![key.public()],
            block_interval_ms: 1000,
            governance: Default::default(),
        };
        let genesis_block = genesis.block();
        Net {
            key,
            genesis,
            genesis_block,
        }
    })
}

/// Asserts that a decoded value re-encodes to exactly the bytes it came from: the codec
/// promises one encoding per value, and hashes and signatures depend on it.
fn assert_canonical<T: Encode>(value: &T, data: &[u8], what: &str) {
    let again = value.encode();
    assert!(
        again == data,
        "{what}: decoded value re-encodes to different bytes ({} vs {} bytes)",
        again.len(),
        data.len()
    );
}

pub fn consensus_block(data: &[u8]) {
    if let Ok(h) = BlockHeader::decode(data) {
        assert_canonical(&h, data, "block header");
        let _ = h.hash();
    }
    let Ok(block) = Block::decode(data) else {
        return;
    };
    assert_canonical(&block, data, "block");
    assert_eq!(block.encoded_len(), data.len(), "Block::encoded_len");
    let net = net();
    let genesis_hash = net.genesis.hash();
    let _ = block.verify_seal(&genesis_hash);
    let _ = block.tx_ids();
    let ctx = ValidationContext {
        genesis_hash,
        authorities: &net.genesis.authorities,
        interval_ms: net.genesis.block_interval_ms,
        now_ms: block.header.timestamp_ms,
        max_drift_ms: 500,
        limits: Limits::default(),
    };
    let _ = validate_block(&block, &net.genesis_block.header, &ctx);
}

pub fn consensus_tx(data: &[u8]) {
    let Ok(tx) = Transaction::decode(data) else {
        return;
    };
    assert_canonical(&tx, data, "transaction");
    assert_eq!(tx.encoded_len(), data.len(), "Transaction::encoded_len");
    let _ = tx.id();
    let _ = tx.validate(&net().genesis.hash(), Limits::default().max_tx_bytes);
}

pub fn consensus_genesis(data: &[u8]) {
    let Ok(g) = Genesis::decode(data) else {
        return;
    };
    assert_canonical(&g, data, "genesis");
    let b = g.block();
    assert_eq!(b.header.parent_hash, g.hash());
}

pub fn wire_gossip(data: &[u8]) {
    match wire::decode_block(data) {
        Ok(wire::GossipBlock::Full(b)) => {
            assert!(
                wire::encode_gossip(&b) == data,
                "gossip block not canonical"
            );
        }
        Ok(wire::GossipBlock::Compact(b)) => {
            assert!(
                wire::encode_compact_block(&b) == data,
                "compact block not canonical"
            );
        }
        Err(_) => {}
    }
    if let Ok(txs) = wire::decode_txs(data) {
        // Version 1 carries one transaction, version 2 a batch.
        let again = match txs.as_slice() {
            [tx] if data.first() == Some(&GOSSIP_VERSION) => wire::encode_gossip(tx),
            _ => wire::encode_txs(&txs),
        };
        assert!(again == data, "gossip transactions not canonical");
    }
}

pub fn wire_sync(data: &[u8]) {
    use libp2p::StreamProtocol;
    use libp2p::request_response::Codec;

    if let Ok(req) = wire::decode_request(data) {
        // `encode_request` is private to the module; the round trip goes through the codec.
        let mut out = Vec::new();
        let mut codec = codec();
        let proto = StreamProtocol::new("/fuzz");
        let _ = futures::executor::block_on(codec.write_request(&proto, &mut out, req.clone()));
        assert!(
            out.len() >= 4 && out[4..] == *data,
            "sync request not canonical"
        );
    }
    if let Ok(resp) = wire::decode_response(data, MAX_BLOCK_BYTES) {
        let mut out = Vec::new();
        let mut codec = codec();
        let proto = StreamProtocol::new("/fuzz");
        let _ = futures::executor::block_on(codec.write_response(&proto, &mut out, resp));
        assert!(
            out.len() >= 4 && out[4..] == *data,
            "sync response not canonical"
        );
    }
    // The same bytes as a stream: length prefix first, bounded reads.
    let proto = StreamProtocol::new("/fuzz");
    let mut codec = codec();
    let _ = futures::executor::block_on(
        codec.read_request(&proto, &mut futures::io::Cursor::new(data)),
    );
    let _ = futures::executor::block_on(
        codec.read_response(&proto, &mut futures::io::Cursor::new(data)),
    );
}

fn codec() -> wire::SyncCodec {
    wire::SyncCodec {
        max_response_bytes: MAX_BLOCK_BYTES + provchain_p2p::RESPONSE_SLACK_BYTES,
        max_block_bytes: MAX_BLOCK_BYTES,
    }
}

/// The submission path: the HTTP API takes UTF-8 text and calls `rdf::parse`; the node stores
/// each term through the term codec and renders terms as N-Triples for CONSTRUCT results.
fn rdf(format: RdfFormat, data: &[u8]) {
    use provchain_storage::rdf;
    use provchain_storage::term::{decode_term, encode_term, write_nt};

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(quads) = rdf::parse(format, text, "fuzz") else {
        return;
    };
    let mut rendered = String::new();
    for ([s, p, o], g) in &quads {
        for t in [Some(s), Some(p), Some(o), g.as_ref()]
            .into_iter()
            .flatten()
        {
            let enc = encode_term(t).expect("parsed terms are storable");
            let back = decode_term(&enc).expect("stored terms decode");
            assert_eq!(
                encode_term(&back).as_deref(),
                Some(&enc[..]),
                "term codec round trip"
            );
            write_nt(t, &mut rendered);
            rendered.push(' ');
        }
        rendered.push_str(".\n");
    }
    // What the node renders must be valid N-Quads with the same number of statements.
    match rdf::parse(RdfFormat::NQuads, &rendered, "fuzz") {
        Ok(again) => assert_eq!(again.len(), quads.len(), "re-parsed statement count"),
        Err(e) => panic!("rendered N-Quads do not parse ({e}):\n{rendered}"),
    }
    let _ = rdf::count_triples(format, text);
}

pub fn rdf_turtle(data: &[u8]) {
    rdf(RdfFormat::Turtle, data)
}

pub fn rdf_ntriples(data: &[u8]) {
    rdf(RdfFormat::NTriples, data)
}

pub fn rdf_nquads(data: &[u8]) {
    rdf(RdfFormat::NQuads, data)
}

/// A config file as an operator writes it, through the node's figment path and validation;
/// plus the other operator-supplied strings the node parses at startup.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = provchain_p2p::parse_swarm_key(text);
    let _ = provchain_p2p::parse_peer_addr(text);
    let Ok(config) = provchain_node::config::load_from_str(text) else {
        return;
    };
    for p in &config.network.known_peers {
        let _ = provchain_p2p::parse_peer_addr(p);
    }
    let _ = config.authority_keys();
    // `--dump-config` output is a valid config that means the same thing (the JWT secret is
    // redacted in the dump, so compare without it).
    let mut plain = config.clone();
    plain.web.jwt_secret = None;
    let dumped = plain.dump();
    match provchain_node::config::load_from_str(&dumped) {
        Ok(again) => assert_eq!(again, plain, "config changed through dump and reload"),
        Err(e) => panic!("dumped config does not load ({e}):\n{dumped}"),
    }
}
