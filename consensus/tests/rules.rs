//! Validation rules, encoding and fork choice / finality on hand-built block trees.

use provchain_consensus::codec::{Decode, DecodeError, Encode};
use provchain_consensus::*;

const INTERVAL: u64 = 1_000;

struct Net {
    genesis: Genesis,
    keys: Vec<Keypair>,
}

impl Net {
    fn new(n: u8) -> Self {
        let keys: Vec<Keypair> = (1..=n).map(|i| Keypair::from_secret([i; 32])).collect();
        let genesis = Genesis {
            network_id: "test".into(),
            authorities: keys.iter().map(Keypair::public).collect(),
            block_interval_ms: INTERVAL,
            governance: Default::default(),
        };
        Self { genesis, keys }
    }
    fn gh(&self) -> Hash {
        self.genesis.hash()
    }
    fn key_for_slot(&self, slot: u64) -> &Keypair {
        &self.keys[(slot % self.keys.len() as u64) as usize]
    }
    fn tx(&self, data: &str) -> Transaction {
        let body = TxBody {
            format: RdfFormat::NTriples,
            data: data.into(),
            submitter: self.keys[0].public(),
            client: Some("alice".into()),
            timestamp_ms: 42,
        };
        Transaction::sign(body, &self.keys[0], &self.gh())
    }
    /// A valid block on `parent` in `slot`, sealed by that slot's leader.
    fn block(&self, parent: &BlockHeader, slot: u64, txs: Vec<Transaction>) -> Block {
        Block::seal(
            parent,
            slot,
            slot * INTERVAL + 10,
            txs,
            self.key_for_slot(slot),
            &self.gh(),
        )
    }
    fn ctx(&self, now_ms: u64) -> ValidationContext<'_> {
        ValidationContext {
            genesis_hash: self.gh(),
            authorities: &self.genesis.authorities,
            interval_ms: INTERVAL,
            now_ms,
            max_drift_ms: 500,
            limits: Limits::default(),
        }
    }
}

#[test]
fn a_valid_block_passes() {
    let net = Net::new(3);
    let g = net.genesis.block().header;
    let b = net.block(
        &g,
        10,
        vec![net.tx("<a> <b> <c> ."), net.tx("<a> <b> <d> .")],
    );
    assert_eq!(validate_block(&b, &g, &net.ctx(10_500)), Ok(()));
    // A block rebuilt from its compact form: the ids checked against its header are used
    // as they are.
    let ctx = net.ctx(10_500);
    let ids = b.tx_ids();
    let checked = CompactBlock::of(&b, ids.clone(), &[])
        .check(&net.gh())
        .expect("the compact form of a sealed block checks");
    assert_eq!(checked.ids(), &ids[..]);
    assert_eq!(
        validate_block_with_ids(&b, &g, &ctx, |_| false, Some(checked.clone())),
        Ok(ids.clone())
    );
    // Every rule besides seal and tx_root still applies: the rebuilt transactions' signatures
    // are verified unless the pool vouches for them.
    let mut forged_tx = b.clone();
    forged_tx.transactions[1].signature = forged_tx.transactions[0].signature;
    assert!(matches!(
        validate_block_with_ids(&forged_tx, &g, &ctx, |_| false, Some(checked.clone())),
        Err(BlockError::InvalidTransaction { index: 1, .. })
    ));
    // Ids checked against another header do not stand for this block's: it is validated in
    // full, and a block whose seal or tx_root is wrong fails as without them.
    let other = net.block(
        &g,
        10,
        vec![net.tx("<a> <b> <e> ."), net.tx("<a> <b> <f> .")],
    );
    let mut mixed = other.clone();
    mixed.transactions = b.transactions.clone();
    assert_eq!(
        validate_block_with_ids(&mixed, &g, &ctx, |_| false, Some(checked.clone())),
        Err(BlockError::TxRootMismatch)
    );
    let mut resealed = b.clone();
    resealed.header.timestamp_ms += 1;
    assert_eq!(
        validate_block_with_ids(&resealed, &g, &ctx, |_| false, Some(checked)),
        Err(BlockError::BadSignature)
    );
}

