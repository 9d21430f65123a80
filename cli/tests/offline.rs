//! Commands that need no running node: keys, tokens, completions, testnet generation, and the
//! argument checks of the online commands.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{cli, cli_env, mode, provchaind};
use serde_json::Value;

#[test]
fn keygen_writes_a_private_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("keys/node.key");
    let key_s = key.to_str().expect("utf8");

    let out = cli(&["keygen", "--out", key_s, "--json"]);
    let v = out.json();
    let obj = v.as_object().expect("object");
    assert_eq!(
        obj.keys().cloned().collect::<BTreeSet<_>>(),
        ["key_file", "peer_id", "public_key"]
            .map(String::from)
            .into()
    );
    let public = v["public_key"].as_str().expect("public_key");
    assert_eq!(public.len(), 64);
    assert!(public.chars().all(|c| c.is_ascii_hexdigit()));
    let peer_id = v["peer_id"].as_str().expect("peer_id");
    assert!(
        peer_id.starts_with("12D3KooW"),
        "ed25519 PeerIds start with 12D3KooW: {peer_id}"
    );
    assert_eq!(v["key_file"], key_s);
    assert_eq!(mode(&key), 0o600);
    let secret = std::fs::read_to_string(&key).expect("read key");

    // Not overwritten without --force: the same key stays.
    let line = cli(&["keygen", "--out", key_s]).fails().to_owned();
    assert!(
        line.contains("already exists") && line.contains("--force"),
        "{line}"
    );
    assert_eq!(std::fs::read_to_string(&key).expect("read key"), secret);

    // key inspect agrees, as JSON and as text.
    let inspected = cli(&["key", "inspect", key_s, "--json"]).json();
    assert_eq!(inspected, v);
    let text = cli(&["key", "inspect", key_s]).ok().to_owned();
    assert!(text.contains(public) && text.contains(peer_id), "{text}");

    // --force replaces it with a new key, still 0600.
    let replaced = cli(&["keygen", "--out", key_s, "--force", "--json"]).json();
    assert_ne!(replaced["public_key"], v["public_key"]);
    assert_eq!(mode(&key), 0o600);

    // Plain output names all three facts.
    let other = dir.path().join("other.key");
    let text = cli(&["keygen", "--out", other.to_str().expect("utf8")])
        .ok()
        .to_owned();
    assert!(
        text.contains("public key:") && text.contains("peer id:") && text.contains("12D3KooW"),
        "{text}"
    );
}

