//! HS256 JSON Web Tokens for the write endpoints.
//!
//! When a secret is configured, `POST` endpoints require `Authorization: Bearer <JWT>` signed
//! with it, carrying a `sub` (recorded as the transaction's client) and an `exp` in the future.
//! `provchain token` mints them with [`mint`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing `Authorization: Bearer <token>` header")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm (only HS256)")]
    Algorithm,
    #[error("token signature is invalid")]
    Signature,
    #[error("token expired")]
    Expired,
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"))
}

/// Creates a token for `sub` valid until `exp` (unix seconds).
pub fn mint(secret: &[u8], sub: &str, iat: u64, exp: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = Claims {
        sub: sub.to_owned(),
        exp,
        iat,
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// Checks signature, algorithm and expiry; returns the claims.
pub fn verify(secret: &[u8], token: &str, now_secs: u64) -> Result<Claims, AuthError> {
    let mut parts = token.trim().split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    #[derive(Deserialize)]
    struct Header {
        alg: String,
    }
    let header: Header = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AuthError::Malformed)?;
    if header.alg != "HS256" {
        return Err(AuthError::Algorithm);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| AuthError::Malformed)?;
    let mut m = mac(secret);
    m.update(h.as_bytes());
    m.update(b".");
    m.update(p.as_bytes());
    m.verify_slice(&sig).map_err(|_| AuthError::Signature)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AuthError::Malformed)?;
    if claims.exp <= now_secs {
        return Err(AuthError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_failures() {
        let t = mint(b"0123456789abcdef", "alice", 100, 200);
        assert_eq!(
            verify(b"0123456789abcdef", &t, 150).map(|c| c.sub),
            Ok("alice".into())
        );
        assert_eq!(
            verify(b"0123456789abcdef", &t, 200),
            Err(AuthError::Expired)
        );
        assert_eq!(
            verify(b"another-secret-xx", &t, 150),
            Err(AuthError::Signature)
        );
        assert_eq!(
            verify(b"0123456789abcdef", "a.b", 150),
            Err(AuthError::Malformed)
        );
        let mut tampered = t.clone();
        tampered.insert(t.find('.').unwrap_or(0) + 2, 'x');
        assert!(verify(b"0123456789abcdef", &tampered, 150).is_err());
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            t.split('.').nth(1).unwrap_or("")
        );
        assert_eq!(
            verify(b"0123456789abcdef", &none, 150),
            Err(AuthError::Algorithm)
        );
    }
}