#[test]
fn each_rule_rejects_what_it_should() {
    let net = Net::new(3);
    let g = net.genesis.block().header;
    let ctx = net.ctx(100_000);
    let good = net.block(&g, 10, vec![net.tx("<a> <b> <c> .")]);
    let b1 = net.block(&g, 10, vec![]);

    // Unknown parent: the block names a different parent than the one given.
    let other = net.block(&b1.header, 11, vec![]);
    assert!(matches!(
        validate_block(&other, &g, &ctx),
        Err(BlockError::UnknownParent(_))
    ));

    // Height must be parent + 1 (re-sealed so only the height is wrong).
    let mut h = good.header.clone();
    h.height = 5;
    let bad = reseal(&net, h, good.transactions.clone(), 10);
    assert_eq!(
        validate_block(&bad, &g, &ctx),
        Err(BlockError::BadHeight {
            expected: 1,
            got: 5
        })
    );

    // Slot must increase.
    let child = net.block(&b1.header, 10, vec![]);
    assert_eq!(
        validate_block(&child, &b1.header, &ctx),
        Err(BlockError::SlotNotAfterParent {
            slot: 10,
            parent_slot: 10
        })
    );

    // Proposer must be the slot leader.
    let wrong = Block::seal(&g, 10, 10_010, vec![], &net.keys[2], &net.gh());
    assert!(matches!(
        validate_block(&wrong, &g, &ctx),
        Err(BlockError::WrongProposer { slot: 10, .. })
    ));

    // Seal must verify.
    let mut forged = good.clone();
    forged.signature.0[0] ^= 1;
    assert_eq!(
        validate_block(&forged, &g, &ctx),
        Err(BlockError::BadSignature)
    );

    // A seal made for another network does not verify here.
    let other_net = Net {
        genesis: Genesis {
            network_id: "other".into(),
            ..net.genesis.clone()
        },
        keys: net.keys.clone(),
    };
    let replayed = Block::seal(
        &g,
        10,
        10_010,
        vec![],
        net.key_for_slot(10),
        &other_net.gh(),
    );
    assert_eq!(
        validate_block(&replayed, &g, &ctx),
        Err(BlockError::BadSignature)
    );

    // Timestamp must lie in the slot.
    let mut ts = good.header.clone();
    ts.timestamp_ms = 9_999;
    let bad = reseal(&net, ts, good.transactions.clone(), 10);
    assert!(matches!(
        validate_block(&bad, &g, &ctx),
        Err(BlockError::TimestampOutsideSlot { .. })
    ));

    // tx_root must match.
    let mut swapped = good.clone();
    swapped.transactions = vec![net.tx("<x> <y> <z> .")];
    assert_eq!(
        validate_block(&swapped, &g, &ctx),
        Err(BlockError::TxRootMismatch)
    );

    // Every transaction envelope must verify.
    let mut tx = net.tx("<a> <b> <c> .");
    tx.signature.0[5] ^= 0xff;
    let b = net.block(&g, 10, vec![net.tx("<ok> <ok> <ok> ."), tx.clone()]);
    assert!(matches!(
        validate_block(&b, &g, &ctx),
        Err(BlockError::InvalidTransaction {
            index: 1,
            source: TxError::BadSignature(_)
        })
    ));
    // A validator that verified some transactions before (its pool) skips only their
    // signatures: the bad one is still found, under its own index in the block.
    let first = b.transactions[0].id();
    assert!(matches!(
        validate_block_with(&b, &g, &ctx, |id| *id == first),
        Err(BlockError::InvalidTransaction {
            index: 1,
            source: TxError::BadSignature(_)
        })
    ));
    let b = net.block(&g, 10, vec![tx.clone(), net.tx("<ok> <ok> <ok> .")]);
    assert!(matches!(
        validate_block_with(&b, &g, &ctx, |id| *id == first),
        Err(BlockError::InvalidTransaction {
            index: 0,
            source: TxError::BadSignature(_)
        })
    ));
    // What the validator vouches for is taken as verified (ids commit to the signature, so
    // in a node this set only ever holds envelopes it checked itself).
    let bad_id = tx.id();
    assert_eq!(
        validate_block_with(&b, &g, &ctx, |id| *id == bad_id),
        Ok(b.tx_ids())
    );

    // No duplicates.
    let t = net.tx("<a> <b> <c> .");
    let b = net.block(&g, 10, vec![t.clone(), t]);
    assert!(matches!(
        validate_block(&b, &g, &ctx),
        Err(BlockError::DuplicateTransaction(_))
    ));

    // Limits.
    let tight = ValidationContext {
        limits: Limits {
            max_block_txs: 1,
            ..Limits::default()
        },
        ..net.ctx(100_000)
    };
    let b = net.block(
        &g,
        10,
        vec![net.tx("<a> <b> <c> ."), net.tx("<a> <b> <d> .")],
    );
    assert_eq!(
        validate_block(&b, &g, &tight),
        Err(BlockError::TooManyTransactions { count: 2, max: 1 })
    );
    let tight = ValidationContext {
        limits: Limits {
            max_block_bytes: 200,
            ..Limits::default()
        },
        ..net.ctx(100_000)
    };
    assert!(matches!(
        validate_block(&b, &g, &tight),
        Err(BlockError::TooLarge { .. })
    ));
    let tight = ValidationContext {
        limits: Limits {
            max_tx_bytes: 5,
            ..Limits::default()
        },
        ..net.ctx(100_000)
    };
    assert!(matches!(
        validate_block(&b, &g, &tight),
        Err(BlockError::InvalidTransaction {
            index: 0,
            source: TxError::TooLarge { .. }
        })
    ));
}

