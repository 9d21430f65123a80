//! Replays the committed corpus (`corpus/<target>/`) and crash reproducers
//! (`regressions/<target>/`) through the fuzz target bodies with a plain `cargo test`: the CI
//! mode of `run-ci.sh`, which needs neither libFuzzer nor nightly features.
//!
//! `cargo test --test corpus -- --ignored write_seeds` (re)writes the hand-made seed inputs
//! (`corpus/<target>/seed-*`) that give the fuzzer valid encodings to start from.

use std::path::{Path, PathBuf};

use provchain_consensus::codec::Writer;
use provchain_consensus::{
    Block, CompactBlock, Encode, Genesis, GovernanceAction, Keypair, Proposal, RdfFormat,
    Transaction, TxBody, Vote,
};

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("consensus_block", provchain_fuzz::consensus_block),
    ("consensus_tx", provchain_fuzz::consensus_tx),
    ("consensus_genesis", provchain_fuzz::consensus_genesis),
    ("wire_gossip", provchain_fuzz::wire_gossip),
    ("wire_sync", provchain_fuzz::wire_sync),
    ("rdf_turtle", provchain_fuzz::rdf_turtle),
    ("rdf_ntriples", provchain_fuzz::rdf_ntriples),
    ("rdf_nquads", provchain_fuzz::rdf_nquads),
    ("config_toml", provchain_fuzz::config_toml),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.retain(|p| p.is_file());
    out.sort();
    out
}

#[test]
fn corpus_replays_cleanly() {
    let mut total = 0;
    for (name, target) in TARGETS {
        let mut n = 0;
        for sub in ["corpus", "regressions"] {
            for f in files(&root().join(sub).join(name)) {
                let data = std::fs::read(&f).expect("read corpus file");
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(outcome.is_ok(), "{name}: {} fails", f.display());
                n += 1;
            }
        }
        assert!(n > 0, "{name}: empty corpus; run write_seeds or cargo fuzz");
        println!("{name}: {n} inputs");
        total += n;
    }
    println!("{total} inputs replayed");
}

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = root().join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(format!("seed-{name}")), data).expect("write seed");
}

