//! `keygen` and `key inspect`: node key files (see `provchain_node::keys` for the format).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use provchain_consensus::Keypair;
use provchain_node::keys as node_keys;
use serde::Serialize;

use crate::output;

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the key (hex secret seed, mode 0600).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace an existing key file (its old key is lost).
    #[arg(long)]
    pub force: bool,
    /// Print `{"public_key", "peer_id", "key_file"}` as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The key file.
    pub file: PathBuf,
    /// Print `{"public_key", "peer_id", "key_file"}` as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The public facts of a key: what operators put in `authority_keys` and `allowed_peers`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    pub public_key: String,
    pub peer_id: String,
    pub key_file: String,
}

impl KeyInfo {
    pub fn new(key: &Keypair, path: &Path) -> Self {
        let public = key.public();
        Self {
            public_key: public.to_hex(),
            peer_id: provchain_p2p::peer_id_of(&public).to_string(),
            key_file: path.display().to_string(),
        }
    }

    fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            return output::print_json(self);
        }
        output::emit(&format!(
            "public key: {}\npeer id:    {}\nkey file:   {}\n",
            self.public_key, self.peer_id, self.key_file
        ))
    }
}

/// Writes a fresh key to `path` (mode 0600). With `force` an existing file is removed first,
/// so the new secret never lands in a file with looser permissions.
pub fn write_new_key(path: &Path, force: bool) -> anyhow::Result<Keypair> {
    if path.exists() || path.is_symlink() {
        if !force {
            bail!(
                "key file {} already exists; pass --force to replace it (its key is lost)",
                path.display()
            );
        }
        if path.is_dir() {
            bail!("{} is a directory, not a key file", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the old key file {}", path.display()))?;
    }
    let key = node_keys::generate();
    node_keys::write(path, &key, false)?;
    Ok(key)
}

pub fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let key = write_new_key(&args.out, args.force)?;
    eprintln!(
        "wrote a new node key to {} (mode 0600); keep it secret",
        args.out.display()
    );
    KeyInfo::new(&key, &args.out).print(args.json)
}

pub fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let key = node_keys::load(&args.file)?;
    KeyInfo::new(&key, &args.file).print(args.json)
}