#[test]
fn key_inspect_rejects_bad_files() {
    let dir = tempfile::tempdir().expect("tempdir");

    let short = dir.path().join("short.key");
    std::fs::write(&short, "abcd\n").expect("write");
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let line = cli(&["key", "inspect", short.to_str().expect("utf8")])
        .fails()
        .to_owned();
    assert!(
        line.contains("malformed") && line.contains("64 hex characters"),
        "{line}"
    );

    let not_hex = dir.path().join("nothex.key");
    std::fs::write(&not_hex, "z".repeat(64)).expect("write");
    std::fs::set_permissions(&not_hex, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let line = cli(&["key", "inspect", not_hex.to_str().expect("utf8")])
        .fails()
        .to_owned();
    assert!(line.contains("malformed"), "{line}");

    // A valid key that others can read is refused, with the fix in the message.
    let open = dir.path().join("open.key");
    cli(&["keygen", "--out", open.to_str().expect("utf8")]).ok();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let line = cli(&["key", "inspect", open.to_str().expect("utf8")])
        .fails()
        .to_owned();
    assert!(
        line.contains("readable by other users") && line.contains("chmod 600"),
        "{line}"
    );

    let missing = dir.path().join("missing.key");
    let line = cli(&["key", "inspect", missing.to_str().expect("utf8")])
        .fails()
        .to_owned();
    assert!(line.contains("cannot read key file"), "{line}");
}

#[test]
fn token_prints_only_a_verifiable_jwt() {
    let secret = "a-long-enough-test-secret";
    let out = cli(&["token", "--secret", secret, "--sub", "alice", "--ttl", "1h"]);
    let token = out.ok().trim().to_owned();
    assert_eq!(out.stdout.lines().count(), 1);
    assert_eq!(token.split('.').count(), 3);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = provchain_node::auth::verify(secret.as_bytes(), &token, now).expect("valid token");
    assert_eq!(claims.sub, "alice");
    assert!(
        claims.exp >= now + 3590 && claims.exp <= now + 3610,
        "{claims:?}"
    );
    assert!(claims.iat <= now && claims.iat + 10 >= now);

    // The secret may come from JWT_SECRET, like the node's.
    let from_env = cli_env(&["token", "--sub", "bob"], &[("JWT_SECRET", secret)])
        .ok()
        .trim()
        .to_owned();
    assert_eq!(
        provchain_node::auth::verify(secret.as_bytes(), &from_env, now).map(|c| c.sub),
        Ok("bob".into())
    );

    // Too-short secrets and bad durations are refused with one line.
    cli(&["token", "--secret", "short", "--sub", "alice"]).fails();
    let bad = cli(&[
        "token", "--secret", secret, "--sub", "alice", "--ttl", "soon",
    ]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("soon"), "{bad:?}");
}

#[test]
fn completions_and_help() {
    let bash = cli(&["completions", "bash"]).ok().to_owned();
    assert!(
        bash.contains("provchain") && bash.contains("complete"),
        "{bash}"
    );
    assert!(bash.contains("keygen") && bash.contains("testnet"));
    assert!(bash.contains("authority") && bash.contains("propose") && bash.contains("vote"));
    let zsh = cli(&["completions", "zsh"]).ok().to_owned();
    assert!(zsh.contains("#compdef provchain"));
    cli(&["completions", "fish"]).ok();

    for sub in [
        &["--help"][..],
        &["keygen", "--help"],
        &["submit", "--help"],
        &["testnet", "init", "--help"],
        &["authority", "--help"],
        &["authority", "list", "--help"],
        &["authority", "propose", "--help"],
        &["authority", "vote", "--help"],
    ] {
        let help = cli(sub).ok().to_owned();
        assert!(help.contains("Usage:"), "{help}");
    }
    let bad = cli(&["no-such-command"]);
    assert_eq!(bad.code, 2, "usage errors exit 2: {bad:?}");
}

#[test]
fn testnet_init_writes_configs_provchaind_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("net");
    let out_s = out.to_str().expect("utf8");
    let plans = cli(&[
        "testnet",
        "init",
        "--nodes",
        "3",
        "--out",
        out_s,
        "--base-port",
        "41000",
        "--api-base-port",
        "41100",
        "--metrics-base-port",
        "41200",
        "--block-interval",
        "500ms",
        "--json",
    ])
    .json();
    let plans = plans.as_array().expect("array");
    assert_eq!(plans.len(), 3);
    assert!(out.join("README.txt").exists());
    assert!(
        std::fs::read_to_string(out.join("README.txt"))
            .expect("readme")
            .contains("provchaind --config")
    );

    let mut authority_lists = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let n = i + 1;
        let key = out.join(format!("node{n}/node.key"));
        assert_eq!(mode(&key), 0o600, "{}", key.display());
        // The key file matches the reported public key.
        let inspected = cli(&["key", "inspect", key.to_str().expect("utf8"), "--json"]).json();
        assert_eq!(inspected["public_key"], plan["public_key"]);

        let config = out.join(format!("node{n}.toml"));
        let dump = Command::new(provchaind())
            .args(["--config", config.to_str().expect("utf8"), "--dump-config"])
            .env_remove("PROVCHAIN_PEERS")
            .env_remove("PROVCHAIN_PORT")
            .env_remove("PROVCHAIN_DATA_DIR")
            .env_remove("JWT_SECRET")
            .output()
            .expect("run provchaind");
        let stderr = String::from_utf8_lossy(&dump.stderr);
        assert!(
            dump.status.success(),
            "provchaind refused {}: {stderr}",
            config.display()
        );
        let effective: toml::Table =
            toml::from_str(&String::from_utf8_lossy(&dump.stdout)).expect("dump is TOML");
        let consensus = &effective["consensus"];
        assert_eq!(consensus["is_authority"].as_bool(), Some(true));
        authority_lists.push(consensus["authority_keys"].clone());
        assert_eq!(
            effective["network"]["network_id"].as_str(),
            Some("provchain-local")
        );
        assert_eq!(
            effective["network"]["listen_port"].as_integer(),
            Some(41000 + i as i64)
        );
        assert_eq!(
            effective["web"]["port"].as_integer(),
            Some(41100 + i as i64)
        );
        assert_eq!(
            effective["metrics"]["port"].as_integer(),
            Some(41200 + i as i64)
        );
        let peers = effective["network"]["known_peers"]
            .as_array()
            .expect("known_peers");
        if n == 1 {
            assert!(peers.is_empty());
        } else {
            let seed = format!(
                "/ip4/127.0.0.1/tcp/41000/p2p/{}",
                plans[0]["peer_id"].as_str().expect("peer id")
            );
            assert_eq!(
                peers.iter().filter_map(|p| p.as_str()).collect::<Vec<_>>(),
                [seed.as_str()]
            );
        }
    }
    let expected: Vec<Value> = plans.iter().map(|p| p["public_key"].clone()).collect();
    for list in &authority_lists {
        let keys: Vec<Value> = list
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| Value::String(k.as_str().expect("str").into()))
            .collect();
        assert_eq!(
            keys, expected,
            "authority_keys must list every node's key in order, identically"
        );
    }

    // A non-empty directory is refused without --force, and accepted with it.
    let line = cli(&["testnet", "init", "--nodes", "2", "--out", out_s])
        .fails()
        .to_owned();
    assert!(
        line.contains("not empty") && line.contains("--force"),
        "{line}"
    );
    let again = cli(&[
        "testnet", "init", "--nodes", "2", "--out", out_s, "--force", "--json",
    ])
    .json();
    assert_ne!(again[0]["public_key"], plans[0]["public_key"]);
    assert_eq!(mode(&out.join("node1/node.key")), 0o600);
}

