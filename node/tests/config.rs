//! Configuration layering and startup validation, through the real binary.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_provchaind");

fn run(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for var in [
        "PROVCHAIN_PEERS",
        "PROVCHAIN_PORT",
        "PROVCHAIN_DATA_DIR",
        "PROVCHAIN_CONFIG",
        "CONFIG_FILE",
        "JWT_SECRET",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run provchaind");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

#[test]
fn flags_beat_env_beat_file_beat_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "node.toml",
        &format!(
            "node_id = \"from-file\"\n[network]\nlisten_port = 31000\nnetwork_id = \"net\"\n\
             [consensus]\nauthority_keys = [\"{KEY}\"]\nblock_interval = \"500ms\"\n[web]\nport = 8100\n"
        ),
    );
    let (ok, out, err) = run(
        &["--config", &file, "--dump-config", "--http-port", "8300"],
        &[
            ("PROVCHAIN_WEB__PORT", "8200"),
            ("PROVCHAIN_PORT", "32000"),
            ("PROVCHAIN_PEERS", "node1:30333, /ip4/10.0.0.2/tcp/30333"),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("node_id = \"from-file\""), "{out}");
    assert!(out.contains("port = 8300"), "flag wins: {out}");
    assert!(
        out.contains("listen_port = 32000"),
        "env wins over file: {out}"
    );
    assert!(out.contains("block_interval = \"500ms\""), "{out}");
    assert!(
        out.contains("\"node1:30333\"") && out.contains("\"/ip4/10.0.0.2/tcp/30333\""),
        "{out}"
    );
    assert!(
        out.contains("[metrics]") && out.contains("port = 9090"),
        "defaults fill the rest: {out}"
    );

    // CONFIG_FILE selects the file too; seconds as a float are accepted.
    let file2 = write(
        dir.path(),
        "b.toml",
        &format!("[consensus]\nauthority_keys = [\"{KEY}\"]\nblock_interval = 0.25\n"),
    );
    let (ok, out, err) = run(&["--dump-config"], &[("CONFIG_FILE", &file2)]);
    assert!(ok, "{err}");
    assert!(out.contains("block_interval = \"250ms\""), "{out}");
}

#[test]
fn bad_configuration_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("[network]\nlisten_prot = 1\n", "listen_prot"),
        (
            &*format!("[consensus]\nauthority_keys = [\"{KEY}\"]\nblock_interval = 0\n"),
            "consensus.block_interval",
        ),
        (
            "[consensus]\nauthority_keys = [\"nothex\"]\n",
            "consensus.authority_keys",
        ),
        ("[consensus]\nblock_interval = \"soon\"\n", "soon"),
        ("", "consensus.authority_keys"),
    ];
    for (i, (toml, needle)) in cases.iter().enumerate() {
        let file = write(dir.path(), &format!("c{i}.toml"), toml);
        let (ok, _, err) = run(&["--config", &file, "--dump-config"], &[]);
        assert!(!ok, "accepted {toml:?}");
        assert!(
            err.contains(needle),
            "error for {toml:?} does not name {needle}: {err}"
        );
    }
    // Unknown sectioned environment keys are refused too.
    let (ok, _, err) = run(&["--dev", "--dump-config"], &[("PROVCHAIN_WEB__PROT", "1")]);
    assert!(!ok && err.contains("prot"), "{err}");
    // Unrelated PROVCHAIN_* variables (the CLI's) are not config keys.
    let (ok, _, err) = run(&["--dev", "--dump-config"], &[("PROVCHAIN_TOKEN", "abc")]);
    assert!(ok, "{err}");
}

#[test]
fn an_authority_whose_key_is_not_listed_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = write(dir.path(), "node.key", &format!("{}\n", "11".repeat(32)));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let file = write(
        dir.path(),
        "a.toml",
        &format!(
            "[consensus]\nis_authority = true\nauthority_keys = [\"{KEY}\"]\nkey_file = \"{key}\"\n\
             [storage]\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    );
    let (ok, _, err) = run(
        &[
            "--config",
            &file,
            "--http-port",
            "0",
            "--metrics-port",
            "0",
            "--port",
            "0",
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("consensus.authority_keys") && err.contains("is_authority"),
        "{err}"
    );
}
