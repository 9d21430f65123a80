//! The Aura-style slot schedule: time is cut into slots of `block_interval_ms`, and slot `s`
//! belongs to `authorities[s % n]`. Time is always an argument, never read here.

use crate::crypto::PublicKey;

pub fn slot_at(unix_ms: u64, interval_ms: u64) -> u64 {
    unix_ms / interval_ms.max(1)
}

pub fn slot_start_ms(slot: u64, interval_ms: u64) -> u64 {
    slot.saturating_mul(interval_ms)
}

/// The authority allowed to seal `slot`.
pub fn leader(authorities: &[PublicKey], slot: u64) -> Option<&PublicKey> {
    if authorities.is_empty() {
        return None;
    }
    authorities.get((slot % authorities.len() as u64) as usize)
}

/// Distinct proposers needed on top of a block (itself included) for it to be final:
/// more than half of the authorities.
pub fn finality_threshold(authorities: usize) -> usize {
    authorities / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_leaders() {
        let a: Vec<PublicKey> = (0..3u8).map(|i| PublicKey([i; 32])).collect();
        assert_eq!(slot_at(2_999, 1_000), 2);
        assert_eq!(slot_at(3_000, 1_000), 3);
        assert_eq!(slot_start_ms(3, 500), 1_500);
        assert_eq!(leader(&a, 3), Some(&a[0]));
        assert_eq!(leader(&a, 5), Some(&a[2]));
        assert_eq!(leader(&[], 5), None);
        assert_eq!(finality_threshold(1), 1);
        assert_eq!(finality_threshold(3), 2);
        assert_eq!(finality_threshold(4), 3);
        assert_eq!(finality_threshold(5), 3);
    }
}
