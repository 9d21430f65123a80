//! `token`: mints the HS256 JWT a node with `JWT_SECRET` requires on its write endpoints.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use clap::Args;

use crate::output;

/// The node refuses shorter `web.jwt_secret`s, so a token made with one could never work.
pub const MIN_SECRET_LEN: usize = 16;

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The node's JWT secret (its JWT_SECRET / web.jwt_secret).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Subject: who the token speaks for; recorded as each transaction's client.
    #[arg(long)]
    pub sub: String,
    /// Validity from now (e.g. 24h, 30m, 7days).
    #[arg(long, default_value = "24h", value_parser = crate::parse_duration)]
    pub ttl: Duration,
}

/// Mints a token valid from `now_secs` for `ttl`.
pub fn mint(secret: &str, sub: &str, now_secs: u64, ttl: Duration) -> anyhow::Result<String> {
    if secret.len() < MIN_SECRET_LEN {
        bail!(
            "--secret must be at least {MIN_SECRET_LEN} characters, as the node requires of JWT_SECRET"
        );
    }
    if sub.trim().is_empty() {
        bail!("--sub must not be empty");
    }
    let exp = now_secs.saturating_add(ttl.as_secs());
    Ok(provchain_node::auth::mint(
        secret.as_bytes(),
        sub,
        now_secs,
        exp,
    ))
}

pub fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let token = mint(&args.secret, &args.sub, now, args.ttl)?;
    output::emit(&format!("{token}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_until_they_expire() {
        let secret = "0123456789abcdef";
        let t = mint(secret, "alice", 1_000, Duration::from_secs(60)).unwrap_or_default();
        let claims = provchain_node::auth::verify(secret.as_bytes(), &t, 1_030);
        assert_eq!(
            claims.map(|c| (c.sub, c.iat, c.exp)),
            Ok(("alice".into(), 1_000, 1_060))
        );
        assert!(provchain_node::auth::verify(secret.as_bytes(), &t, 1_060).is_err());
        assert!(mint("short", "alice", 0, Duration::from_secs(1)).is_err());
    }
}
