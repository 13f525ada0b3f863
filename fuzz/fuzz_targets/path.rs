//! Path normalization: what the router sees is what the upstream gets, so
//! a normal path must be a fixed point, absolute, and free of dot segments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::path::normalize_path;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = normalize_path(data) {
        assert!(p.starts_with('/'), "{p:?}");
        assert_eq!(normalize_path(p.as_bytes()).as_deref(), Ok(p.as_str()), "not a fixed point");
        for seg in p.split('/').skip(1) {
            assert!(seg != ".." && seg != ".", "dot segment left in {p:?}");
        }
        assert!(!p.contains("//"), "empty segment left in {p:?}");
    }
});