fn reseal(net: &Net, header: BlockHeader, txs: Vec<Transaction>, slot: u64) -> Block {
    let signature = net
        .key_for_slot(slot)
        .sign(&header.seal_message(&net.gh()).0);
    Block {
        header,
        transactions: txs,
        governance: Vec::new(),
        signature,
    }
}

#[test]
fn future_slots_are_held_or_rejected() {
    let net = Net::new(3);
    let g = net.genesis.block().header;
    let b = net.block(&g, 10, vec![]);
    // Slot 10 starts at 10_000. Within the drift allowance: accepted.
    assert_eq!(validate_block(&b, &g, &net.ctx(9_600)), Ok(()));
    // Slightly early: held until it is within the allowance.
    assert_eq!(
        validate_block(&b, &g, &net.ctx(9_000)),
        Err(BlockError::Early {
            slot: 10,
            early_ms: 1_000,
            ready_at_ms: 9_500
        })
    );
    // Far in the future: rejected.
    assert!(matches!(
        validate_block(&b, &g, &net.ctx(5_000)),
        Err(BlockError::FutureSlot { slot: 10, .. })
    ));
}

#[test]
fn encodings_round_trip() {
    let net = Net::new(3);
    let g = net.genesis.block().header;
    let b = net.block(
        &g,
        10,
        vec![net.tx("<a> <b> \"é\" ."), net.tx("<a> <b> <c> .")],
    );
    let bytes = b.encode();
    assert_eq!(bytes.len(), b.encoded_len());
    assert_eq!(Block::decode(&bytes), Ok(b.clone()));
    assert_eq!(Block::decode(&bytes).map(|x| x.hash()), Ok(b.hash()));
    assert_eq!(
        Genesis::decode(&net.genesis.encode()),
        Ok(net.genesis.clone())
    );
    let tx = &b.transactions[0];
    assert_eq!(Transaction::decode(&tx.encode()).as_ref(), Ok(tx));
    // Trailing bytes are refused: every value has exactly one encoding.
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(Block::decode(&long), Err(DecodeError::TrailingBytes(1)));
}

#[test]
fn truncated_and_oversized_inputs_are_errors() {
    let net = Net::new(3);
    let g = net.genesis.block().header;
    let b = net.block(&g, 10, vec![net.tx("<a> <b> <c> .")]);
    let bytes = b.encode();
    for cut in 0..bytes.len() {
        assert!(
            Block::decode(&bytes[..cut]).is_err(),
            "prefix of {cut} bytes decoded"
        );
    }
    // A transaction count far beyond what the input holds is refused before allocating.
    let mut huge = g.encode();
    huge.extend_from_slice(&(u32::MAX).to_le_bytes());
    assert!(matches!(
        Block::decode(&huge),
        Err(DecodeError::TooLong { .. })
    ));
    let mut many = g.encode();
    many.extend_from_slice(&50_000u32.to_le_bytes());
    assert!(matches!(
        Block::decode(&many),
        Err(DecodeError::Truncated { .. })
    ));
    // A data length beyond the bound is refused.
    let mut tx = vec![1u8, 1];
    tx.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Transaction::decode(&tx),
        Err(DecodeError::TooLong { .. })
    ));
    assert!(matches!(
        Transaction::decode(&[9]),
        Err(DecodeError::UnsupportedVersion { .. })
    ));
}