fn tx(
    key: &Keypair,
    genesis: &Genesis,
    format: RdfFormat,
    data: &str,
    client: Option<&str>,
) -> Transaction {
    let body = TxBody {
        format,
        data: data.into(),
        submitter: key.public(),
        client: client.map(str::to_owned),
        timestamp_ms: 1_000,
    };
    Transaction::sign(body, key, &genesis.hash())
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

#[test]
#[ignore = "writes seed files into the corpus"]
fn write_seeds() {
    let net = provchain_fuzz::net();
    let (key, genesis) = (&net.key, &net.genesis);
    let gh = genesis.hash();

    // Consensus encodings.
    let t1 = tx(
        key,
        genesis,
        RdfFormat::Turtle,
        "<http://ex/a> <http://ex/b> \"c\" .",
        None,
    );
    let t2 = tx(
        key,
        genesis,
        RdfFormat::NQuads,
        "<http://ex/a> <http://ex/b> <http://ex/c> <http://ex/g> .",
        Some("alice"),
    );
    let t3 = tx(
        key,
        genesis,
        RdfFormat::NTriples,
        "_:x <http://ex/p> \"v\"@en .",
        None,
    );
    let empty = Block::seal(&net.genesis_block.header, 1, 1_000, vec![], key, &gh);
    let full = Block::seal(
        &net.genesis_block.header,
        2,
        2_500,
        vec![t1.clone(), t2.clone(), t3.clone()],
        key,
        &gh,
    );
    write("consensus_block", "genesis", &net.genesis_block.encode());
    write("consensus_block", "empty", &empty.encode());
    write("consensus_block", "three-txs", &full.encode());
    write("consensus_block", "header", &full.header.encode());
    let proposal = Proposal::sign(
        GovernanceAction::Add(Keypair::from_secret([9; 32]).public()),
        1,
        key,
        &gh,
    );
    let vote = Vote::sign(proposal.id(), key, &gh);
    let governed = Block::seal_with_governance(
        &net.genesis_block.header,
        3,
        3_100,
        vec![t1.clone()],
        vec![proposal.into(), vote.into()],
        key,
        &gh,
    );
    write("consensus_block", "governance", &governed.encode());
    write("consensus_tx", "turtle", &t1.encode());
    write("consensus_tx", "nquads-client", &t2.encode());
    write("consensus_tx", "ntriples", &t3.encode());
    write("consensus_genesis", "one", &genesis.encode());
    let three = Genesis {
        network_id: "provchain-testnet".into(),
        authorities: (1u8..=3)
            .map(|i| Keypair::from_secret([i; 32]).public())
            .collect(),
        block_interval_ms: 1_000,
        governance: Default::default(),
    };
    write("consensus_genesis", "three", &three.encode());
    let governed_genesis = Genesis {
        governance: provchain_consensus::GovernanceParams {
            epoch_length: 4,
            proposal_ttl: 20,
        },
        ..three.clone()
    };
    write(
        "consensus_genesis",
        "governance-params",
        &governed_genesis.encode(),
    );

    // Gossip: version byte 1, then the encoding.
    let gossip = |v: &dyn Fn(&mut Writer)| {
        let mut w = Writer::default();
        w.u8(provchain_p2p::GOSSIP_VERSION);
        v(&mut w);
        w.into_vec()
    };
    write("wire_gossip", "block", &gossip(&|w| full.encode_to(w)));
    write("wire_gossip", "tx", &gossip(&|w| t2.encode_to(w)));
    // A transaction batch: version 2, a count, length-prefixed transactions.
    let mut batch = Writer::default();
    batch.u8(2);
    batch.u32(2);
    batch.bytes(&t2.encode());
    batch.bytes(&t1.encode());
    write("wire_gossip", "tx-batch", &batch.into_vec());
    // Compact blocks: version 3, the header, the transaction ids, (governance,) the seal.
    let compact = |b: &Block, prefill: &[usize]| {
        let mut w = Writer::default();
        w.u8(3);
        CompactBlock::of(b, b.tx_ids(), prefill).encode_to(&mut w);
        w.into_vec()
    };
    write("wire_gossip", "compact-block", &compact(&full, &[]));
    write("wire_gossip", "compact-prefilled", &compact(&full, &[0, 2]));
    write("wire_gossip", "compact-governance", &compact(&governed, &[0]));

    // Sync request bodies: version, genesis hash, query.
    let mut status_req = vec![1u8];
    status_req.extend_from_slice(&gh.0);
    status_req.push(0);
    let mut blocks_req = vec![1u8];
    blocks_req.extend_from_slice(&gh.0);
    blocks_req.push(1);
    blocks_req.extend_from_slice(&5u64.to_le_bytes());
    blocks_req.extend_from_slice(&128u32.to_le_bytes());
    // Responses: status, blocks, error.
    let mut status_resp = vec![1u8, 0];
    status_resp.extend_from_slice(&gh.0);
    status_resp.extend_from_slice(&2u64.to_le_bytes());
    status_resp.extend_from_slice(&full.hash().0);
    status_resp.extend_from_slice(&1u64.to_le_bytes());
    status_resp.extend_from_slice(&empty.hash().0);
    let mut w = Writer::default();
    w.u8(1);
    w.u8(1);
    w.u32(2);
    w.bytes(&empty.encode());
    w.bytes(&full.encode());
    let blocks_resp = w.into_vec();
    let mut w = Writer::default();
    w.u8(1);
    w.u8(2);
    w.str("busy: too many requests");
    let error_resp = w.into_vec();
    for (name, body) in [
        ("req-status", &status_req),
        ("req-blocks", &blocks_req),
        ("resp-status", &status_resp),
        ("resp-blocks", &blocks_resp),
        ("resp-error", &error_resp),
    ] {
        write("wire_sync", name, body);
        write("wire_sync", &format!("{name}-framed"), &framed(body));
    }

    // RDF documents.
    let shipment = std::fs::read(root().join("../examples/shipment.ttl")).unwrap_or_default();
    write("rdf_turtle", "shipment", &shipment);
    write(
        "rdf_turtle",
        "features",
        br#"@prefix ex: <http://example.org/> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@base <http://example.org/base/> .
PREFIX prov: <http://www.w3.org/ns/prov#>
ex:lot1 a ex:Lot ; ex:weight "12.5"^^xsd:decimal , 13 , 1.5e3 , true ;
  ex:label "caf\u00e9 \"quoted\"\n"@fr , """long
string"""@en-GB , 'single'@en--ltr ;
  ex:parts ( ex:a ( ex:b ex:c ) [ ex:d "e" ] ) ;
  prov:wasDerivedFrom [ a prov:Entity ; ex:id _:n1 ] .
_:n1 ex:rel <relative> .
# a comment
"#,
    );
    write(
        "rdf_turtle",
        "nested",
        b"<http://a> <http://b> ((((((((((<http://c>)))))))))) .\n",
    );
    write(
        "rdf_ntriples",
        "basic",
        b"<http://ex/s> <http://ex/p> <http://ex/o> .\n_:b0 <http://ex/p> \"lit\\u00e9\\n\"@en .\n<http://ex/s> <http://ex/p> \"1\"^^<http://www.w3.org/2001/XMLSchema#integer> . # c\n",
    );
    write(
        "rdf_nquads",
        "basic",
        b"<http://ex/s> <http://ex/p> <http://ex/o> <http://ex/g> .\n_:b0 <http://ex/p> \"x\"@en-us _:g .\n<http://ex/s> <http://ex/p> \"v\" .\n",
    );

    // Configs, a swarm key and peer addresses.
    for entry in files(&root().join("../configs")) {
        if entry.extension().is_some_and(|e| e == "toml") {
            let name = entry
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            write(
                "config_toml",
                &name,
                &std::fs::read(&entry).unwrap_or_default(),
            );
        }
    }
    for entry in files(&root().join("../configs/testnet")) {
        if entry.extension().is_some_and(|e| e == "toml") {
            let name = entry
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            write(
                "config_toml",
                &format!("testnet-{name}"),
                &std::fs::read(&entry).unwrap_or_default(),
            );
        }
    }
    write(
        "config_toml",
        "authority",
        format!(
            "node_id = \"n1\"\n[network]\nnetwork_id = \"provchain-testnet\"\nknown_peers = [\"127.0.0.1:30334\", \"/dns4/node2/tcp/30333\"]\n\
             [consensus]\nis_authority = true\ndev_key = 1\nauthority_keys = [\"{}\"]\nblock_interval = \"500ms\"\n\
             max_clock_drift_ms = 1000\nclock_offset_ms = -2000\n[web]\njwt_secret = \"0123456789abcdef0123\"\n",
            key.public().to_hex()
        )
        .as_bytes(),
    );
    write(
        "config_toml",
        "dev",
        b"dev = true\n[consensus]\nblock_interval = 0.25\n[logging]\nformat = \"json\"\n",
    );
    write(
        "config_toml",
        "swarm-key",
        b"/key/swarm/psk/1.0.0/\n/base16/\n0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
    );
    write("config_toml", "peer", b"node1:30333");
}
