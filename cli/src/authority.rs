//! `authority list | propose | vote`: authority governance through a node's HTTP API.
//!
//! The authority set changes by majority vote. An authority node signs a proposal (add or remove
//! one key) or a vote with its own key and carries it in its next block; the change takes effect
//! at the next epoch boundary once more than half of the set in force supports it. These commands
//! ask the node at `--node` to do that (`POST /api/governance/proposals`, `/votes`) and show the
//! state on its best chain (`GET /api/authorities`). Keys and ids are checked before any request.

use anyhow::anyhow;
use clap::{ArgGroup, Args};
use provchain_consensus::{Hash, PublicKey};
use serde_json::{Value, json};

use crate::client::NodeClient;
use crate::output;
use crate::{NodeArgs, TokenArg};

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Print the node's JSON as is.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("change")
        .required(true)
        .multiple(false)
        .args(["add", "remove"])
))]
pub struct ProposeArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub token: TokenArg,
    /// Propose adding this ed25519 public key (64 hex digits, as `provchain keygen` prints it).
    #[arg(long, value_name = "KEY", value_parser = parse_key)]
    pub add: Option<PublicKey>,
    /// Propose removing this authority's public key (64 hex digits).
    #[arg(long, value_name = "KEY", value_parser = parse_key)]
    pub remove: Option<PublicKey>,
    /// Print the node's JSON answer.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct VoteArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub token: TokenArg,
    /// The proposal's id (64 hex digits), as `provchain authority list` shows it.
    #[arg(value_name = "PROPOSAL_ID", value_parser = parse_proposal)]
    pub proposal: Hash,
    /// Print the node's JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// A public key argument: 64 hex digits (an optional `0x` is accepted).
pub fn parse_key(s: &str) -> Result<PublicKey, String> {
    PublicKey::from_hex(s).map_err(|e| format!("not an ed25519 public key: {e}"))
}

/// A proposal id argument: 64 hex digits.
pub fn parse_proposal(s: &str) -> Result<Hash, String> {
    Hash::from_hex(s).map_err(|e| format!("not a proposal id: {e}"))
}

