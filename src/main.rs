//! The `herald` command: parses the CLI and starts the app. Nothing else lives here.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use herald::config::{process_env, LoadedConfig};

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
    },
    /// Print the embedded default configuration.
    DefaultConfig,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
        } => {
            herald::app::init_tracing();
            let mut loaded = LoadedConfig::load(config.as_deref(), &process_env)?;
            if let Some(addr) = listen {
                loaded.config.server.listen = addr;
            }
            if let Some(dir) = data_dir {
                loaded.config.server.data_dir = dir;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(herald::app::serve(loaded))
        }
        Command::DefaultConfig => {
            print!("{}", herald::config::DEFAULT_TOML);
            Ok(())
        }
    }
}
