//! API-key shape and checksum: a key that passes is the prefix plus base62
//! characters of the right length, and only such a key is hashed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::secrets::{well_formed, Pepper};

fuzz_target!(|data: &[u8]| {
    for prefix in ["tg_", "tgs_"] {
        if well_formed(data, prefix) {
            assert!(data.starts_with(prefix.as_bytes()));
            assert_eq!(data.len(), prefix.len() + 28);
            assert!(data[prefix.len()..].iter().all(u8::is_ascii_alphanumeric));
            let pepper = Pepper::new(b"fuzz-pepper-0123456789".to_vec());
            assert_eq!(pepper.digest(data), pepper.digest(data));
        }
    }
});