#[test]
fn compact_blocks_round_trip_and_rebuild_the_block() {
    let net = Net::new(3);
    let g = net.genesis.block().header;
    let txs = vec![net.tx("<a> <b> \"é\" ."), net.tx("<a> <b> <c> .")];
    let b = net.block(&g, 10, txs.clone());
    let c = CompactBlock::of(&b, b.tx_ids(), &[]);
    assert_eq!(c.hash(), b.hash());
    assert!(c.ids_match_header());
    assert!(c.verify_seal(&net.gh()));
    let bytes = c.encode();
    // The ids replace the transactions: 32 bytes each instead of the whole envelope.
    assert!(bytes.len() < b.encoded_len());
    assert_eq!(CompactBlock::decode(&bytes).as_ref(), Ok(&c));
    assert_eq!(c.clone().into_block(txs.clone()), b);
    // Transactions carried in full keep their positions.
    let p = CompactBlock::of(&b, b.tx_ids(), &[1]);
    assert_eq!(p.prefilled, vec![(1, txs[1].clone())]);
    let pbytes = p.encode();
    assert_eq!(CompactBlock::decode(&pbytes).as_ref(), Ok(&p));
    for cut in 0..pbytes.len() {
        assert!(CompactBlock::decode(&pbytes[..cut]).is_err());
    }
    // Positions out of range or not increasing have no encoding.
    for bad in [
        vec![(2u32, txs[0].clone())],
        vec![(1, txs[0].clone()), (0, txs[1].clone())],
    ] {
        let q = CompactBlock {
            prefilled: bad,
            ..p.clone()
        };
        assert!(matches!(
            CompactBlock::decode(&q.encode()),
            Err(DecodeError::OutOfOrder { .. })
        ));
    }
    // Ids that are not the header's, in another order or with one missing, are caught
    // before any lookup.
    let mut swapped = c.clone();
    swapped.tx_ids.reverse();
    assert!(!swapped.ids_match_header());
    assert_eq!(swapped.check(&net.gh()), Err(BlockError::TxRootMismatch));
    let mut short = c.clone();
    short.tx_ids.pop();
    assert!(!short.ids_match_header());
    assert_eq!(short.check(&net.gh()), Err(BlockError::TxRootMismatch));
    let mut forged = c.clone();
    forged.header.timestamp_ms += 1;
    assert!(!forged.verify_seal(&net.gh()));
    assert_eq!(forged.check(&net.gh()), Err(BlockError::BadSignature));
    assert_eq!(c.check(&net.gh()).map(|k| k.header()), Ok(b.hash()));
    for cut in 0..bytes.len() {
        assert!(
            CompactBlock::decode(&bytes[..cut]).is_err(),
            "prefix of {cut} bytes decoded"
        );
    }
    // A count of ids beyond what the input holds is refused before allocating.
    let mut many = g.encode();
    many.extend_from_slice(&50_000u32.to_le_bytes());
    assert!(matches!(
        CompactBlock::decode(&many),
        Err(DecodeError::Truncated { .. })
    ));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Block::decode(&bytes);
            let _ = Transaction::decode(&bytes);
            let _ = Genesis::decode(&bytes);
            let _ = BlockHeader::decode(&bytes);
            let _ = CompactBlock::decode(&bytes);
        }

        #[test]
        fn transactions_round_trip(data in ".{1,200}", client in proptest::option::of("[a-z]{0,20}"), ts in any::<u64>()) {
            let key = Keypair::from_secret([7; 32]);
            let body = TxBody { format: RdfFormat::Turtle, data: data.into(), submitter: key.public(), client, timestamp_ms: ts };
            let tx = Transaction::sign(body, &key, &Hash::default());
            let back = Transaction::decode(&tx.encode()).expect("round trip");
            prop_assert_eq!(back.id(), tx.id());
            prop_assert_eq!(back, tx);
        }

        #[test]
        fn mutated_blocks_never_panic(flip in 0usize..400, bit in 0u8..8) {
            let net = Net::new(3);
            let g = net.genesis.block().header;
            let b = net.block(&g, 10, vec![net.tx("<a> <b> <c> .")]);
            let mut bytes = b.encode();
            let i = flip % bytes.len();
            bytes[i] ^= 1 << bit;
            if let Ok(m) = Block::decode(&bytes) {
                // A decodable mutation is a different block and must not validate.
                prop_assert!(validate_block(&m, &g, &net.ctx(100_000)).is_err());
            }
        }
    }
}

