//! IRIs of the chain metadata graph. See the crate docs for the statements written.

use provchain_consensus::{Hash, PublicKey};

/// The graph holding chain metadata.
pub const CHAIN_GRAPH: &str = "urn:provchain:chain";
/// ProvChain's own vocabulary (`pc:`).
pub const PC: &str = "urn:provchain:vocab#";
/// PROV-O (`prov:`).
pub const PROV: &str = "http://www.w3.org/ns/prov#";

pub const RDF_TYPE: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type";
pub const PROV_ENTITY: &str = "http://www.w3.org/ns/prov#Entity";
pub const PROV_WAS_ATTRIBUTED_TO: &str = "http://www.w3.org/ns/prov#wasAttributedTo";
pub const PROV_GENERATED_AT_TIME: &str = "http://www.w3.org/ns/prov#generatedAtTime";
pub const PC_BLOCK: &str = "urn:provchain:vocab#Block";
pub const PC_HEIGHT: &str = "urn:provchain:vocab#height";
pub const PC_PARENT: &str = "urn:provchain:vocab#parent";
pub const PC_PROPOSER: &str = "urn:provchain:vocab#proposer";
pub const PC_SLOT: &str = "urn:provchain:vocab#slot";
pub const PC_IN_BLOCK: &str = "urn:provchain:vocab#inBlock";
pub const PC_INDEX: &str = "urn:provchain:vocab#index";
pub const PC_TRIPLE_COUNT: &str = "urn:provchain:vocab#tripleCount";
pub const PC_FORMAT: &str = "urn:provchain:vocab#format";
pub const PC_CLIENT: &str = "urn:provchain:vocab#client";
pub const PC_NAMED_GRAPH: &str = "urn:provchain:vocab#namedGraph";
pub const PROV_ACTIVITY: &str = "http://www.w3.org/ns/prov#Activity";
pub const PROV_WAS_ASSOCIATED_WITH: &str = "http://www.w3.org/ns/prov#wasAssociatedWith";
pub const PC_AUTHORITY_PROPOSAL: &str = "urn:provchain:vocab#AuthorityProposal";
pub const PC_AUTHORITY_VOTE: &str = "urn:provchain:vocab#AuthorityVote";
/// `"add"` or `"remove"`.
pub const PC_ACTION: &str = "urn:provchain:vocab#action";
/// The authority key a proposal adds or removes.
pub const PC_AUTHORITY: &str = "urn:provchain:vocab#authority";
/// The proposal a vote supports.
pub const PC_PROPOSAL: &str = "urn:provchain:vocab#proposal";

/// `urn:provchain:tx:<hex id>`: the transaction, and the graph of its default-graph statements.
pub fn tx_iri(id: &Hash) -> String {
    format!("urn:provchain:tx:{}", id.to_hex())
}

/// `urn:provchain:block:<hex hash>`.
pub fn block_iri(hash: &Hash) -> String {
    format!("urn:provchain:block:{}", hash.to_hex())
}

/// `urn:provchain:proposal:<hex proposal id>`: an authority-set change proposal.
pub fn proposal_iri(id: &Hash) -> String {
    format!("urn:provchain:proposal:{}", id.to_hex())
}

/// `urn:provchain:vote:<hex item id>`: one authority's vote.
pub fn vote_iri(id: &Hash) -> String {
    format!("urn:provchain:vote:{}", id.to_hex())
}

/// `urn:provchain:node:<hex public key>`: a submitting node or a proposer.
pub fn node_iri(key: &PublicKey) -> String {
    format!("urn:provchain:node:{}", key.to_hex())
}
