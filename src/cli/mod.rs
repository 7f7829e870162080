//! The `selfsup` command line: argument definitions (clap derive) and dispatch to one module
//! per subcommand.

mod bench;
mod pretrain;
mod preview;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

/// Self-supervised (SimCLR) pretraining of vision encoders.
#[derive(Parser, Debug)]
#[command(name = "selfsup", version, about, propagate_version = true)]
pub struct Cli {
    /// Worker threads for decoding, augmentation and CPU compute (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// No progress bars or informational messages (errors and warnings still go to stderr).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a PNG grid of images and their two augmented views, to check the augmentations.
    Preview(preview::PreviewArgs),
    /// Pretrain an encoder with SimCLR on a folder of images.
    Pretrain(pretrain::PretrainArgs),
    /// Measure the throughput of a pipeline stage on this machine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// The configuration options every command that reads a configuration shares.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// TOML configuration file (see configs/); defaults are used for keys it omits.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a configuration key, e.g. --set augment.flip.p=0.3 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

impl ConfigArgs {
    pub fn load(&self) -> Result<crate::config::Config> {
        crate::config::Config::load(self.config.as_deref(), &self.sets)
    }
}

/// Parses the command line and runs the command.
pub fn run(cli: Cli) -> Result<()> {
    if let Some(n) = cli.threads {
        anyhow::ensure!(n >= 1, "--threads must be at least 1");
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global()?;
    }
    let verbose = !cli.quiet;
    match cli.command {
        Command::Preview(args) => preview::run(args, verbose),
        Command::Pretrain(args) => pretrain::run(args, verbose),
        Command::Bench(cmd) => bench::run(cmd, cli.threads),
    }
}
