//! The pretraining loop: for each step, both views of a batch go through the encoder in one
//! forward pass, the contrastive loss compares their projections, and the optimizer updates the
//! weights. Checkpoints are written every `train.checkpoint_every` epochs, at the end, on
//! Ctrl-C and at `--stop-after-steps`; `--resume` continues from the checkpoint exactly (the
//! data order and augmentations are pure functions of the seed, epoch and image).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use selfsup_augment::Augmenter;

use super::loader::{Batch, epoch_order, spawn_epoch};
use super::metrics::{MetricsLog, StepMetrics};
use super::progress::TrainProgress;
use super::run_dir::RunDir;
use super::step::train_step;
use crate::backend::{self, BackendChoice};
use crate::checkpoint::{Checkpoint, Position};
use crate::config::Config;
use crate::data::{Dataset, open_dataset};
use crate::loss::LossKind;
use crate::model::Encoder;
use crate::named_tensors;
use crate::optim::{Optimizer, Schedule};

/// What `selfsup pretrain` was asked to do.
#[derive(Clone, Debug)]
pub struct PretrainOptions {
    pub data: PathBuf,
    pub out: PathBuf,
    /// The configuration of a new run (ignored on resume: the run's own is used).
    pub config: Config,
    /// Overrides `train.backend`.
    pub backend: Option<BackendChoice>,
    pub resume: bool,
    /// Stop (with a checkpoint) once this many optimizer steps are done in total.
    pub stop_after_steps: Option<u64>,
    pub verbose: bool,
}

/// How the run ended.
#[derive(Clone, Debug)]
pub struct PretrainSummary {
    pub position: Position,
    pub last_loss: Option<f32>,
    /// Stopped before the last epoch (Ctrl-C or `--stop-after-steps`).
    pub interrupted: bool,
    pub device: String,
}

/// Everything the loop needs, built once.
struct Trainer<'a> {
    cfg: &'a Config,
    ds: &'a Dataset,
    aug: &'a Augmenter,
    device: Device,
    device_name: String,
    run: RunDir,
    schedule: Schedule,
}

impl Trainer<'_> {
    /// Trains the rest of epoch `pos.epoch`. Returns the model and whether training was asked
    /// to stop (Ctrl-C or `stop_after`) before the epoch's end.
    #[allow(clippy::too_many_arguments)]
    fn epoch(
        &self,
        mut model: Encoder,
        optim: &mut Optimizer,
        pos: &mut Position,
        metrics: &mut MetricsLog,
        progress: &TrainProgress,
        stop: &AtomicBool,
        stop_after: Option<u64>,
        last_loss: &mut Option<f32>,
    ) -> Result<(Encoder, bool)> {
        let cfg = self.cfg;
        let size = self.aug.size();
        let order = epoch_order(self.ds.len(), cfg.seed, pos.epoch);
        let mut window = (Instant::now(), 0u64);
        std::thread::scope(|scope| {
            let batches = spawn_epoch(
                scope,
                self.ds,
                self.aug,
                order,
                cfg.train.batch_size,
                pos.step_in_epoch,
                cfg.seed,
                pos.epoch,
                cfg.train.prefetch,
            );
            for b in batches {
                debug_assert_eq!(b.step_in_epoch, pos.step_in_epoch);
                let lr = self.schedule.lr(pos.global_step);
                let Batch { n, views, labels, .. } = b;
                let x = Tensor::<4>::from_data(TensorData::new(views, [2 * n, 3, size, size]), &self.device);
                let (trained, out) = train_step(model, optim, cfg, x, n, labels.as_deref(), lr)?;
                model = trained;
                let loss = out.loss;
                if !loss.is_finite() {
                    bail!(
                        "the loss became {loss} at step {} (epoch {}): training diverged. Likely causes: a learning rate too high (optim.lr = {}, {lr:.5} at this step) or a temperature too low (loss.temperature = {}). The last good checkpoint, if any, is {}",
                        pos.global_step + 1,
                        pos.epoch + 1,
                        cfg.optim.lr,
                        cfg.loss.temperature,
                        self.run.checkpoint().display()
                    );
                }
                pos.global_step += 1;
                pos.step_in_epoch += 1;
                *last_loss = Some(loss);
                window.1 += n as u64;
                let images_per_sec = window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
                progress.step(loss, lr, images_per_sec);
                if pos.global_step.is_multiple_of(cfg.train.log_every) {
                    let scalar = |t: Tensor<1>| t.try_into_scalar::<f32>().map(f64::from).unwrap_or(f64::NAN);
                    metrics.write(&StepMetrics {
                        step: pos.global_step,
                        epoch: pos.epoch,
                        loss: f64::from(loss),
                        lr,
                        images_per_sec,
                        pos_sim: scalar(out.pos_sim),
                        neg_sim: scalar(out.neg_sim),
                        monitor: None,
                    })?;
                    window = (Instant::now(), 0);
                }
                if stop_after.is_some_and(|s| pos.global_step >= s) || stop.load(Ordering::SeqCst) {
                    return Ok((model, true));
                }
            }
            Ok((model, false))
        })
    }

    fn save(&self, model: &Encoder, optim: &Optimizer, position: Position) -> Result<()> {
        let ck = Checkpoint {
            position,
            model: named_tensors::collect(model),
            optimizer_steps: optim.steps(),
            optimizer: optim.export_state(),
            config: self.cfg.to_toml(),
            notes: [
                ("device".to_string(), self.device_name.clone()),
                ("selfsup".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            ]
            .into_iter()
            .collect(),
        };
        ck.save(&self.run.checkpoint())
            .with_context(|| format!("writing checkpoint {}", self.run.checkpoint().display()))
    }
}

