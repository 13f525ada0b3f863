//! The `tollgate` binary: parse arguments, load the configuration, run.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tollgate::cli;
use tollgate::config::{self, LogFormat};

/// mimalloc instead of the C library's allocator: a proxied request
/// allocates and frees dozens of small buffers, and its thread-local free
/// lists serve them without a lock. It takes the C library's place
/// (`malloc`, `free` and the rest: the crate's `override` feature), and
/// Rust's standard allocator reaches it through `malloc`, mimalloc's plain
/// entry, for every alignment up to 16 bytes. (The crate's own global
/// allocator would call its aligned entry for every allocation, which costs
/// a request about two thousand instructions more: docs/performance.md.)
/// Its version 2 line, not 3: with the same work, 3 kept about 10 MiB more
/// resident once a hundred thousand keys were cached. Built without the
/// `mimalloc` feature (on by default), the process keeps the C library's
/// allocator, for heap profilers that watch it (`benches/heap.sh`).
#[cfg(feature = "mimalloc")]
use mimalloc as _;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "An API gateway that lets only subscribed clients through"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Pretty,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, default_value = "config/tollgate.yaml")]
        config: PathBuf,
        /// Overrides `logging.format` of the configuration.
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
        /// Write the process id to this file (removed at exit).
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Graceful upgrade: take the listening sockets over from the
        /// process named by --pid-file once this one has started cleanly.
        #[arg(long, requires = "pid_file")]
        upgrade: bool,
    },
    /// Check a configuration file: a summary and exit 0, or every error and exit 2.
    CheckConfig {
        #[arg(long, default_value = "config/tollgate.yaml")]
        config: PathBuf,
    },
    /// About the configuration file itself.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Sign in to the portal as an account; `clients`, `keys` and
    /// `subscriptions` then act on the account's own clients.
    Login(cli::LoginArgs),
    /// End the portal session.
    Logout {
        #[arg(short = 'v', long)]
        verbose: bool,
    },
    /// Consumer clients (admin API, or the portal when signed in).
    Clients {
        #[command(flatten)]
        conn: cli::AdminConn,
        #[command(subcommand)]
        cmd: cli::ClientsCmd,
    },
    /// API keys (admin API, or the portal when signed in).
    Keys {
        #[command(flatten)]
        conn: cli::AdminConn,
        #[command(subcommand)]
        cmd: cli::KeysCmd,
    },
    /// Print an access token from the token endpoint (cached until 75% of its lifetime).
    Token(cli::TokenArgs),
    /// Subscriptions (admin API, or the portal when signed in).
    Subscriptions {
        #[command(flatten)]
        conn: cli::AdminConn,
        #[command(subcommand)]
        cmd: cli::SubscriptionsCmd,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the JSON Schema of the configuration file (for editors and linters).
    Schema,
}

fn main() -> ExitCode {
    without_huge_pages();
    // before anything verifies or signs a token: the first use fixes it
    tollgate::auth::jwt::install_crypto_provider();
    let args = Cli::parse();
    match args.command {
        Command::Clients { conn, cmd } => cli::clients(&conn, cmd),
        Command::Keys { conn, cmd } => cli::keys(&conn, cmd),
        Command::Subscriptions { conn, cmd } => cli::subscriptions(&conn, cmd),
        Command::Token(args) => cli::token(args),
        Command::Login(args) => cli::login(args),
        Command::Logout { verbose } => cli::logout(verbose),
        Command::Config {
            cmd: ConfigCmd::Schema,
        } => {
            print!("{}", config::schema_json());
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config } => match config::load(&config) {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("{w}");
                }
                println!("{}", c.summary());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(2)
            }
        },
        Command::Serve {
            config,
            log_format,
            pid_file,
            upgrade,
        } => {
            let config = match config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(2);
                }
            };
            let format = match log_format {
                Some(LogFormatArg::Json) => LogFormat::Json,
                Some(LogFormatArg::Pretty) => LogFormat::Pretty,
                None => config.logging.format,
            };
            tollgate::telemetry::logging::init(format, &config.logging.level);
            let options = tollgate::server::RunOptions { pid_file, upgrade };
            match tollgate::server::run(config, options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tollgate: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Transparent huge pages off for this process, where the kernel gives
/// them to every large mapping (`/sys/kernel/mm/transparent_hugepage/enabled`
/// set to `always`): the allocator's regions would then be resident 2 MiB
/// at a time however little of them is used: about 14 MiB more at start
/// and 23 MiB more with 100,000 clients cached, for no CPU saved that a
/// benchmark shows. Set first thing, before the allocator touches most of its
/// memory (mimalloc is built without its own request for huge pages, which
/// would come before this); a kernel that refuses it changes nothing else.
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
}