pub fn list(args: &ListArgs) -> anyhow::Result<()> {
    let client = NodeClient::new(&args.node.node, None)?;
    let v = client.get_json("/api/authorities")?;
    if args.json {
        return output::print_json(&v);
    }
    // Only to mark this node in the list; the list stands without it.
    let me = client.get_json("/api/status").ok().and_then(|s| {
        s.get("public_key")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    output::emit(&render_list(&v, me.as_deref()))
}

pub fn propose(args: &ProposeArgs) -> anyhow::Result<()> {
    let (action, key) = match (args.add, args.remove) {
        (Some(k), None) => ("add", k),
        (None, Some(k)) => ("remove", k),
        // clap's group makes exactly one of them present.
        _ => return Err(anyhow!("give exactly one of --add KEY or --remove KEY")),
    };
    let client = NodeClient::new(&args.node.node, args.token.token.clone())?;
    let answer = post_json(
        &client,
        "/api/governance/proposals",
        &json!({ "action": action, "key": key }),
    )?;
    if args.json {
        return output::print_json(&answer);
    }
    let id = field(&answer, "proposal")?;
    output::emit(&format!("{id}\n"))?;
    eprintln!(
        "proposed to {action} authority {key}: signed by the node, it goes into the node's next \
         block; other authorities support it with `provchain authority vote {id}`"
    );
    Ok(())
}

pub fn vote(args: &VoteArgs) -> anyhow::Result<()> {
    let client = NodeClient::new(&args.node.node, args.token.token.clone())?;
    let answer = post_json(
        &client,
        "/api/governance/votes",
        &json!({ "proposal": args.proposal }),
    )
    .map_err(|e| {
        if e.to_string().ends_with(" is unknown") {
            anyhow!(
                "{e}; a node votes only for a proposal a block on its chain carries: wait until \
                 `provchain authority list` on this node shows it, then vote again"
            )
        } else {
            e
        }
    })?;
    if args.json {
        return output::print_json(&answer);
    }
    let item = field(&answer, "item")?;
    output::emit(&format!("{item}\n"))?;
    eprintln!(
        "voted for proposal {}: signed by the node, the vote goes into the node's next block; \
         `provchain authority list` shows the support",
        args.proposal
    );
    Ok(())
}

fn post_json(client: &NodeClient, path: &str, body: &Value) -> anyhow::Result<Value> {
    let answer = client.post(
        path,
        "application/json",
        "application/json",
        body.to_string(),
    )?;
    serde_json::from_str(&answer.text).map_err(|e| {
        anyhow!("the node's answer to {path} is not JSON ({e}); is --node a ProvChain node?")
    })
}

fn field(v: &Value, key: &str) -> anyhow::Result<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the node's answer has no `{key}`: {v}"))
}

fn num(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn string<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The `GET /api/authorities` view for people: the set in force in slot order, the finality
/// threshold, scheduled changes, open proposals with their support, and this node's items that
/// wait for its next block. `me` (this node's public key) is marked in the set.
pub fn render_list(v: &Value, me: Option<&str>) -> String {
    let set: Vec<&str> = items(v, "authorities")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let height = num(v, "height").unwrap_or(0);
    let slot_of = |key: &str| set.iter().position(|k| *k == key);
    let who = |key: &str| match slot_of(key) {
        Some(i) => format!("#{i}"),
        None => format!("{}…", key.get(..12).unwrap_or(key)),
    };
    let mut out = format!(
        "authority set in force for block {} (best height {height}, final {}): {}\n",
        height + 1,
        num(v, "final_height").map_or_else(|| "-".into(), |h| h.to_string()),
        plural(set.len(), "member", "members"),
    );
    for (i, key) in set.iter().enumerate() {
        let mark = if Some(*key) == me {
            "  (this node)"
        } else {
            ""
        };
        out.push_str(&format!("  #{i:<3} {key}{mark}\n"));
    }
    out.push_str(&format!(
        "finality: {} of {} (a block is final once that many distinct authorities sealed it or \
         blocks on top of it)\n",
        num(v, "finality_threshold").map_or_else(|| "-".into(), |n| n.to_string()),
        set.len(),
    ));
    if let (Some(epoch), Some(ttl)) = (num(v, "epoch_length"), num(v, "proposal_ttl")) {
        out.push_str(&format!(
            "governance: changes take effect at heights that are multiples of {epoch}; \
             proposals stay open {}\n",
            plural(ttl as usize, "block", "blocks"),
        ));
    }

    let scheduled = items(v, "scheduled");
    out.push('\n');
    if scheduled.is_empty() {
        out.push_str("scheduled changes: none\n");
    } else {
        out.push_str(&format!("scheduled changes ({}):\n", scheduled.len()));
        for c in scheduled {
            out.push_str(&format!(
                "  {} {}\n    decided at height {}, in force from height {} (proposal {})\n",
                string(c, "action"),
                string(c, "key"),
                num(c, "decided_at").unwrap_or(0),
                num(c, "switch_at").unwrap_or(0),
                string(c, "proposal"),
            ));
        }
    }

    let proposals = items(v, "proposals");
    out.push('\n');
    if proposals.is_empty() {
        out.push_str("open proposals: none\n");
    } else {
        out.push_str(&format!("open proposals ({}):\n", proposals.len()));
        for p in proposals {
            let supporters: Vec<String> = items(p, "supporters")
                .iter()
                .filter_map(Value::as_str)
                .map(who)
                .collect();
            let expires = num(p, "expires_at").unwrap_or(0);
            out.push_str(&format!(
                "  {}\n    {} {}\n    proposed by {} at height {}; expires at height {expires} (in {})\n    support {}/{} needed: {}\n",
                string(p, "id"),
                string(p, "action"),
                string(p, "key"),
                who(string(p, "proposer")),
                num(p, "proposed_at").unwrap_or(0),
                plural(expires.saturating_sub(height) as usize, "block", "blocks"),
                num(p, "support").map_or(supporters.len(), |n| n as usize),
                num(p, "needed").map_or_else(|| "-".into(), |n| n.to_string()),
                if supporters.is_empty() {
                    "-".to_owned()
                } else {
                    supporters.join(", ")
                },
            ));
        }
    }

    let pending = items(v, "pending");
    out.push('\n');
    if pending.is_empty() {
        out.push_str("signed by this node, waiting for its next block: none\n");
    } else {
        out.push_str(&format!(
            "signed by this node, waiting for its next block ({}):\n",
            pending.len()
        ));
        for i in pending {
            let what = if string(i, "kind") == "vote" {
                "vote for proposal"
            } else {
                "proposal"
            };
            out.push_str(&format!(
                "  {what} {} (item {})\n",
                string(i, "proposal"),
                string(i, "item"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const K0: &str = "0b9a56997d7c699233eae4eb26fc3b5165f75c76631ee7a91ea802aacee85c4a";
    const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const K9: &str = "9999999999999999999999999999999999999999999999999999999999999999";
    const P: &str = "abababababababababababababababababababababababababababababababab";

    #[test]
    fn keys_and_ids_are_checked_before_any_request() {
        assert!(parse_key(K0).is_ok());
        assert!(parse_key(&format!("0x{K0}")).is_ok());
        let e = parse_key("abc").expect_err("short key");
        assert!(e.contains("64 hex"), "{e}");
        assert!(parse_key(&"z".repeat(64)).is_err());
        assert!(parse_proposal(P).is_ok());
        assert!(parse_proposal("1234").is_err());
    }

    #[test]
    fn list_shows_set_threshold_changes_proposals_and_pending() {
        let v = json!({
            "height": 118, "final_height": 116, "epoch_length": 10, "proposal_ttl": 1000,
            "authorities": [K0, K1, K2], "finality_threshold": 2,
            "scheduled": [{"proposal": P, "action": "remove", "key": K2, "decided_at": 117, "switch_at": 120}],
            "proposals": [{"id": P, "action": "add", "key": K9, "proposer": K0, "proposed_at": 100,
                "expires_at": 1100, "supporters": [K0], "needed": 2}],
            "pending": [{"item": K9, "kind": "vote", "proposal": P}],
        });
        let t = render_list(&v, Some(K1));
        assert!(
            t.starts_with(
                "authority set in force for block 119 (best height 118, final 116): 3 members\n"
            ),
            "{t}"
        );
        assert!(t.contains(&format!("  #0   {K0}\n")), "{t}");
        assert!(t.contains(&format!("  #1   {K1}  (this node)\n")), "{t}");
        assert!(t.contains("finality: 2 of 3 (a block is final once"), "{t}");
        assert!(
            t.contains(&format!(
                "scheduled changes (1):\n  remove {K2}\n    decided at height 117, in force from height 120"
            )),
            "{t}"
        );
        assert!(
            t.contains(&format!(
                "open proposals (1):\n  {P}\n    add {K9}\n    proposed by #0 at height 100; expires at height 1100 (in 982 blocks)\n    support 1/2 needed: #0\n"
            )),
            "{t}"
        );
        assert!(
            t.contains(&format!(
                "waiting for its next block (1):\n  vote for proposal {P} (item {K9})\n"
            )),
            "{t}"
        );

        let quiet = json!({
            "height": 5, "final_height": 5, "authorities": [K0], "finality_threshold": 1,
            "scheduled": [], "proposals": [], "pending": [],
        });
        let t = render_list(&quiet, None);
        assert!(
            t.contains("1 member\n") && !t.contains("(this node)"),
            "{t}"
        );
        assert!(t.contains("scheduled changes: none"), "{t}");
        assert!(t.contains("open proposals: none"), "{t}");
        assert!(t.contains("waiting for its next block: none"), "{t}");
    }
}
