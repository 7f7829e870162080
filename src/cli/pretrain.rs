//! `selfsup pretrain`: train an encoder on a folder of images.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::ConfigArgs;
use crate::backend::BackendChoice;
use crate::train::run_dir::{Resume, checkpoint_path};
use crate::train::{PretrainOptions, pretrain};

#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// Training images: an image folder (labels unused unless loss.kind = "supcon"), CIFAR
    /// binaries or IDX files.
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder (created); holds config.toml, metrics.jsonl and checkpoint.safetensors.
    #[arg(long)]
    pub out: PathBuf,
    /// Backend; overrides train.backend (default: auto = a GPU if wgpu finds one, else flex).
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Continue the run in --out from its checkpoint, with the run's own configuration (a
    /// --config/--set given too must resolve to it). --resume=auto continues when --out holds a
    /// checkpoint and starts a new run otherwise: the one flag a requeued cluster job needs.
    #[arg(
        long,
        value_enum,
        num_args = 0..=1,
        require_equals = true,
        default_value = "no",
        default_missing_value = "yes",
        hide_possible_values = true,
        value_name = "auto"
    )]
    pub resume: Resume,
    /// Continue the run in --out from this checkpoint file (e.g. an earlier one kept in
    /// --out/checkpoints/ by train.keep_checkpoints) instead of its latest.
    #[arg(long, value_name = "CHECKPOINT")]
    pub resume_from: Option<PathBuf>,
    /// Start the backbone from existing weights (a new run; ignored on resume): a torchvision or
    /// timm ResNet state_dict saved as safetensors (e.g. ImageNet weights), a selfsup
    /// checkpoint, run folder or export. The projection head starts fresh.
    #[arg(long, value_name = "WEIGHTS")]
    pub init: Option<PathBuf>,
    /// Stop after this many optimizer steps in total, writing a checkpoint (resumable); 0 writes
    /// the initial weights (e.g. after --init) without training.
    #[arg(long, value_name = "STEPS")]
    pub stop_after_steps: Option<u64>,
    /// End the run (keeping the last good checkpoint) when a collapse rule fires.
    #[arg(long)]
    pub stop_on_collapse: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

pub fn run(args: PretrainArgs, verbose: bool) -> Result<()> {
    let config_given = args.config.config.is_some() || !args.config.sets.is_empty();
    let resume = if args.resume_from.is_some() { Resume::Yes } else { args.resume };
    if args.resume_from.is_some() && args.resume == Resume::Auto {
        bail!("--resume-from names the checkpoint to continue from; it cannot be combined with --resume=auto");
    }
    let config = args.config.load()?;
    let summary = pretrain(&PretrainOptions {
        data: args.data,
        out: args.out.clone(),
        config,
        config_given,
        backend: args.backend,
        resume,
        resume_from: args.resume_from,
        init: args.init.map(|p| checkpoint_path(&p).unwrap_or(p)),
        stop_after_steps: args.stop_after_steps,
        stop_on_collapse: args.stop_on_collapse,
        verbose,
    })?;
    if verbose {
        let loss = summary.last_loss.map_or("-".to_string(), |l| format!("{l:.4}"));
        let state = if summary.interrupted { "stopped" } else { "finished" };
        eprintln!(
            "{state}: epoch {} step {} (global step {}), last loss {loss}; run folder {}",
            summary.position.epoch,
            summary.position.step_in_epoch,
            summary.position.global_step,
            args.out.display()
        );
    }
    Ok(())
}
