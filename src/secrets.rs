//! Secrets: API keys (`tg_…`) and client secrets (`tgs_…`) in the GitHub
//! token shape: a prefix that makes leaks recognisable, 131 random bits in
//! base62, and a CRC32 checksum so that a mistyped or forged value is
//! refused before any lookup. Only a keyed hash (HMAC-SHA256 with a server
//! pepper) is ever stored; comparisons are constant-time.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const API_KEY_PREFIX: &str = "tg_";
pub const CLIENT_SECRET_PREFIX: &str = "tgs_";
pub const SESSION_PREFIX: &str = "tgp_";
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 62^22 > 2^130: at least 128 random bits.
const RANDOM_LEN: usize = 22;
const CHECKSUM_LEN: usize = 6;
/// Characters of the random part shown as the key's `prefix`.
const DISPLAY_LEN: usize = 6;

/// A freshly generated secret; shown once, never stored.
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The CRC32 of `body` in base62, fixed width (checked on every request,
/// so it allocates nothing).
fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(body);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

fn generate(prefix: &str) -> Secret {
    let mut rng = rand::thread_rng();
    let random: String = (0..RANDOM_LEN)
        .map(|_| BASE62[rng.gen_range(0..62)] as char)
        .collect();
    let mut secret = format!("{prefix}{random}");
    let sum = checksum(secret.as_bytes());
    secret.extend(sum.map(char::from));
    Secret(secret)
}

pub fn generate_api_key() -> Secret {
    generate(API_KEY_PREFIX)
}

pub fn generate_client_secret() -> Secret {
    generate(CLIENT_SECRET_PREFIX)
}

/// A portal session token (`tgp_…`).
pub fn generate_session_token() -> Secret {
    generate(SESSION_PREFIX)
}

/// Shape and checksum only: no lookup, no hashing. A value that fails this
/// never reaches a cache or the store. Takes the value as it came (a header
/// value's octets, say): anything but the prefix and ASCII letters and
/// digits fails here, so no text check is needed before.
pub fn well_formed(value: impl AsRef<[u8]>, prefix: &str) -> bool {
    let value = value.as_ref();
    let Some(rest) = value.strip_prefix(prefix.as_bytes()) else {
        return false;
    };
    if rest.len() != RANDOM_LEN + CHECKSUM_LEN || !rest.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (body, sum) = value.split_at(value.len() - CHECKSUM_LEN);
    checksum(body).ct_eq(sum).into()
}

/// The non-secret part shown in listings: `tg_AbC123`.
pub fn display_prefix(value: &str, prefix: &str) -> String {
    let end = (prefix.len() + DISPLAY_LEN).min(value.len());
    value[..end].to_string()
}

/// The server pepper that keys every stored hash. The keyed HMAC state is
/// prepared once and cloned per hash.
#[derive(Clone)]
pub struct Pepper(Hmac<Sha256>);

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(…)")
    }
}

impl Pepper {
    pub fn new(bytes: Vec<u8>) -> Self {
        // Start-up only. HMAC accepts keys of any length, so this cannot fail.
        let mac = Hmac::<Sha256>::new_from_slice(&bytes).expect("HMAC accepts keys of any length");
        Pepper(mac)
    }

    /// HMAC-SHA256(pepper, secret), hex-encoded: what the store keeps.
    pub fn hash(&self, secret: &str) -> String {
        to_hex(&self.digest(secret))
    }

    /// The same HMAC as raw bytes (a cache key that costs no allocation).
    pub fn digest(&self, secret: impl AsRef<[u8]>) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(secret.as_ref());
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of a presented secret against a stored hash.
    pub fn verify(&self, secret: &str, stored_hash: &str) -> bool {
        let computed = self.hash(secret);
        computed.len() == stored_hash.len()
            && bool::from(computed.as_bytes().ct_eq(stored_hash.as_bytes()))
    }
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A random identifier such as `cli_3fZ8…` (not a secret).
pub fn new_id(prefix: &str) -> String {
    let mut rng = rand::thread_rng();
    let random: String = (0..16)
        .map(|_| BASE62[rng.gen_range(0..62)] as char)
        .collect();
    format!("{prefix}_{random}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate_api_key();
        let b = generate_api_key();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with("tg_"));
        assert_eq!(a.expose().len(), 3 + 22 + 6);
        assert!(well_formed(a.expose(), API_KEY_PREFIX));
        assert!(!well_formed(a.expose(), CLIENT_SECRET_PREFIX));
        let s = generate_client_secret();
        assert!(well_formed(s.expose(), CLIENT_SECRET_PREFIX));
        assert_eq!(format!("{a:?}"), "Secret(…)");
    }

    #[test]
    fn a_changed_character_fails_the_checksum() {
        let k = generate_api_key().expose().to_string();
        let mut bytes = k.clone().into_bytes();
        bytes[5] = if bytes[5] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(bytes).unwrap();
        assert!(!well_formed(&typo, API_KEY_PREFIX));
        assert!(!well_formed("tg_short", API_KEY_PREFIX));
        assert!(!well_formed(format!("{k}x"), API_KEY_PREFIX));
        assert!(!well_formed(k.replace("tg_", "tg-"), API_KEY_PREFIX));
        // octets that are not text at all (a header value may carry them)
        let mut raw = k.clone().into_bytes();
        raw[5] = 0xff;
        assert!(!well_formed(&raw, API_KEY_PREFIX));
        assert!(well_formed(k.as_bytes(), API_KEY_PREFIX));
    }

    #[test]
    fn hashes_depend_on_the_pepper_and_verify() {
        let p1 = Pepper::new(b"one".to_vec());
        let p2 = Pepper::new(b"two".to_vec());
        let k = generate_api_key();
        let h = p1.hash(k.expose());
        assert_eq!(h.len(), 64);
        assert_ne!(h, p2.hash(k.expose()));
        assert!(p1.verify(k.expose(), &h));
        assert!(!p2.verify(k.expose(), &h));
        assert!(!h.contains(k.expose()));
        assert_eq!(from_hex(&to_hex(b"\x00\xff")), Some(vec![0, 255]));
    }
}
