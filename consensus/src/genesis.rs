//! Genesis: the parameters that define a network. Its hash identifies the network everywhere
//! (protocol names, gossip topics, signatures), so nodes of different networks never mix data.

use serde::{Deserialize, Serialize};

use crate::block::{Block, BlockHeader, HEADER_VERSION};
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{Hash, PublicKey, Signature, domain};
use crate::governance::GovernanceParams;
use crate::merkle::merkle_root;

/// Upper bound on the number of authorities, so decoding a genesis is bounded.
pub const MAX_AUTHORITIES: usize = 1024;
const GENESIS_VERSION: u8 = 1;
/// A genesis whose governance parameters differ from the defaults; it encodes them.
const GENESIS_VERSION_GOVERNANCE: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub network_id: String,
    /// Ordered: slot `s` belongs to `authorities[s % n]`.
    pub authorities: Vec<PublicKey>,
    pub block_interval_ms: u64,
    /// How authority-set changes are scheduled. Part of the network's identity only when not the
    /// defaults, so networks created before governance keep their genesis hash.
    #[serde(default)]
    pub governance: GovernanceParams,
}

impl Genesis {
    pub fn hash(&self) -> Hash {
        domain::GENESIS.hash(&[&self.encode()])
    }

    /// The block at height 0. It carries no transactions and no signature; its parent hash is the
    /// genesis hash, so every chain is bound to its network.
    pub fn block(&self) -> Block {
        Block {
            header: BlockHeader {
                version: HEADER_VERSION,
                height: 0,
                parent_hash: self.hash(),
                slot: 0,
                timestamp_ms: 0,
                proposer: PublicKey::default(),
                tx_root: merkle_root(&[]),
                gov_root: None,
            },
            transactions: Vec::new(),
            governance: Vec::new(),
            signature: Signature::default(),
        }
    }
}

impl Encode for Genesis {
    fn encode_to(&self, w: &mut Writer) {
        let custom = self.governance != GovernanceParams::default();
        w.u8(if custom {
            GENESIS_VERSION_GOVERNANCE
        } else {
            GENESIS_VERSION
        });
        w.str(&self.network_id);
        w.u32(self.authorities.len() as u32);
        for a in &self.authorities {
            w.fixed(&a.0);
        }
        w.u64(self.block_interval_ms);
        if custom {
            w.u64(self.governance.epoch_length);
            w.u64(self.governance.proposal_ttl);
        }
    }
}

impl Decode for Genesis {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != GENESIS_VERSION && version != GENESIS_VERSION_GOVERNANCE {
            return Err(DecodeError::UnsupportedVersion {
                what: "genesis",
                version,
            });
        }
        let network_id = r.str("network_id", 256)?.to_owned();
        let n = r.count("authorities", MAX_AUTHORITIES)?;
        let mut authorities = Vec::with_capacity(n);
        for _ in 0..n {
            authorities.push(PublicKey(r.fixed()?));
        }
        let block_interval_ms = r.u64()?;
        let governance = if version == GENESIS_VERSION_GOVERNANCE {
            let params = GovernanceParams {
                epoch_length: r.u64()?,
                proposal_ttl: r.u64()?,
            };
            // The defaults are encoded as version 1: one encoding per genesis.
            if params == GovernanceParams::default() {
                return Err(DecodeError::UnsupportedVersion {
                    what: "genesis with default governance parameters",
                    version,
                });
            }
            params
        } else {
            GovernanceParams::default()
        };
        Ok(Self {
            network_id,
            authorities,
            block_interval_ms,
            governance,
        })
    }
}

/// Where the authority set in force at a height comes from. Code asks this, never genesis, so a
/// governed set can replace the static one.
pub trait AuthoritySource {
    fn authorities_at(&self, height: u64) -> &[PublicKey];
}

impl AuthoritySource for Genesis {
    fn authorities_at(&self, _height: u64) -> &[PublicKey] {
        &self.authorities
    }
}
