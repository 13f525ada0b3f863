//! The YAML configuration loader: any text gets a configuration or errors
//! with positions, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = tollgate::config::parse(text, std::path::Path::new("fuzz.yaml")) {
        assert!(!errors.0.is_empty());
        for e in &errors.0 {
            assert!(e.line >= 1 && e.col >= 1, "{e}");
        }
    }
});