/// Installs a Ctrl-C handler once: the first press asks the loop to stop after the current
/// step (with a checkpoint), a second press exits at once.
fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let _ = ctrlc::set_handler(move || {
            if f.swap(true, Ordering::SeqCst) {
                eprintln!("\ninterrupted again: exiting without a checkpoint");
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: finishing this step and writing a checkpoint (Ctrl-C again to exit now)");
        });
        flag
    })
    .clone()
}

/// Runs (or resumes) a pretraining run.
pub fn pretrain(opts: &PretrainOptions) -> Result<PretrainSummary> {
    let run = RunDir::prepare(&opts.out, opts.resume)?;
    let resumed = if opts.resume { Some(Checkpoint::load(&run.checkpoint())?) } else { None };
    let cfg = match &resumed {
        Some(ck) => Config::from_table(toml::from_str(&ck.config).context("checkpoint config")?)
            .context("the checkpoint's configuration no longer validates")?,
        None => opts.config.clone(),
    };
    let chosen = backend::choose(opts.backend.unwrap_or(cfg.train.backend))?;
    if opts.verbose {
        eprintln!("device: {}", chosen.description);
    }
    crate::atomic::write_bytes(&run.device(), format!("{}\n", chosen.description).as_bytes())?;
    if resumed.is_none() {
        crate::atomic::write_bytes(&run.config(), cfg.to_toml().as_bytes())?;
    }

    let ds = open_dataset(&opts.data, &cfg, opts.verbose)?;
    let batch = cfg.train.batch_size;
    if ds.len() < batch {
        bail!(
            "{}: {} usable images, fewer than one batch (train.batch_size = {batch}); lower the batch size or add images",
            opts.data.display(),
            ds.len()
        );
    }
    if cfg.loss.kind == LossKind::Supcon && !ds.is_labeled() {
        bail!("loss.kind = \"supcon\" needs labels, but {} is not a class-folder dataset", opts.data.display());
    }
    let aug = Augmenter::new(cfg.augment.clone())?;

    let device = chosen.device.clone().autodiff();
    device.seed(cfg.seed);
    let mut model = cfg.model.init(&device);
    let mut optim = Optimizer::new(cfg.optim.clone());
    let mut pos = Position::default();
    if let Some(ck) = &resumed {
        model = named_tensors::apply(model, &ck.model).context("loading the checkpoint's weights")?;
        optim.import_state(ck.optimizer_steps, &ck.optimizer, &device)?;
        pos = ck.position;
        if opts.verbose {
            eprintln!(
                "resuming at epoch {} step {} (global step {})",
                pos.epoch + 1,
                pos.step_in_epoch,
                pos.global_step
            );
        }
    }

    let steps_per_epoch = (ds.len() / batch) as u64;
    let total_steps = steps_per_epoch * cfg.train.epochs;
    let warmup = (cfg.optim.warmup_epochs * steps_per_epoch as f64).round() as u64;
    let schedule =
        Schedule::new(cfg.optim.lr, cfg.optim.lr_scaling, batch, warmup, total_steps, cfg.optim.min_lr_ratio);
    let trainer =
        Trainer { cfg: &cfg, ds: &ds, aug: &aug, device, device_name: chosen.description.clone(), run, schedule };
    let mut metrics = MetricsLog::open(&trainer.run.metrics(), resumed.as_ref().map(|c| c.position.global_step))?;
    let progress = TrainProgress::new(cfg.train.epochs, steps_per_epoch, opts.verbose);
    let stop = interrupt_flag();
    stop.store(false, Ordering::SeqCst);

    let mut last_loss = None;
    while pos.epoch < cfg.train.epochs {
        progress.start_epoch(pos.epoch, pos.step_in_epoch);
        let (trained, interrupted) = trainer.epoch(
            model,
            &mut optim,
            &mut pos,
            &mut metrics,
            &progress,
            &stop,
            opts.stop_after_steps,
            &mut last_loss,
        )?;
        model = trained;
        if interrupted {
            trainer.save(&model, &optim, pos)?;
            progress.finish();
            if opts.verbose {
                eprintln!(
                    "stopped at global step {}; checkpoint written to {} (continue with --resume)",
                    pos.global_step,
                    trainer.run.checkpoint().display()
                );
            }
            return Ok(PretrainSummary { position: pos, last_loss, interrupted: true, device: chosen.description });
        }
        pos.epoch += 1;
        pos.step_in_epoch = 0;
        progress.end_epoch();
        if pos.epoch % cfg.train.checkpoint_every == 0 || pos.epoch == cfg.train.epochs {
            trainer.save(&model, &optim, pos)?;
        }
        if let Some(l) = last_loss {
            progress.println(&format!("epoch {}/{}: loss {l:.4}", pos.epoch, cfg.train.epochs));
        }
    }
    progress.finish();
    Ok(PretrainSummary { position: pos, last_loss, interrupted: false, device: chosen.description })
}
