//! tracing subscriber: pretty or JSON lines on stdout; `RUST_LOG`, when
//! set, overrides the configured level. Pingora's `log` records are
//! bridged into the same output, with its reports of what a client did
//! wrong lowered from error to debug: the error log is for the gateway.

use tracing_log::AsLog;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat, level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(std::io::stdout);
    let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = match format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .finish(),
        ),
        LogFormat::Pretty => Box::new(builder.compact().finish()),
    };
    if let Err(e) = tracing::subscriber::set_global_default(subscriber) {
        eprintln!("tollgate: logging already initialised: {e}");
        return;
    }
    if log::set_boxed_logger(Box::new(PingoraLog)).is_ok() {
        log::set_max_level(tracing::level_filters::LevelFilter::current().as_log());
    }
}

/// Forwards `log` records (Pingora's) to tracing.
struct PingoraLog;

/// The level a record of Pingora's is logged at, where it differs from
/// Pingora's own. Pingora logs at error level:
/// - when a client closes its connection or sends a broken head or body;
///   the gateway counts those (`tollgate_client_errors_total`) and keeps
///   them at debug;
/// - when a pooled upstream connection it was handing out is still held by
///   its idle watcher; Pingora then opens a new connection and the request
///   goes on unharmed, so it is a warning, not an error.
fn relevel(record: &log::Record<'_>) -> Option<log::Level> {
    if record.level() != log::Level::Error || !record.target().starts_with("pingora") {
        return None;
    }
    let text = record.args().to_string();
    // an HTTP/1 request, or an HTTP/2 connection preface, that the client
    // broke or abandoned
    if text.starts_with("Fail to proxy: Downstream") || text.starts_with("H2 handshake error") {
        return Some(log::Level::Debug);
    }
    if text == "failed to acquire reusable stream" {
        return Some(log::Level::Warn);
    }
    None
}

impl log::Log for PingoraLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if let Some(level) = relevel(record) {
            let lowered = log::Record::builder()
                .args(*record.args())
                .level(level)
                .target(record.target())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build();
            let _ = tracing_log::format_trace(&lowered);
            return;
        }
        let _ = tracing_log::format_trace(record);
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::relevel;
    use log::Level;

    fn is_client_fault(r: &log::Record<'_>) -> bool {
        relevel(r) == Some(Level::Debug)
    }

    fn record(level: log::Level, target: &str, text: &str, check: impl FnOnce(&log::Record<'_>)) {
        check(
            &log::Record::builder()
                .args(format_args!("{text}"))
                .level(level)
                .target(target)
                .build(),
        );
    }

    #[test]
    fn only_pingoras_downstream_failures_are_client_faults() {
        record(
            log::Level::Error,
            "pingora_proxy",
            "Fail to proxy: Downstream ConnectionClosed context: while reading request headers",
            |r| assert!(is_client_fault(r)),
        );
        record(
            log::Level::Error,
            "pingora_proxy",
            "Fail to proxy: Upstream ConnectRefused",
            |r| assert!(!is_client_fault(r)),
        );
        record(
            log::Level::Warn,
            "pingora_proxy",
            "Fail to proxy: Downstream ConnectionClosed",
            |r| assert!(!is_client_fault(r)),
        );
        record(
            log::Level::Error,
            "pingora_core::apps",
            "H2 handshake error connection error: reset",
            |r| assert!(is_client_fault(r)),
        );
        record(
            log::Level::Error,
            "tollgate",
            "Fail to proxy: Downstream x",
            |r| assert!(!is_client_fault(r)),
        );
    }

    #[test]
    fn a_pooled_connection_taken_back_in_a_race_is_a_warning() {
        record(
            log::Level::Error,
            "pingora_core::connectors",
            "failed to acquire reusable stream",
            |r| assert_eq!(relevel(r), Some(Level::Warn)),
        );
        record(
            log::Level::Error,
            "pingora_core::connectors",
            "failed to acquire reusable stream: something else",
            |r| assert_eq!(relevel(r), None),
        );
    }
}