// ---- fork choice and finality ----

/// Builds a block by `authority` (index) in `slot` on `parent`, ignoring leader rules: the tree
/// only tracks structure.
fn child(net: &Net, parent: &BlockHeader, slot: u64, authority: usize) -> BlockHeader {
    Block::seal(
        parent,
        slot,
        slot * INTERVAL,
        vec![],
        &net.keys[authority],
        &net.gh(),
    )
    .header
}

fn threshold(net: &Net) -> impl Fn(u64) -> usize + '_ {
    move |_| finality_threshold(net.genesis.authorities.len())
}

#[test]
fn single_authority_finalizes_every_block_at_once() {
    let net = Net::new(1);
    let g = net.genesis.block().header;
    let mut tree = ForkTree::new(g.clone());
    let b1 = child(&net, &g, 1, 0);
    assert_eq!(tree.insert(b1.clone()), Ok(true));
    let f = tree.finalize(threshold(&net));
    assert_eq!(f.blocks.len(), 1);
    assert_eq!(tree.final_head().0, b1.hash());
    assert!(tree.is_empty());
}

#[test]
fn three_authorities_need_two_distinct_proposers() {
    let net = Net::new(3);
    let g = net.genesis.block().header;
    let mut tree = ForkTree::new(g.clone());
    let b1 = child(&net, &g, 1, 1);
    tree.insert(b1.clone()).expect("insert");
    assert!(
        tree.finalize(threshold(&net)).blocks.is_empty(),
        "one proposer is not a majority"
    );
    let b2 = child(&net, &b1, 2, 2);
    tree.insert(b2.clone()).expect("insert");
    let f = tree.finalize(threshold(&net));
    assert_eq!(
        f.blocks.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![b1.hash()]
    );
    assert_eq!(tree.final_head().0, b1.hash());
    assert_eq!(tree.best_head().0, b2.hash());
}

#[test]
fn four_authorities_need_three() {
    let net = Net::new(4);
    let g = net.genesis.block().header;
    let mut tree = ForkTree::new(g.clone());
    let b1 = child(&net, &g, 1, 1);
    let b2 = child(&net, &b1, 2, 2);
    let b3 = child(&net, &b2, 3, 1); // repeated proposer does not count twice
    for b in [&b1, &b2, &b3] {
        tree.insert(b.clone()).expect("insert");
    }
    assert!(tree.finalize(threshold(&net)).blocks.is_empty());
    let b4 = child(&net, &b3, 4, 3);
    tree.insert(b4.clone()).expect("insert");
    let f = tree.finalize(threshold(&net));
    // {3,1,2} distinct from b4 down to b2: b2 and its ancestor b1 are final.
    assert_eq!(
        f.blocks.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![b1.hash(), b2.hash()]
    );
}

#[test]
fn longest_chain_wins_and_ties_break_on_lowest_hash() {
    let net = Net::new(3);
    let g = net.genesis.block().header;
    let mut tree = ForkTree::new(g.clone());
    let a = child(&net, &g, 1, 0);
    let b = child(&net, &g, 2, 0);
    tree.insert(a.clone()).expect("insert");
    tree.insert(b.clone()).expect("insert");
    let lowest = a.hash().min(b.hash());
    assert_eq!(tree.best_head().0, lowest);
    // Inserting in the other order picks the same head.
    let mut tree2 = ForkTree::new(g.clone());
    tree2.insert(b.clone()).expect("insert");
    tree2.insert(a.clone()).expect("insert");
    assert_eq!(tree2.best_head().0, lowest);
    // A longer branch wins regardless of hash.
    let higher = if lowest == a.hash() { &b } else { &a };
    let c = child(&net, higher, 3, 1);
    assert_eq!(tree.insert(c.clone()), Ok(true));
    assert_eq!(tree.best_head().0, c.hash());
    let route = tree.route(&lowest, &c.hash());
    assert_eq!(route.retracted, vec![lowest]);
    assert_eq!(route.enacted, vec![higher.hash(), c.hash()]);
}