/// A port nothing listens on: a command that sent a request would fail with "cannot reach node"
/// instead of the usage error the tests expect.
const NO_NODE: &str = "http://127.0.0.1:9";

#[test]
fn authority_commands_check_their_arguments_before_any_request() {
    let key = "0b9a56997d7c699233eae4eb26fc3b5165f75c76631ee7a91ea802aacee85c4a";

    // Exactly one of --add and --remove.
    let neither = cli(&["authority", "propose", "--node", NO_NODE]);
    assert_eq!(neither.code, 2, "usage errors exit 2: {neither:?}");
    assert!(
        neither.stderr.contains("--add") && neither.stderr.contains("--remove"),
        "{neither:?}"
    );
    assert!(!neither.stderr.contains("cannot reach"), "{neither:?}");
    let both = cli(&[
        "authority",
        "propose",
        "--node",
        NO_NODE,
        "--add",
        key,
        "--remove",
        key,
    ]);
    assert_eq!(both.code, 2, "usage errors exit 2: {both:?}");
    assert!(both.stderr.contains("cannot be used with"), "{both:?}");
    assert!(!both.stderr.contains("cannot reach"), "{both:?}");

    // Malformed keys and proposal ids are refused as usage errors, naming the problem.
    for bad in ["abc", &"z".repeat(64), &key[..63]] {
        for flag in ["--add", "--remove"] {
            let run = cli(&["authority", "propose", "--node", NO_NODE, flag, bad]);
            assert_eq!(run.code, 2, "{flag} {bad}: {run:?}");
            assert!(
                run.stderr.contains("not an ed25519 public key") && run.stderr.contains(flag),
                "{run:?}"
            );
            assert!(!run.stderr.contains("cannot reach"), "{run:?}");
        }
    }
    let run = cli(&["authority", "vote", "--node", NO_NODE, "1234"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("not a proposal id") && run.stderr.contains("64 hex"),
        "{run:?}"
    );
    let run = cli(&["authority", "vote", "--node", NO_NODE]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("PROPOSAL_ID"), "{run:?}");

    // Well-formed arguments get as far as the node: one line naming the unreachable node.
    let line = cli(&["authority", "propose", "--node", NO_NODE, "--add", key])
        .fails()
        .to_owned();
    assert!(line.contains("cannot reach node"), "{line}");
    let line = cli(&["authority", "vote", "--node", NO_NODE, key])
        .fails()
        .to_owned();
    assert!(line.contains("cannot reach node"), "{line}");
    let line = cli(&["authority", "list", "--node", NO_NODE])
        .fails()
        .to_owned();
    assert!(line.contains("cannot reach node"), "{line}");
}
