//! Builds a long final chain straight into a node's database, for benchmarks that need one
//! (fresh-node sync, startup time with a large dataset): real blocks sealed in turn by the
//! given authority keys in consecutive past slots, carrying the load generator's workload.
//!
//! ```text
//! cargo run --release -p provchain-storage --example build_chain -- \
//!     --db DIR/db --network-id ID --interval-ms 1000 --keys node1.key,node2.key,node3.key \
//!     --blocks 1000 [--txs 100] [--triples 10]
//! ```
//! The genesis is `{network id, the keys' public keys in the order given, interval}`, as
//! `provchaind` derives it from a config with those `authority_keys`. Transactions are
//! submitted by the first key. The chain ends a few slots before now, so nodes started on
//! it carry on from its head.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use provchain_consensus::{
    Block, Genesis, Keypair, RdfFormat, Transaction, TxBody, slot_at, slot_start_ms,
};
use provchain_storage::Store;

#[path = "../benches/workload.rs"]
mod workload;

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn key(path: &str) -> Result<Keypair, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)?;
    let bytes = hex::decode(text.trim())?;
    let secret: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("{path}: not a 32-byte hex key"))?;
    Ok(Keypair::from_secret(secret))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = arg("--db").ok_or("--db DIR is required")?;
    let network_id = arg("--network-id").ok_or("--network-id is required")?;
    let interval: u64 = arg("--interval-ms").map_or(Ok(1000), |v| v.parse())?;
    let keys: Vec<Keypair> = arg("--keys")
        .ok_or("--keys k1,k2,... is required")?
        .split(',')
        .map(key)
        .collect::<Result<_, _>>()?;
    let blocks: u64 = arg("--blocks").map_or(Ok(1000), |v| v.parse())?;
    let txs: u64 = arg("--txs").map_or(Ok(100), |v| v.parse())?;
    let triples: usize = arg("--triples").map_or(Ok(10), |v| v.parse())?;
    let genesis = Genesis {
        network_id,
        authorities: keys.iter().map(Keypair::public).collect(),
        block_interval_ms: interval,
        governance: Default::default(),
    };
    let gh = genesis.hash();
    let store = Store::open(std::path::Path::new(&db), &genesis)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let mut parent = store.final_head()?;
    let last_slot = slot_at(now, interval).saturating_sub(3);
    let first_slot = last_slot.saturating_sub(blocks).max(parent.slot + 1);
    let started = Instant::now();
    let mut batch = Vec::new();
    let mut n = parent.height * txs;
    for slot in first_slot..=last_slot.min(first_slot + blocks - 1) {
        let leader = &keys[(slot % keys.len() as u64) as usize];
        let body: Vec<Transaction> = (0..txs)
            .map(|_| {
                n += 1;
                Transaction::sign(
                    TxBody {
                        format: RdfFormat::Turtle,
                        data: workload::document(7, n, triples, RdfFormat::Turtle).into(),
                        submitter: keys[0].public(),
                        client: None,
                        timestamp_ms: slot_start_ms(slot, interval),
                    },
                    &keys[0],
                    &gh,
                )
            })
            .collect();
        let block = Block::seal(
            &parent,
            slot,
            slot_start_ms(slot, interval) + 1,
            body,
            leader,
            &gh,
        );
        parent = block.header.clone();
        batch.push(block);
        if batch.len() == 64 {
            store.commit_final(&batch)?;
            batch.clear();
            eprint!("\rheight {}", parent.height);
        }
    }
    store.commit_final(&batch)?;
    while store.merge_due() {
        store.merge_segments()?;
        std::thread::sleep(Duration::from_millis(1));
    }
    store.flush()?;
    eprintln!(
        "\rbuilt height {} ({} quads, {} data triples, {} segments) in {:.1} s",
        parent.height,
        store.triple_count(),
        store.data_triple_count(),
        store.storage_stats().segments,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