#[test]
fn an_authority_keeps_to_its_own_block_on_a_tie() {
    // Authority 0 sealed `mine`; a competing block of the same height with a lower hash
    // arrives. Switching would let authority 0 seal on both branches, so its blocks would count
    // towards finality of both: it keeps its own until the other branch is strictly longer.
    let net = Net::new(3);
    let g = net.genesis.block().header;
    let mine = child(&net, &g, 4, 0);
    // A block of authority 2 at `slot` on `parent` whose hash is below `than`'s.
    let lower = |parent: &BlockHeader, slot: u64, than: &BlockHeader| {
        (0..1_000u64)
            .map(|i| {
                Block::seal(
                    parent,
                    slot,
                    slot * INTERVAL + i,
                    vec![],
                    &net.keys[2],
                    &net.gh(),
                )
                .header
            })
            .find(|t| t.hash() < than.hash())
            .expect("a competing block with a lower hash")
    };
    let theirs = lower(&g, 5, &mine);
    let authority = |blocks: &[&BlockHeader]| {
        let mut tree = ForkTree::new(g.clone());
        tree.set_own_key(net.keys[0].public());
        for b in blocks {
            tree.insert((*b).clone()).expect("insert");
        }
        tree
    };
    let mut tree = authority(&[&mine]);
    assert_eq!(tree.insert(theirs.clone()), Ok(false));
    assert_eq!(
        tree.best_head().0,
        mine.hash(),
        "left its own block on a tie"
    );
    // Restarted, it learns the competing block first and its own again afterwards (from its
    // pending store or a peer): its own takes the head back.
    let mut restarted = authority(&[&theirs]);
    assert_eq!(restarted.best_head().0, theirs.hash());
    assert_eq!(restarted.insert(mine.clone()), Ok(true));
    assert_eq!(
        restarted.best_head().0,
        mine.hash(),
        "own block not taken back"
    );
    // Built on by others, the branch holding its block still wins ties at the new height.
    let on_mine = child(&net, &mine, 7, 1);
    let on_theirs = lower(&theirs, 8, &on_mine);
    for tree in [&mut tree, &mut restarted] {
        assert_eq!(tree.insert(on_mine.clone()), Ok(true));
        assert_eq!(tree.insert(on_theirs.clone()), Ok(false));
        assert_eq!(tree.best_head().0, on_mine.hash());
    }
    // A node that sealed neither follows the lowest hash.
    let mut other = ForkTree::new(g.clone());
    other.insert(mine.clone()).expect("insert");
    other.insert(theirs.clone()).expect("insert");
    assert_eq!(other.best_head().0, mine.hash().min(theirs.hash()));
    // Once the other branch is strictly longer, the authority follows it.
    let longer = child(&net, &on_theirs, 20, 1);
    assert_eq!(tree.insert(longer.clone()), Ok(true));
    assert_eq!(tree.best_head().0, longer.hash());
}

#[test]
fn a_minority_fork_never_finalizes_and_is_pruned() {
    let net = Net::new(3);
    let g = net.genesis.block().header;
    let mut tree = ForkTree::new(g.clone());
    // Authority 0 is partitioned and seals alone in its slots 3, 6, 9, ...
    let mut minority = g.clone();
    for slot in [3, 6, 9, 12] {
        minority = child(&net, &minority, slot, 0);
        tree.insert(minority.clone()).expect("insert");
        assert!(
            tree.finalize(threshold(&net)).blocks.is_empty(),
            "a lone authority finalized"
        );
    }
    // The majority (1 and 2) seals in their slots and overtakes.
    let mut majority = g.clone();
    let mut finalized = Vec::new();
    for slot in [1, 2, 4, 5, 7] {
        majority = child(&net, &majority, slot, (slot % 3) as usize);
        tree.insert(majority.clone()).expect("insert");
        finalized.extend(tree.finalize(threshold(&net)).blocks);
    }
    assert_eq!(tree.best_head().0, majority.hash());
    assert_eq!(finalized.len(), 4);
    // The minority branch was pruned and can no longer be extended.
    assert!(!tree.contains(&minority.hash()));
    let late = child(&net, &minority, 15, 0);
    assert!(matches!(
        tree.insert(late),
        Err(ForkError::UnknownParent(_))
    ));
}

