//! `check-config` and `serve` on good and bad configuration files.

use std::process::Command;

use crate::harness::{bin, check_config as check, free_port, repo_path};

#[test]
fn every_shipped_config_checks() {
    let mut seen = 0;
    for dir in ["config", "config/examples"] {
        let Ok(entries) = std::fs::read_dir(repo_path(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let (code, out, err) = check(&p);
                assert_eq!(code, 0, "{}: {err}", p.display());
                assert_eq!(out.lines().count(), 1, "one-line summary: {out}");
                assert!(out.contains(": ok ("), "{out}");
                seen += 1;
            }
        }
    }
    assert!(seen >= 1, "no shipped configs found");
}

#[test]
fn every_error_is_reported_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.yaml");
    std::fs::write(
        &p,
        "server:\n  listen: [nowhere]\n  colour: blue\nservices:\n  s: { upstreams: [\"127.0.0.1:1\"], timeouts: { read: soon } }\nroutes:\n  - name: r\n    match: { path_prefix: /r }\n    service: ghost\n    auth: public\n",
    )
    .unwrap();
    let (code, out, err) = check(&p);
    assert_eq!(code, 2);
    assert!(out.is_empty(), "{out}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    let prefix = format!("{}:", p.display());
    for l in &lines {
        let rest = l.strip_prefix(&prefix).unwrap_or_else(|| panic!("{l}"));
        let mut parts = rest.splitn(3, ':');
        let line: usize = parts.next().unwrap().parse().expect("line number");
        let col: usize = parts.next().unwrap().parse().expect("column number");
        assert!(line >= 1 && col >= 1, "{l}");
    }
    assert!(lines[0].contains(":2:12: server.listen[0]"), "{}", lines[0]);
    assert!(
        lines[1].contains(":3:3: server.colour: unknown field"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("services.s.timeouts.read: invalid duration"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].contains(":9:14: routes[0].service"),
        "{}",
        lines[3]
    );
}

#[test]
fn malformed_yaml_missing_file_and_wrong_types_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("syntax.yaml", "routes: [\n  - {name: x\n", "invalid YAML"),
        (
            "types.yaml",
            "server: { threads: many }\n",
            "server.threads: invalid type",
        ),
        ("toplevel.yaml", "- just\n- a list\n", "must be a mapping"),
        ("section.yaml", "route: []\n", "unknown section `route`"),
    ];
    for (name, text, want) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let (code, _, err) = check(&p);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, _, err) = check(&dir.path().join("absent.yaml"));
    assert_eq!(code, 2);
    assert!(err.contains("cannot read configuration file"), "{err}");
}

#[test]
fn serve_refuses_bad_config_and_taken_ports_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "routes: 7\n").unwrap();
    let out = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("routes: expected a list"), "{err}");

    // a port that is already taken
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let good = dir.path().join("taken.yaml");
    std::fs::write(
        &good,
        format!(
            "server: {{ listen: [\"127.0.0.1:{port}\"] }}\nadmin: {{ listen: \"127.0.0.1:{}\" }}\nmetrics: {{ listen: \"127.0.0.1:{}\" }}\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&good)
        .env("TOLLGATE_ADMIN_TOKEN", "t")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port} (proxy)")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
