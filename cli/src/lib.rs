//! `provchain`, the ProvChain operator CLI, as a library so tests reach every piece.
//!
//! The binary (`main.rs`) only parses [`Cli`] and calls [`run`]. Each subcommand lives in its
//! own module:
//!
//! * [`bench`](mod@bench): `bench`, the load generator (throughput, finality latency, node CPU/RSS),
//! * [`keys`]: `keygen` and `key inspect` (node key files, PeerIds),
//! * [`client`]: the blocking HTTP client every online command uses, with one-line errors,
//! * [`node`]: `status`, `peers`, `submit` and `query` against a node's HTTP API,
//! * [`authority`]: `authority list | propose | vote`, authority governance through a node,
//! * [`token`]: `token`, minting HS256 JWTs for nodes that run with `JWT_SECRET`,
//! * [`verify`]: `verify`, the offline integrity check of a stopped node's database,
//! * [`archive`]: `export` and `import` of portable chain archives,
//! * [`testnet`]: `testnet init`, keys and configs for a local N-authority network,
//! * [`output`]: tables, CSV and duration formatting shared by the above.
//!
//! Conventions: data goes to stdout (plain text, or JSON with `--json`), progress and notes to
//! stderr; every failure is one line on stderr (`provchain: <reason>`) and a non-zero exit.

pub mod archive;
pub mod authority;
pub mod bench;
pub mod client;
pub mod keys;
pub mod node;
pub mod output;
pub mod testnet;
pub mod token;
pub mod verify;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

/// Default node API address when neither `--node` nor `PROVCHAIN_NODE` is given.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:8080";

/// ProvChain operator CLI: keys, node status and peers, submitting RDF, SPARQL queries,
/// authority governance, integrity checks, API tokens and local testnets.
#[derive(Parser, Debug)]
#[command(name = "provchain", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a new ed25519 node key (written with mode 0600) and print its public key and PeerId.
    Keygen(keys::KeygenArgs),
    /// Inspect node key files.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Show a node's status (height, finality, peers, pool).
    Status(node::StatusArgs),
    /// List a node's connected peers.
    Peers(node::PeersArgs),
    /// Submit an RDF document (Turtle, N-Triples or N-Quads) as a transaction.
    Submit(node::SubmitArgs),
    /// Compute an RDF document's canonical digest (SHA-256 of its RDFC-1.0 form), optionally
    /// finding the node's final transactions with the same statements.
    Digest(node::DigestArgs),
    /// Run a SPARQL query against a node.
    Query(node::QueryArgs),
    /// Authority governance: show the authority set in force, propose adding or removing an
    /// authority, vote for a proposal (signed by the node's key, in its next block).
    Authority {
        #[command(subcommand)]
        command: AuthorityCommand,
    },
    /// Mint an HS256 API token (JWT) for a node that runs with JWT_SECRET.
    Token(token::TokenArgs),
    /// Check the integrity of a stopped node's database, offline.
    Verify(verify::VerifyArgs),
    /// Write the final chain to a portable archive (and the dataset as N-Quads).
    Export(archive::ExportArgs),
    /// Rebuild an empty data directory from an archive, validating every block.
    Import(archive::ImportArgs),
    /// Load-test nodes: submit provenance transactions at a rate, measure final throughput,
    /// submit-to-final latency and each local node's CPU and memory.
    Bench(bench::BenchArgs),
    /// Local testnet helpers.
    Testnet {
        #[command(subcommand)]
        command: TestnetCommand,
    },
    /// Print a shell completion script.
    Completions {
        /// Shell to generate the script for.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Print the public key and PeerId of an existing key file.
    Inspect(keys::InspectArgs),
}

#[derive(Subcommand, Debug)]
pub enum AuthorityCommand {
    /// Show the authority set in force (slot order), the finality threshold, scheduled changes,
    /// open proposals and their support, and the node's items waiting for its next block.
    List(authority::ListArgs),
    /// Have the node propose adding (--add KEY) or removing (--remove KEY) an authority; the
    /// proposal counts as the node's own vote. Prints the proposal id.
    Propose(authority::ProposeArgs),
    /// Have the node vote for an open proposal that a block on its best chain carries.
    Vote(authority::VoteArgs),
}

#[derive(Subcommand, Debug)]
pub enum TestnetCommand {
    /// Generate keys and provchaind configs for N local authorities.
    Init(testnet::InitArgs),
}

/// Where the node's HTTP API is.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Node HTTP API base URL.
    #[arg(long, env = "PROVCHAIN_NODE", default_value = DEFAULT_NODE)]
    pub node: String,
}

/// A bearer token for write endpoints.
#[derive(Args, Debug, Clone)]
pub struct TokenArg {
    /// API token (JWT) sent as `Authorization: Bearer`, needed when the node runs with JWT_SECRET
    /// (mint one with `provchain token`).
    #[arg(long, env = "PROVCHAIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Parses durations such as `30s`, `500ms`, `24h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 30s, 500ms, 24h"))
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keygen(a) => keys::keygen(&a),
        Command::Key {
            command: KeyCommand::Inspect(a),
        } => keys::inspect(&a),
        Command::Status(a) => node::status(&a),
        Command::Peers(a) => node::peers(&a),
        Command::Submit(a) => node::submit(&a),
        Command::Query(a) => node::query(&a),
        Command::Digest(a) => node::digest(&a),
        Command::Authority { command } => match command {
            AuthorityCommand::List(a) => authority::list(&a),
            AuthorityCommand::Propose(a) => authority::propose(&a),
            AuthorityCommand::Vote(a) => authority::vote(&a),
        },
        Command::Token(a) => token::run(&a),
        Command::Verify(a) => verify::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Export(a) => archive::export(&a),
        Command::Import(a) => archive::import(&a),
        Command::Testnet {
            command: TestnetCommand::Init(a),
        } => testnet::init(&a),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "provchain", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// The error as one line: the cause chain joined with `: `, newlines folded.
pub fn one_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Resolves the path a positional `<file|->` argument names; `None` for stdin.
pub fn input_path(arg: &str) -> Option<PathBuf> {
    (arg != "-").then(|| PathBuf::from(arg))
}
