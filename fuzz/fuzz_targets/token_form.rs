//! The token endpoint's form and client authentication: any body and any
//! Authorization header get an answer, never a panic, and a repeated
//! parameter is never accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::control::token::TokenService;

fuzz_target!(|data: &[u8]| {
    let (auth, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    if let Ok(v) = http::HeaderValue::from_bytes(auth) {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    if let Ok(form) = TokenService::form(&headers, body) {
        let mut names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a repeated parameter was accepted");
        let _ = TokenService::credentials(&headers, &form);
    }
});