#[test]
fn known_and_orphan_blocks_are_refused() {
    let net = Net::new(3);
    let g = net.genesis.block().header;
    let mut tree = ForkTree::new(g.clone());
    let a = child(&net, &g, 1, 0);
    tree.insert(a.clone()).expect("insert");
    assert_eq!(tree.insert(a.clone()), Err(ForkError::Known(a.hash())));
    let orphan_parent = child(&net, &g, 2, 1);
    let orphan = child(&net, &orphan_parent, 3, 2);
    assert_eq!(
        tree.insert(orphan),
        Err(ForkError::UnknownParent(orphan_parent.hash()))
    );
}

#[test]
fn equivocation_is_detected() {
    let net = Net::new(3);
    let g = net.genesis.block().header;
    let mut reg = SlotRegistry::default();
    let a = net.block(&g, 3, vec![]);
    let b = net.block(&g, 3, vec![net.tx("<a> <b> <c> .")]);
    assert_eq!(reg.observe(&a.header), None);
    assert_eq!(
        reg.observe(&a.header),
        None,
        "the same block twice is not equivocation"
    );
    let e = reg.observe(&b.header).expect("equivocation");
    assert_eq!((e.slot, e.first, e.second), (3, a.hash(), b.hash()));
    reg.prune_below(4);
    assert_eq!(reg.observe(&b.header), None);
}

#[test]
fn governance_items_travel_in_version_2_blocks_only() {
    let net = Net::new(3);
    let g = net.genesis.block().header;
    let plain = net.block(&g, 10, vec![net.tx("<a:s> <a:p> <a:o> .")]);
    assert_eq!(plain.header.version, 1);
    assert_eq!(plain.header.gov_root, None);
    assert_eq!(plain.encode().len(), plain.encoded_len());

    let proposal = Proposal::sign(
        GovernanceAction::Add(Keypair::from_secret([9; 32]).public()),
        1,
        &net.keys[0],
        &net.gh(),
    );
    let vote = Vote::sign(proposal.id(), &net.keys[1], &net.gh());
    let items: Vec<GovernanceItem> = vec![proposal.into(), vote.into()];
    let b = Block::seal_with_governance(
        &g,
        10,
        10 * INTERVAL + 10,
        vec![net.tx("<a:s> <a:p> <a:o> .")],
        items.clone(),
        net.key_for_slot(10),
        &net.gh(),
    );
    assert_eq!(b.header.version, 2);
    assert!(b.header.gov_root.is_some());
    let bytes = b.encode();
    assert_eq!(bytes.len(), b.encoded_len());
    let back = Block::decode(&bytes).expect("decodes");
    assert_eq!(back, b);
    assert_eq!(back.governance, items);
    assert_eq!(validate_block(&b, &g, &net.ctx(10_500)), Ok(()));
    // The header commits to the items: the same block without them is another hash.
    assert_ne!(b.hash(), plain.hash());

    // An item swapped after sealing breaks gov_root.
    let mut swapped = b.clone();
    swapped.governance.reverse();
    assert_eq!(
        validate_block(&swapped, &g, &net.ctx(10_500)),
        Err(BlockError::GovRootMismatch)
    );
    // Items dropped from a version-2 block, or added to a version-1 block.
    let mut dropped = b.clone();
    dropped.governance.clear();
    assert_eq!(
        validate_block(&dropped, &g, &net.ctx(10_500)),
        Err(BlockError::GovRootMismatch)
    );
    let mut smuggled = plain.clone();
    smuggled.governance = items.clone();
    assert_eq!(
        validate_block(&smuggled, &g, &net.ctx(10_500)),
        Err(BlockError::GovRootMismatch)
    );
    // A vote whose signature was tampered with, sealed into an otherwise valid block.
    let mut bad_vote = Vote::sign(proposal_id(&items), &net.keys[1], &net.gh());
    bad_vote.signature.0[5] ^= 1;
    let forged = Block::seal_with_governance(
        &g,
        10,
        10 * INTERVAL + 10,
        vec![],
        vec![bad_vote.into()],
        net.key_for_slot(10),
        &net.gh(),
    );
    assert_eq!(
        validate_block(&forged, &g, &net.ctx(10_500)),
        Err(BlockError::BadGovernanceSignature { index: 0 })
    );
    // A version-2 header without gov_root (or the reverse) is not a valid header.
    let mut header = b.header.clone();
    header.gov_root = None;
    let inconsistent = reseal(&net, header, b.transactions.clone(), 10);
    assert_eq!(
        validate_block(&inconsistent, &g, &net.ctx(10_500)),
        Err(BlockError::UnsupportedVersion(2))
    );
    // Truncated governance sections are decode errors, never panics.
    for cut in [bytes.len() - 65, bytes.len() - 100, bytes.len() - 200] {
        assert!(Block::decode(&bytes[..cut]).is_err());
    }
}

