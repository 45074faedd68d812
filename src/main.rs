//! The `herald` command: parses the CLI and starts the app. Nothing else lives here.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use herald::config::{process_env, LoadedConfig};

/// jemalloc instead of the system allocator: the send path allocates small buffers on one
/// thread and drops them on another, where glibc's arenas spent a fifth of the CPU.
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "High-throughput message dispatch gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Configuration file; without it the embedded defaults (config/herald.toml) are used.
        #[arg(long, env = "HERALD_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address, overriding the config.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory, overriding the config.
        #[arg(long)]
        data_dir: Option<String>,
        /// Serve the public demo API key on a non-loopback address anyway (a demo on
        /// purpose); without it, or HERALD_ALLOW_DEMO_KEY=1, such a start is refused.
        #[arg(long)]
        allow_demo_key: bool,
        /// Log lines as text or as one JSON object per line.
        #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value = "text")]
        log_format: herald::app::LogFormat,
        /// Export spans to this OpenTelemetry collector URL over OTLP/HTTP (JSON), e.g.
        /// http://127.0.0.1:4318/v1/traces. None are exported without it.
        #[arg(long, env = "HERALD_OTLP_ENDPOINT")]
        otlp_endpoint: Option<String>,
    },
    /// Print the embedded default configuration.
    DefaultConfig,
    /// Cost-ledger tools.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Check the ledger's hash chain; exits non-zero if an entry was modified, deleted or
    /// reordered. Run it on a stopped gateway (the database is locked while herald runs).
    Verify {
        /// Configuration file whose data directory holds the ledger.
        #[arg(long, env = "HERALD_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory, overriding the config.
        #[arg(long)]
        data_dir: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
            allow_demo_key,
            log_format,
            otlp_endpoint,
        } => {
            let _spans = herald::app::init_tracing(log_format, otlp_endpoint.as_deref())?;
            let mut loaded = LoadedConfig::load(config.as_deref(), &process_env)?;
            if let Some(addr) = listen {
                loaded.config.server.listen = addr;
            }
            if let Some(dir) = data_dir {
                loaded.config.server.data_dir = dir;
            }
            if allow_demo_key {
                loaded.config.auth.allow_demo_key = true;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(herald::app::serve(loaded))
        }
        Command::Ledger {
            command: LedgerCommand::Verify { config, data_dir },
        } => {
            let loaded = LoadedConfig::load(config.as_deref(), &process_env)?;
            let dir = data_dir.unwrap_or(loaded.config.server.data_dir);
            let path = std::path::Path::new(&dir).join(herald::app::DATABASE_FILE);
            if !path.exists() {
                anyhow::bail!("no ledger at {}", path.display());
            }
            match herald::ledger::store::verify_path(&path) {
                Ok(report) => {
                    println!(
                        "ledger intact: {} entries, head hash {}",
                        report.entries, report.head_hash
                    );
                    Ok(())
                }
                Err(e) => {
                    eprintln!("LEDGER TAMPERED: {e}");
                    std::process::exit(2);
                }
            }
        }
        Command::DefaultConfig => {
            print!("{}", herald::config::DEFAULT_TOML);
            Ok(())
        }
    }
}
