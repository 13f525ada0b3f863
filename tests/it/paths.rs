//! Routes match the normalized path, and the upstream receives the path the
//! routing decision saw: no spelling of a path reaches a route (or an
//! upstream path) that its normalized form would not.

use std::time::Duration;

use crate::harness::{raw_get, raw_request, Gateway, Upstream};

fn gateway(public: &Upstream, admin: &Upstream) -> Gateway {
    Gateway::start(&format!(
        r#"
services:
  public: {{ upstreams: ["{}"] }}
  admin: {{ upstreams: ["{}"] }}
routes:
  - {{ name: public, match: {{ path_prefix: /public }}, service: public, auth: public }}
  - {{ name: admin, match: {{ path_prefix: /admin }}, service: admin, auth: [api_key] }}
"#,
        public.target(),
        admin.target()
    ))
}

#[test]
fn tricks_cannot_reach_the_protected_upstream() {
    let public = Upstream::start("public");
    let admin = Upstream::start("admin");
    let gw = gateway(&public, &admin);
    // Each spelling either normalizes to /admin (and meets its auth) or
    // matches no route; none reaches an upstream.
    let cases = [
        ("/public/../admin", 401),
        ("//admin", 401),
        ("/%61dmin", 401),
        ("/public/%2e%2e/admin", 401),
        ("/./admin/", 401),
        ("/admin%2f..", 404),
        ("/ADMIN", 404),
        ("/admin;x", 404),
        ("/adminx", 404),
    ];
    for (path, want) in cases {
        let r = raw_get(gw.proxy, path);
        assert_eq!(r.status, want, "{path}: {r:?}");
        if want == 401 {
            // it met the admin route's auth: no credential
            assert_eq!(r.json()["error"], "missing_credentials", "{path}: {r:?}");
            assert_eq!(
                r.header("www-authenticate").as_deref(),
                Some("Bearer realm=\"tollgate\""),
                "{path}"
            );
        } else {
            assert_eq!(r.json()["error"], "not_found", "{path}: {r:?}");
        }
    }
    assert_eq!(admin.count(), 0, "admin upstream must see nothing");
    assert_eq!(
        public.count(),
        0,
        "public upstream must see nothing: {:?}",
        public.requests()
    );
}

#[test]
fn upstream_receives_the_normalized_path() {
    let public = Upstream::start("public");
    let admin = Upstream::start("admin");
    let gw = gateway(&public, &admin);
    let cases = [
        ("/public/./x//y", "/public/x/y"),
        ("/public/a/../b?q=1&r=%2F", "/public/b?q=1&r=%2F"),
        ("/public/%7Euser", "/public/~user"),
        ("/public/a%2fb", "/public/a%2Fb"),
        ("/public", "/public"),
    ];
    for (sent, want) in cases {
        let r = raw_get(gw.proxy, sent);
        assert_eq!(r.status, 200, "{sent}: {r:?}");
        let last = public.requests().pop().expect("request reached upstream");
        assert_eq!(last.uri, want, "{sent}");
    }
}

#[test]
fn malformed_paths_are_400() {
    let public = Upstream::start("public");
    let admin = Upstream::start("admin");
    let gw = gateway(&public, &admin);
    for path in ["/public/%zz", "/public/%4", "/public\\..\\admin"] {
        // a request that asks to keep the connection: the answer closes it
        let r = raw_request(
            gw.proxy,
            format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        );
        assert_eq!(r.status, 400, "{path}: {r:?}");
        assert_eq!(r.json()["error"], "bad_request", "{path}: {r:?}");
        assert_eq!(r.header("connection").as_deref(), Some("close"), "{path}");
        assert!(
            r.closed,
            "{path}: the connection is closed after the answer"
        );
    }
    assert_eq!(public.count() + admin.count(), 0);
}
