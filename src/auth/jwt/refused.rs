//! Tokens refused for what their bytes say, remembered by their SHA-256 so
//! the same bad token sent again is refused without a signature check.
//!
//! A fixed table, each hash in the one slot its first bytes pick, a newer
//! refusal taking the slot of an older one: remembering costs no
//! allocation and no bookkeeping, so a flood of distinct bad tokens (which
//! this cannot help) pays next to nothing for it, and its memory is fixed.
//! A slot answers only for the same full hash, the same key generation and
//! within the lifetime, so at worst a token is checked again; nothing is
//! ever let through by it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::TokenError;

/// Slots in the table (a power of two).
const SLOTS: usize = 4096;

#[derive(Clone, Copy)]
struct Slot {
    digest: [u8; 32],
    generation: u64,
    error: TokenError,
    at: Instant,
}

pub(super) struct RefusedTokens {
    slots: Box<[Mutex<Option<Slot>>]>,
    ttl: Duration,
}

impl RefusedTokens {
    pub(super) fn new(ttl: Duration) -> Self {
        RefusedTokens {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
            ttl,
        }
    }

    fn slot(&self, digest: &[u8; 32]) -> &Mutex<Option<Slot>> {
        let i = usize::from(u16::from_le_bytes([digest[0], digest[1]])) & (SLOTS - 1);
        &self.slots[i]
    }

    /// Why the token of `digest` was refused, if it was under `generation`
    /// less than the lifetime before `now`.
    pub(super) fn get(
        &self,
        digest: &[u8; 32],
        generation: u64,
        now: Instant,
    ) -> Option<TokenError> {
        let slot = *self.slot(digest).lock().unwrap_or_else(|e| e.into_inner());
        slot.filter(|s| {
            s.digest == *digest
                && s.generation == generation
                && now.saturating_duration_since(s.at) < self.ttl
        })
        .map(|s| s.error)
    }

    /// Remember that the token of `digest` was refused with `error` under
    /// `generation` at `now`.
    pub(super) fn put(&self, digest: [u8; 32], generation: u64, error: TokenError, now: Instant) {
        *self.slot(&digest).lock().unwrap_or_else(|e| e.into_inner()) = Some(Slot {
            digest,
            generation,
            error,
            at: now,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(first: u8, second: u8, last: u8) -> [u8; 32] {
        let mut d = [7u8; 32];
        (d[0], d[1], d[31]) = (first, second, last);
        d
    }

    #[test]
    fn a_slot_answers_for_its_own_hash_generation_and_lifetime_only() {
        let refused = RefusedTokens::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let a = digest(1, 2, 3);
        refused.put(a, 5, TokenError::BadSignature, t0);
        assert_eq!(refused.get(&a, 5, t0), Some(TokenError::BadSignature));
        assert_eq!(
            refused.get(&digest(1, 2, 4), 5, t0),
            None,
            "same slot, another hash"
        );
        assert_eq!(refused.get(&a, 6, t0), None, "keys changed since");
        assert_eq!(
            refused.get(&a, 5, t0 + Duration::from_secs(60)),
            None,
            "expired"
        );

        // a newer refusal in the same slot takes it; other slots keep theirs
        let b = digest(1, 2, 9);
        let c = digest(3, 4, 3);
        refused.put(c, 5, TokenError::Malformed, t0);
        refused.put(b, 5, TokenError::WrongAudience, t0);
        assert_eq!(refused.get(&a, 5, t0), None);
        assert_eq!(refused.get(&b, 5, t0), Some(TokenError::WrongAudience));
        assert_eq!(refused.get(&c, 5, t0), Some(TokenError::Malformed));
    }
}
