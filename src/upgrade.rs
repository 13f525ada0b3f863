//! Zero-downtime binary upgrade, on Pingora's socket hand-over: a new
//! process started with `serve --upgrade --pid-file P` loads and checks
//! everything first (a bad configuration stops it there, and the old
//! process never hears of it), then asks the process named in `P` to hand
//! over its proxy sockets (SIGQUIT). The old process passes them through
//! the upgrade socket, keeps serving what it has, and drains and exits; no
//! connection is refused in between because the listening sockets are
//! never closed. The admin and metrics sockets are bound by both processes
//! at once (SO_REUSEPORT) until the old one exits.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::server::StartError;

/// Where the old process sends its sockets: beside the pid file (both
/// processes are given the same one), else keyed by the admin port.
pub fn socket_path(pid_file: Option<&Path>, admin: SocketAddr) -> String {
    match pid_file {
        Some(p) => {
            let mut s = p.as_os_str().to_owned();
            s.push(".upgrade.sock");
            PathBuf::from(s).display().to_string()
        }
        None => format!("/tmp/tollgate-upgrade-{}.sock", admin.port()),
    }
}

/// The running process named by the pid file.
pub fn old_process(pid_file: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| format!("cannot read the pid file {}: {e}", pid_file.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{} does not hold a process id", pid_file.display()))?;
    if pid <= 0 || pid == std::process::id() as i32 {
        return Err(format!("{} names no other process", pid_file.display()));
    }
    kill(Pid::from_raw(pid), None).map_err(|e| {
        format!(
            "process {pid} from {} is not running: {e}",
            pid_file.display()
        )
    })?;
    // a stale pid file may name a pid the system has since reused: never
    // send SIGQUIT (whose default is to kill) to anything but a gateway
    if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
        if !cmdline.split(|b| *b == 0).any(|arg| arg == b"serve") {
            return Err(format!(
                "process {pid} from {} is not a `tollgate serve`; refusing to signal it",
                pid_file.display()
            ));
        }
    }
    Ok(pid)
}

/// SIGQUIT: Pingora's signal to hand the listening sockets over and drain.
pub fn ask_to_hand_over(pid: i32) -> Result<(), String> {
    kill(Pid::from_raw(pid), Signal::SIGQUIT)
        .map_err(|e| format!("cannot signal process {pid}: {e}"))
}

/// Write our pid (atomically: a reader never sees half a file).
pub fn write_pid_file(file: &Path) -> Result<(), String> {
    let tmp = file.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|_| std::fs::rename(&tmp, file))
        .map_err(|e| format!("cannot write the pid file {}: {e}", file.display()))
}

/// Remove the pid file at exit, unless a newer process has written its own.
pub fn remove_pid_file(file: &Path) {
    let ours = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if ours {
        let _ = std::fs::remove_file(file);
    }
}

/// A listener that a second process may bind too (SO_REUSEPORT). With
/// `exclusive_check`, a plain bind is tried first, so a port held by any
/// other program (or another gateway) is still a clear start-up error.
pub fn bind_shared(
    addr: SocketAddr,
    what: &'static str,
    exclusive_check: bool,
) -> Result<TcpListener, StartError> {
    if exclusive_check {
        drop(crate::server::bind(addr, what)?);
    }
    let err = |source: std::io::Error| StartError::Bind { addr, what, source };
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        .map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_reuse_port(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_running_gateway_is_asked_to_hand_over() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tollgate.pid");
        assert!(old_process(&file).unwrap_err().contains("cannot read"));

        std::fs::write(&file, "not a pid").unwrap();
        assert!(old_process(&file).unwrap_err().contains("does not hold"));

        std::fs::write(&file, std::process::id().to_string()).unwrap();
        assert!(old_process(&file).unwrap_err().contains("no other process"));

        // a live process that is not a gateway (a reused pid)
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(&file, other.id().to_string()).unwrap();
        let refused = old_process(&file).unwrap_err();
        other.kill().unwrap();
        other.wait().unwrap();
        assert!(refused.contains("not a `tollgate serve`"), "{refused}");

        // and one that is gone
        assert!(old_process(&file).unwrap_err().contains("not running"));
    }

    #[test]
    fn the_upgrade_socket_sits_beside_the_pid_file() {
        let admin: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        assert_eq!(
            socket_path(Some(Path::new("/run/tollgate/tollgate.pid")), admin),
            "/run/tollgate/tollgate.pid.upgrade.sock"
        );
        assert_eq!(socket_path(None, admin), "/tmp/tollgate-upgrade-8081.sock");
    }
}