fn proposal_id(items: &[GovernanceItem]) -> Hash {
    match &items[0] {
        GovernanceItem::Proposal(p) => p.id(),
        GovernanceItem::Vote(v) => v.proposal,
    }
}

#[test]
fn members_added_later_do_not_vouch_for_earlier_blocks() {
    // Keys 0..3 are {A, B, C} until height 4 and {A, B, C, D, E} from height 4 on.
    let net = Net::new(5);
    let g = net.genesis.block().header;
    let old: std::collections::HashSet<PublicKey> =
        net.keys[..3].iter().map(Keypair::public).collect();
    let new: std::collections::HashSet<PublicKey> = net.keys.iter().map(Keypair::public).collect();
    let quorum = |h: u64, proposers: &std::collections::HashSet<PublicKey>| {
        let set = if h < 4 { &old } else { &new };
        proposers.iter().filter(|p| set.contains(p)).count() >= finality_threshold(set.len())
    };
    let mut tree = ForkTree::new(g.clone());
    // A seals 1..=3, then the new members D and E seal 4 and 5.
    let b1 = child(&net, &g, 1, 0);
    let b2 = child(&net, &b1, 2, 0);
    let b3 = child(&net, &b2, 3, 0);
    let b4 = child(&net, &b3, 4, 3);
    let b5 = child(&net, &b4, 5, 4);
    for b in [&b1, &b2, &b3, &b4, &b5] {
        tree.insert(b.clone()).expect("insert");
    }
    // Counting every distinct proposer, {A, D, E} would make block 3 final (2 of 3 needed).
    assert!(tree.clone().finalize(|_| 2).blocks.len() >= 3);
    // With membership per height: D and E do not count for heights below 4, and three of the
    // five are needed from 4 on.
    assert!(tree.finalize_by(quorum).blocks.is_empty());
    // B seals 6: {A, B, D, E} — block 4 has D, E, B (3 of 5) on top: final, with its ancestors.
    let b6 = child(&net, &b5, 6, 1);
    tree.insert(b6).expect("insert");
    let f = tree.finalize_by(quorum);
    assert_eq!(f.blocks.len(), 4);
    assert_eq!(tree.final_head().0, b4.hash());
}

#[test]
fn genesis_encodes_governance_parameters_only_when_not_the_defaults() {
    let net = Net::new(3);
    let plain = net.genesis.clone();
    let bytes = plain.encode();
    assert_eq!(bytes[0], 1);
    let custom = Genesis {
        governance: GovernanceParams {
            epoch_length: 4,
            proposal_ttl: 20,
        },
        ..plain.clone()
    };
    let custom_bytes = custom.encode();
    assert_eq!(custom_bytes[0], 2);
    assert_ne!(custom.hash(), plain.hash());
    assert_eq!(Genesis::decode(&custom_bytes).expect("decodes"), custom);
    // A version-2 encoding of the default parameters is not canonical and is refused.
    let mut forged = custom_bytes.clone();
    forged[0] = 2;
    let n = forged.len();
    forged[n - 16..n - 8].copy_from_slice(&10u64.to_le_bytes());
    forged[n - 8..].copy_from_slice(&1000u64.to_le_bytes());
    assert!(Genesis::decode(&forged).is_err());
    // Parameters beyond the bound are refused when a history is built from them.
    let huge = GovernanceParams {
        epoch_length: 10,
        proposal_ttl: u64::MAX,
    };
    assert!(AuthorityHistory::from_genesis(&plain, huge).is_err());
}
