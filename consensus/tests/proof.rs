//! Inclusion proofs verify offline, and every kind of tampering is caught with its reason.

use provchain_consensus::*;

fn setup() -> (Genesis, Block, Vec<Keypair>) {
    let keys: Vec<Keypair> = (1..=3u8).map(|i| Keypair::from_secret([i; 32])).collect();
    let genesis = Genesis {
        network_id: "proofs".into(),
        authorities: keys.iter().map(Keypair::public).collect(),
        block_interval_ms: 1000,
        governance: Default::default(),
    };
    let gh = genesis.hash();
    let txs: Vec<Transaction> = (0..5)
        .map(|i| {
            let body = TxBody {
                format: RdfFormat::Turtle,
                data: format!("<http://ex/item{i}> <http://ex/p> \"{i}\" .").into(),
                submitter: keys[0].public(),
                client: Some("alice".into()),
                timestamp_ms: 1_000 + i,
            };
            Transaction::sign(body, &keys[0], &gh)
        })
        .collect();
    let slot = 7; // leader: keys[7 % 3] = keys[1]
    let block = Block::seal(&genesis.block().header, slot, 7_100, txs, &keys[1], &gh);
    (genesis, block, keys)
}

#[test]
fn a_proof_verifies_and_states_its_claim() {
    let (genesis, block, keys) = setup();
    for i in 0..5 {
        let proof = InclusionProof::build(&genesis, &block, i).expect("proof");
        let claim = proof.verify().expect("valid proof");
        assert_eq!(claim.tx_id, block.transactions[i].id());
        assert_eq!(claim.proposer, keys[1].public());
        assert_eq!(claim.block_height, 1);
        assert_eq!(claim.client.as_deref(), Some("alice"));
        assert!(claim.data.contains(&format!("item{i}")));
        // Survives a JSON round trip (the form it travels in).
        let json = serde_json::to_string(&proof).expect("json");
        let back: InclusionProof = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.verify(), Ok(claim));
    }
    assert!(InclusionProof::build(&genesis, &block, 5).is_none());
}

fn flip_hex(s: &str, at: usize) -> String {
    let mut b = hex::decode(s).expect("hex");
    let i = at % b.len();
    b[i] ^= 0x01;
    hex::encode(b)
}

#[test]
fn every_tampering_fails_with_its_reason() {
    let (genesis, block, keys) = setup();
    let good = InclusionProof::build(&genesis, &block, 2).expect("proof");

    let mut p = good.clone();
    p.genesis.network_id = "other".into();
    assert_eq!(p.verify(), Err(ProofError::GenesisHash));

    let mut p = good.clone();
    p.tx_id.0[0] ^= 1;
    assert_eq!(p.verify(), Err(ProofError::TxId));

    // Any byte of the transaction encoding.
    let tx_len = good.transaction.len() / 2;
    for at in 0..tx_len {
        let mut p = good.clone();
        p.transaction = flip_hex(&good.transaction, at);
        assert!(
            p.verify().is_err(),
            "flipping transaction byte {at} went unnoticed"
        );
    }
    // Any byte of the header encoding.
    for at in 0..good.header.len() / 2 {
        let mut p = good.clone();
        p.header = flip_hex(&good.header, at);
        assert!(
            p.verify().is_err(),
            "flipping header byte {at} went unnoticed"
        );
    }
    let mut p = good.clone();
    p.merkle_path[0].sibling.0[3] ^= 1;
    assert_eq!(p.verify(), Err(ProofError::MerklePath));
    let mut p = good.clone();
    p.merkle_path.pop();
    assert_eq!(p.verify(), Err(ProofError::MerklePath));

    let mut p = good.clone();
    p.seal.0[10] ^= 1;
    assert_eq!(p.verify(), Err(ProofError::Seal));

    let mut p = good.clone();
    p.version = 9;
    assert_eq!(p.verify(), Err(ProofError::Version(9)));

    // A block sealed by a non-authority, or by the wrong authority for its slot.
    let outsider = Keypair::from_secret([9; 32]);
    let forged = Block::seal(
        &genesis.block().header,
        7,
        7_100,
        block.transactions.clone(),
        &outsider,
        &genesis.hash(),
    );
    let p = InclusionProof::build(&genesis, &forged, 0).expect("proof");
    assert_eq!(p.verify(), Err(ProofError::NotAuthority(outsider.public())));
    let wrong = Block::seal(
        &genesis.block().header,
        7,
        7_100,
        block.transactions.clone(),
        &keys[0],
        &genesis.hash(),
    );
    let p = InclusionProof::build(&genesis, &wrong, 0).expect("proof");
    assert!(matches!(
        p.verify(),
        Err(ProofError::WrongLeader { slot: 7, .. })
    ));
}
