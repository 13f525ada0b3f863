use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn main() {
    // sqlx::migrate! embeds the migration files at compile time but does not
    // notice a new file; rebuild when the folder changes (as sqlx advises).
    println!("cargo:rerun-if-changed=migrations");

    // Tests that need PostgreSQL and Redis run only when both are there:
    // named by TOLLGATE_TEST_PG_URL / TOLLGATE_TEST_REDIS_URL, or the local
    // services answering on their usual ports. Otherwise they are built
    // `#[ignore]`d (see `cfg_attr(not(tollgate_services), ignore = …)`), so
    // cargo lists them as ignored rather than counting them as passed.
    println!("cargo:rustc-check-cfg=cfg(tollgate_services)");
    println!("cargo:rerun-if-env-changed=TOLLGATE_TEST_PG_URL");
    println!("cargo:rerun-if-env-changed=TOLLGATE_TEST_REDIS_URL");
    // Cargo does not notice a service coming or going; scripts/test sets
    // this to what it found, so a change there runs this script again.
    println!("cargo:rerun-if-env-changed=TOLLGATE_SERVICES_PROBE");
    let postgres = named("TOLLGATE_TEST_PG_URL") || answers(5432);
    let redis = named("TOLLGATE_TEST_REDIS_URL") || answers(6379);
    if postgres && redis {
        println!("cargo:rustc-cfg=tollgate_services");
    }
}

fn named(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty())
}

/// Whether something accepts a TCP connection on 127.0.0.1:`port`.
fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}
