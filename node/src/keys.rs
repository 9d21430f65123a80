//! Node key files: the hex-encoded 32-byte ed25519 secret seed on one line, mode 0600.
//!
//! The same key is the libp2p identity and, for authorities, the sealing key.

use std::fs;
use std::io::Write;
use std::path::Path;

use provchain_consensus::Keypair;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "key file {path} is malformed: expected 64 hex characters (an ed25519 secret seed), {detail}"
    )]
    Malformed { path: String, detail: String },
    #[error("key file {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: String, mode: u32 },
}

/// Reads a key file, refusing group/world-readable files.
pub fn load(path: &Path) -> Result<Keypair, KeyError> {
    let p = path.display().to_string();
    let text = fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: p.clone(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(|source| KeyError::Read {
                path: p.clone(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: p,
                mode: mode & 0o777,
            });
        }
    }
    parse(&text).map_err(|detail| KeyError::Malformed { path: p, detail })
}

/// Parses the key file text.
pub fn parse(text: &str) -> Result<Keypair, String> {
    let t = text.trim();
    if t.len() != 64 {
        return Err(format!("found {} characters", t.len()));
    }
    let mut seed = [0u8; 32];
    hex::decode_to_slice(t, &mut seed).map_err(|e| e.to_string())?;
    Ok(Keypair::from_secret(seed))
}

/// Writes a key file with mode 0600, failing if it exists (unless `overwrite`).
pub fn write(path: &Path, key: &Keypair, overwrite: bool) -> Result<(), KeyError> {
    let p = path.display().to_string();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| KeyError::Write {
            path: p.clone(),
            source,
        })?;
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|source| KeyError::Write {
        path: p.clone(),
        source,
    })?;
    writeln!(f, "{}", hex::encode(key.secret())).map_err(|source| KeyError::Write {
        path: p.clone(),
        source,
    })?;
    f.sync_all()
        .map_err(|source| KeyError::Write { path: p, source })
}

/// Loads the key at `path`, creating a fresh one when the file does not exist.
pub fn load_or_create(path: &Path) -> Result<(Keypair, bool), KeyError> {
    if path.exists() {
        return load(path).map(|k| (k, false));
    }
    let key = generate();
    write(path, &key, false)?;
    Ok((key, true))
}

pub fn generate() -> Keypair {
    Keypair::from_secret(rand::random())
}

/// Deterministic development key number `index` (1-based), for the local and compose testnets.
/// Anyone can derive these: `provchaind` accepts them only on the `provchain-testnet` network.
pub fn dev_key(index: u32) -> Keypair {
    let seed = provchain_consensus::crypto::hash_with(
        "provchain 2026 dev-only testnet key v1",
        &[&index.to_le_bytes()],
    );
    Keypair::from_secret(seed.0)
}
