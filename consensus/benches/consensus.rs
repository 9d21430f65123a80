//! Chain-rule benchmarks: full block validation, the gossip/sync codec (blocks and
//! transactions, encode and bounded decode), transaction ids and signing, and the ed25519
//! signature gossipsub's strict mode puts over every block message. Prints figures;
//! asserts nothing. The gossip wire format is this codec behind one version byte, so these
//! are the gossip encode/decode costs.
//!
//! ```text
//! cargo bench -p provchain-consensus --bench consensus [-- --txs 100,1000,4000]
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use provchain_consensus::{
    Block, CompactBlock, Decode, Encode, Genesis, Keypair, Limits, RdfFormat, Transaction, TxBody,
    ValidationContext, merkle_root, validate_block, validate_block_with,
};

/// Runs `f` repeatedly for about `budget`, returns the mean time per call.
fn time<T>(budget: Duration, mut f: impl FnMut() -> T) -> Duration {
    black_box(f());
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < budget || n < 3 {
        black_box(f());
        n += 1;
    }
    started.elapsed() / n
}

fn doc(n: u64) -> String {
    // ~10 statements, ~1 KB of Turtle: the load generator's shape.
    let mut d = String::from(
        "@prefix ex: <http://example.org/supply/> .\n@prefix prov: <http://www.w3.org/ns/prov#> .\n",
    );
    d.push_str(&format!(
        "<http://example.org/supply/r1/batch/{n}> a ex:ProductBatch, prov:Entity ;\n    \
         prov:wasGeneratedBy <http://example.org/supply/r1/production/{n}> ;\n    \
         prov:wasDerivedFrom <http://example.org/supply/r1/batch/{}> ;\n    \
         ex:lotNumber \"LOT-1-{n:08}\" ;\n    ex:quantityKg \"{}.5\"^^<http://www.w3.org/2001/XMLSchema#decimal> .\n\
         <http://example.org/supply/r1/production/{n}> a prov:Activity ;\n    \
         prov:wasAssociatedWith ex:agent{} ;\n    \
         prov:endedAtTime \"2026-11-22T10:00:00Z\"^^<http://www.w3.org/2001/XMLSchema#dateTime> ;\n    \
         prov:used <http://example.org/supply/r1/batch/{}> .\n",
        n.saturating_sub(3),
        100 + n % 900,
        n % 40,
        n.saturating_sub(3)
    ));
    d
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip_while(|a| a != "--txs")
        .nth(1)
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1000, 4000]);
    let authorities: Vec<Keypair> = (1..=3u8).map(|i| Keypair::from_secret([i; 32])).collect();
    let nodes: Vec<Keypair> = (11..=13u8).map(|i| Keypair::from_secret([i; 32])).collect();
    let genesis = Genesis {
        network_id: "bench".into(),
        authorities: authorities.iter().map(Keypair::public).collect(),
        block_interval_ms: 1000,
        governance: Default::default(),
    };
    let gh = genesis.hash();
    let budget = Duration::from_millis(1500);

    let body = |n: u64| TxBody {
        format: RdfFormat::Turtle,
        data: doc(n).into(),
        submitter: nodes[(n % 3) as usize].public(),
        client: None,
        timestamp_ms: 1_700_000_000_000 + n,
    };
    let one = Transaction::sign(body(1), &nodes[1], &gh);
    let bytes = one.encode();
    println!(
        "transaction ({} bytes encoded, {} bytes of Turtle):",
        bytes.len(),
        one.body.data.len()
    );
    let t = time(budget, || Transaction::sign(body(1), &nodes[1], &gh));
    println!(
        "  sign (accepting node)      {:>9.2} µs",
        t.as_secs_f64() * 1e6
    );
    let t = time(budget, || one.validate(&gh, usize::MAX));
    println!(
        "  verify envelope            {:>9.2} µs",
        t.as_secs_f64() * 1e6
    );
    let t = time(budget, || one.id());
    println!(
        "  id (encode + blake3)       {:>9.2} µs",
        t.as_secs_f64() * 1e6
    );
    let t = time(budget, || one.encode());
    println!(
        "  encode                     {:>9.2} µs",
        t.as_secs_f64() * 1e6
    );
    let t = time(budget, || Transaction::decode(&bytes));
    println!(
        "  decode (bounded)           {:>9.2} µs",
        t.as_secs_f64() * 1e6
    );

    for &n in &sizes {
        let txs: Vec<Transaction> = (0..n as u64)
            .map(|i| Transaction::sign(body(i), &nodes[(i % 3) as usize], &gh))
            .collect();
        let parent = genesis.block();
        let slot = 1;
        let leader = &authorities[(slot % 3) as usize];
        let block = Block::seal(&parent.header, slot, 1000, txs, leader, &gh);
        let encoded = block.encode();
        let limits = Limits {
            max_block_bytes: usize::MAX,
            max_block_txs: usize::MAX,
            max_tx_bytes: usize::MAX,
        };
        let ctx = ValidationContext {
            genesis_hash: gh,
            authorities: &genesis.authorities,
            interval_ms: 1000,
            now_ms: 1500,
            max_drift_ms: 500,
            limits,
        };
        assert!(validate_block(&block, &parent.header, &ctx).is_ok());
        println!(
            "block of {n} transactions ({:.2} MiB encoded):",
            encoded.len() as f64 / (1024.0 * 1024.0)
        );
        let per = |t: Duration| t.as_secs_f64() * 1e6 / n as f64;
        let t = time(budget, || validate_block(&block, &parent.header, &ctx));
        println!(
            "  validate (header, seal, tx_root, batch-verified tx signatures) {:>8.2} ms  ({:.2} µs/tx, {:.0} tx/s)",
            t.as_secs_f64() * 1e3,
            per(t),
            n as f64 / t.as_secs_f64()
        );
        // A block rebuilt from the pool: every envelope was verified on admission.
        let t = time(budget, || {
            validate_block_with(
                &block,
                &parent.header,
                &ctx,
                |_: &provchain_consensus::Hash| true,
            )
        });
        println!(
            "  validate, signatures verified in the pool already {:>8.2} ms  ({:.2} µs/tx)",
            t.as_secs_f64() * 1e3,
            per(t)
        );
        let compact_bytes = CompactBlock::of(&block, block.tx_ids(), &[]).encode();
        let t = time(budget, || {
            CompactBlock::of(&block, block.tx_ids(), &[]).encode()
        });
        let sig = authorities[0].sign(&compact_bytes);
        let verify = time(budget, || {
            authorities[0].public().verify(&compact_bytes, &sig)
        });
        println!(
            "  compact form ({:.1} KiB): ids + encode {:.2} ms, ed25519 verify {:.3} ms",
            compact_bytes.len() as f64 / 1024.0,
            t.as_secs_f64() * 1e3,
            verify.as_secs_f64() * 1e3
        );
        let t = time(budget, || block.encode());
        println!(
            "  encode (gossip)            {:>8.2} ms  ({:.0} MiB/s)",
            t.as_secs_f64() * 1e3,
            encoded.len() as f64 / t.as_secs_f64() / (1024.0 * 1024.0)
        );
        let t = time(budget, || Block::decode(&encoded));
        println!(
            "  decode (gossip, bounded)   {:>8.2} ms  ({:.0} MiB/s)",
            t.as_secs_f64() * 1e3,
            encoded.len() as f64 / t.as_secs_f64() / (1024.0 * 1024.0)
        );
        // Gossipsub's strict mode signs every message and every receiver verifies it: one
        // ed25519 signature over the whole encoded block per hop.
        let key = &authorities[0];
        let sig = key.sign(&encoded);
        let sign = time(budget, || key.sign(&encoded));
        let verify = time(budget, || key.public().verify(&encoded, &sig));
        println!(
            "  ed25519 over the encoding  {:>8.2} ms sign, {:.2} ms verify (gossip strict signing)",
            sign.as_secs_f64() * 1e3,
            verify.as_secs_f64() * 1e3
        );
        let t = time(budget, || block.tx_ids());
        println!(
            "  tx ids                     {:>8.2} ms  ({:.2} µs/tx)",
            t.as_secs_f64() * 1e3,
            per(t)
        );
        let ids = block.tx_ids();
        let t = time(budget, || merkle_root(&ids));
        println!(
            "  tx_root over the ids       {:>8.2} ms  ({:.2} µs/tx)",
            t.as_secs_f64() * 1e3,
            per(t)
        );
        let t = time(budget, || block.hash());
        println!(
            "  block hash                 {:>8.2} µs",
            t.as_secs_f64() * 1e6
        );
    }
}
