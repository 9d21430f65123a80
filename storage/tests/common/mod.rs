#![allow(dead_code)]

use provchain_consensus::{Block, Genesis, Keypair, RdfFormat, Transaction, TxBody};

pub fn key(n: u8) -> Keypair {
    Keypair::from_secret([n; 32])
}

pub fn genesis() -> Genesis {
    Genesis {
        network_id: "storage-test".into(),
        authorities: vec![key(1).public()],
        block_interval_ms: 1000,
        governance: Default::default(),
    }
}

pub fn tx(g: &Genesis, format: RdfFormat, data: &str, ts: u64) -> Transaction {
    tx_with_client(g, format, data, ts, None)
}

pub fn tx_with_client(
    g: &Genesis,
    format: RdfFormat,
    data: &str,
    ts: u64,
    client: Option<&str>,
) -> Transaction {
    Transaction::sign(
        TxBody {
            format,
            data: data.into(),
            submitter: key(2).public(),
            client: client.map(str::to_owned),
            timestamp_ms: ts,
        },
        &key(2),
        &g.hash(),
    )
}

/// Seals a block on `parent` with the authority key.
pub fn block(g: &Genesis, parent: &Block, txs: Vec<Transaction>) -> Block {
    let slot = parent.header.slot + 1;
    Block::seal(
        &parent.header,
        slot,
        1_700_000_000_000 + slot * 1000,
        txs,
        &key(1),
        &g.hash(),
    )
}

pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).expect("valid JSON")
}
