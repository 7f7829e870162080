//! The pretraining loop: for each step, the views of a batch go through the encoder (one
//! forward pass per resolution, or per micro-batch with gradient caching), the contrastive loss
//! compares their projections, and the optimizer updates the weights (see [`super::step`]).
//! Checkpoints are written every `train.checkpoint_every` epochs, every
//! `train.checkpoint_every_steps` steps and `train.checkpoint_every_minutes` minutes, at the end,
//! on SIGTERM/SIGINT/SIGUSR1 ([`super::signals`]) and at `--stop-after-steps`; `--resume`
//! continues from any of them exactly, mid-epoch included (the data order and augmentations are
//! pure functions of the seed, epoch and image).
//! Collapse statistics, the online k-NN and the online linear classifier's accuracy are
//! computed on held-out images (see [`crate::eval::monitor`]); the classifier itself trains in
//! every step ([`super::online_linear`]).
//!
//! Under `mpirun`/`srun` each rank runs this loop on its share of every step
//! ([`crate::dist`]); rank 0 alone prints, monitors, and writes the run folder, and the
//! checkpoint is the same whatever the number of ranks, so a run may resume with another.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use selfsup_augment::Augmenter;

use super::loader::{Shard, ViewMakers, dataset_order, spawn_epoch};
use super::metrics::{MetricsLog, StepMetrics};
use super::online_linear::OnlineLinear;
use super::progress::TrainProgress;
use super::resume::{check_same_config, read_checkpoint};
use super::run_dir::{Resume, RunDir};
use super::signals::{StopRequest, StoppedBySignal};
use super::step::{StepAt, train_step};
use crate::backend::{self, BackendChoice};
use crate::checkpoint::{Checkpoint, Position};
use crate::config::Config;
use crate::data::{Dataset, open_dataset};
use crate::dist::{self, World};
use crate::eval::monitor::{LinearRecord, Monitor, split_holdout};
use crate::loss::LossKind;
use crate::method::{MethodState, Weights};
use crate::model::Encoder;
use crate::named_tensors;
use crate::optim::{Optimizer, Schedule};

/// What `selfsup pretrain` was asked to do.
#[derive(Clone, Debug)]
pub struct PretrainOptions {
    pub data: PathBuf,
    pub out: PathBuf,
    /// The configuration of a new run. On resume the run's own is used, and when
    /// `config_given` this one must resolve to it.
    pub config: Config,
    /// The command line gave `--config`/`--set` (so `config` is what the user asked for).
    pub config_given: bool,
    /// Overrides `train.backend`.
    pub backend: Option<BackendChoice>,
    pub resume: Resume,
    /// Resume from this checkpoint file instead of the run folder's latest (an earlier kept one).
    pub resume_from: Option<PathBuf>,
    /// A new run starts its backbone from these weights (see [`crate::interop::torch_file`]).
    pub init: Option<PathBuf>,
    /// Stop (with a checkpoint) once this many optimizer steps are done in total.
    pub stop_after_steps: Option<u64>,
    /// Stop when a collapse rule fires (also `monitor.stop_on_collapse`).
    pub stop_on_collapse: bool,
    pub verbose: bool,
}

/// How the run ended.
#[derive(Clone, Debug)]
pub struct PretrainSummary {
    pub position: Position,
    pub last_loss: Option<f32>,
    /// Stopped before the last epoch by `--stop-after-steps`. (A signal ends the run with the
    /// error [`StoppedBySignal`].)
    pub interrupted: bool,
    pub device: String,
}

/// Everything the loop needs, built once.
struct Trainer<'a> {
    cfg: &'a Config,
    /// The whole dataset (the monitor's images are indices into it).
    full: &'a Dataset,
    /// The images trained on (the whole dataset minus the held-out ones).
    train: &'a Dataset,
    /// The augmentation at `augment.size` (the monitor's; and training's unless scheduled).
    aug: &'a Augmenter,
    /// The augmentations of the other sizes `augment.size_schedule` trains at, by size.
    scheduled: HashMap<u32, Augmenter>,
    /// Multi-crop's small views (`augment.small_views`), if any.
    small: Option<Augmenter>,
    device: Device,
    device_name: String,
    run: RunDir,
    schedule: Schedule,
    steps_per_epoch: u64,
    /// Steps of the whole run.
    total_steps: u64,
    monitor: Option<Monitor>,
    stop_on_collapse: bool,
    /// Training seconds before this process started (from the checkpoint).
    elapsed_before: f64,
    started: Instant,
    /// The ranks training together (one process: a world of one).
    world: World,
    /// When the last checkpoint was written (or the run started).
    last_save: Cell<Instant>,
    /// The `--init` file the run's backbone started from, kept in the checkpoint's notes.
    init: Option<String>,
}

/// How an epoch ended.
enum EpochEnd {
    /// Its last step is done; `checkpoint_due`: the step or minute cadence asks for a checkpoint.
    Finished { checkpoint_due: bool },
    /// Stopped before its end by `--stop-after-steps` or a signal (on any rank).
    Stopped { by_signal: bool },
}

/// Parameters are compared across ranks every this many steps (and at each checkpoint).
const CHECK_EVERY: u64 = 100;

/// The loop's mutable state. (`model` is only `None` for the duration of a step.)
struct State {
    model: Option<Encoder>,
    /// The method's teacher, queue, centre.
    method: MethodState,
    /// The online linear classifier (labelled data, `monitor.linear`).
    online: Option<OnlineLinear>,
    optim: Optimizer,
    pos: Position,
    last_loss: Option<f32>,
    collapsed: bool,
}

impl Trainer<'_> {
    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.started.elapsed().as_secs_f64()
    }

    /// The network that evaluation uses by default ([`crate::method::MethodKind::default_weights`]):
    /// what the monitor and the online k-NN measure.
    fn watched<'s>(&self, student: &'s Encoder, method: &'s MethodState) -> &'s Encoder {
        match (self.cfg.method.kind.default_weights(), &method.teacher) {
            (Weights::Teacher, Some(t)) => t,
            _ => student,
        }
    }

    /// Trains the rest of epoch `pos.epoch`, writing the checkpoints its cadence asks for.
    fn epoch(
        &self,
        st: &mut State,
        metrics: &mut Option<MetricsLog>,
        progress: &TrainProgress,
        stop: &StopRequest,
        stop_after: Option<u64>,
    ) -> Result<EpochEnd> {
        let cfg = self.cfg;
        let aug = self.scheduled.get(&cfg.augment.size_at(st.pos.epoch, cfg.train.epochs)).unwrap_or(self.aug);
        let size = aug.size();
        let makers = ViewMakers { full: aug, small: self.small.as_ref() };
        let order = dataset_order(self.train, cfg.seed, st.pos.epoch, cfg.data.shuffle_buffer);
        let mut window = (Instant::now(), 0u64);
        let inner = self.device.clone().inner();
        std::thread::scope(|scope| {
            let batches = spawn_epoch(
                scope,
                self.train,
                makers,
                order,
                cfg.train.batch_size,
                Shard { rank: self.world.rank(), ranks: self.world.size() },
                st.pos.step_in_epoch,
                cfg.seed,
                st.pos.epoch,
                cfg.train.prefetch,
            );
            for b in batches {
                debug_assert_eq!(b.step_in_epoch, st.pos.step_in_epoch);
                let lr = self.schedule.lr(st.pos.global_step);
                let (n, input) = (b.n, b.to_device(&self.device));
                let model = st.model.take().expect("model present between steps");
                let at = StepAt { lr, step: st.pos.global_step, total_steps: self.total_steps, epoch: st.pos.epoch };
                let labels = b.labels.as_deref();
                let (trained, out) = train_step(
                    model,
                    &mut st.method,
                    &mut st.optim,
                    cfg,
                    input,
                    labels,
                    at,
                    &self.world,
                    st.online.as_mut(),
                )?;
                st.model = Some(trained);
                let model = st.model.as_ref().expect("just set");
                // The network evaluation uses (DINO: the teacher), which the monitor watches.
                let watched = self.watched(model, &st.method);
                let loss = out.loss;
                if !loss.is_finite() {
                    use crate::method::MethodKind;
                    let temperature = match cfg.method.kind {
                        MethodKind::Simclr | MethodKind::Moco | MethodKind::Mocov3 | MethodKind::Nnclr => {
                            format!(" or a temperature too low (loss.temperature = {})", cfg.loss.temperature)
                        }
                        MethodKind::Dino => format!(
                            " or a temperature too low (method.student_temperature = {}, method.teacher_temperature = {})",
                            cfg.method.student_temperature, cfg.method.teacher_temperature
                        ),
                        _ => String::new(),
                    };
                    bail!(
                        "the loss became {loss} at step {} (epoch {}): training diverged. Likely causes: a learning rate too high (optim.lr = {}, {lr:.5} at this step){temperature}. The last good checkpoint, if any, is {}",
                        st.pos.global_step + 1,
                        st.pos.epoch + 1,
                        cfg.optim.lr,
                        self.run.checkpoint().display()
                    );
                }
                st.pos.global_step += 1;
                st.pos.step_in_epoch += 1;
                st.last_loss = Some(loss);
                window.1 += (n * self.world.size()) as u64;
                if st.pos.global_step.is_multiple_of(CHECK_EVERY) {
                    dist::grads::check_same(&*self.world, model, st.pos.global_step)?;
                }
                let pairs_per_sec = window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
                progress.step(loss, lr, pairs_per_sec);

                let mut record = None;
                if let Some(m) = self.monitor.as_ref().filter(|m| m.due(st.pos.global_step)) {
                    let r = m.stats(watched, &inner);
                    if !r.collapse.is_empty() {
                        if !st.collapsed || self.stop_on_collapse {
                            progress.warn(&format!(
                                "representation collapse at step {}: {}",
                                st.pos.global_step,
                                r.collapse.join("; ")
                            ));
                        }
                        if self.stop_on_collapse {
                            bail!(
                                "stopping on collapse at step {} (--stop-on-collapse): {}. The last good checkpoint, if any, is {}",
                                st.pos.global_step,
                                r.collapse.join("; "),
                                self.run.checkpoint().display()
                            );
                        }
                    } else if st.collapsed {
                        progress.println(&format!("step {}: the collapse rules no longer fire", st.pos.global_step));
                    }
                    st.collapsed = !r.collapse.is_empty();
                    record = Some(r);
                }
                let last_of_epoch = st.pos.step_in_epoch == self.steps_per_epoch;
                if let Some(m) = self.monitor.as_ref().filter(|m| last_of_epoch && m.knn_due(st.pos.epoch + 1)) {
                    let k = m.knn(watched, &inner, self.full, self.aug);
                    progress.println(&format!(
                        "epoch {}: online k-NN top-1 {:.2}% (k = {})",
                        st.pos.epoch + 1,
                        100.0 * k.top1,
                        k.k
                    ));
                    record.get_or_insert_with(Default::default).knn = Some(k);
                }
                // The classifier learns from the student's features: measured through the student.
                if let (Some(m), Some(o), true) = (self.monitor.as_ref(), st.online.as_ref(), last_of_epoch) {
                    let (features, labels) = m.holdout_features(model, &inner, self.full, self.aug);
                    let r = LinearRecord { top1: o.top1(&features, &labels), images: labels.len() };
                    progress.println(&format!(
                        "epoch {}: online linear top-1 {:.2}% ({} held-out images)",
                        st.pos.epoch + 1,
                        100.0 * r.top1,
                        r.images
                    ));
                    record.get_or_insert_with(Default::default).linear = Some(r);
                }
                if let Some(metrics) = metrics.as_mut()
                    && (record.is_some() || st.pos.global_step.is_multiple_of(cfg.train.log_every))
                {
                    let scalar = |t: Tensor<1>| t.try_into_scalar::<f32>().map(f64::from).unwrap_or(f64::NAN);
                    metrics.write(&StepMetrics {
                        step: st.pos.global_step,
                        epoch: st.pos.epoch,
                        loss: f64::from(loss),
                        lr,
                        pairs_per_sec,
                        pos_sim: scalar(out.pos_sim),
                        neg_sim: scalar(out.neg_sim),
                        neighbour_agreement: out.neighbour_agreement,
                        teacher_momentum: st.method.teacher.is_some().then(|| {
                            let m = &cfg.method;
                            crate::method::ema::momentum_at(m.momentum, m.momentum_schedule, at.step, at.total_steps)
                        }),
                        wall_time: std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0.0, |d| d.as_secs_f64()),
                        elapsed_s: self.elapsed(),
                        world_size: self.world.size(),
                        size,
                        monitor: record,
                    })?;
                    window = (Instant::now(), 0);
                }
                // Every rank stops and saves at the same steps (a signal may reach one rank
                // only; rank 0's clock decides the minute cadence).
                let t = &cfg.train;
                let due = t.checkpoint_every_steps > 0 && st.pos.global_step.is_multiple_of(t.checkpoint_every_steps)
                    || t.checkpoint_every_minutes > 0.0
                        && dist::is_root(&*self.world)
                        && self.last_save.get().elapsed().as_secs_f64() >= 60.0 * t.checkpoint_every_minutes;
                let [stop_after_hit, signalled, due] = any_rank_each(
                    &*self.world,
                    [stop_after.is_some_and(|s| st.pos.global_step >= s), stop.received().is_some(), due],
                );
                if stop_after_hit || signalled {
                    return Ok(EpochEnd::Stopped { by_signal: signalled });
                }
                if due && last_of_epoch {
                    return Ok(EpochEnd::Finished { checkpoint_due: true });
                }
                if due {
                    self.save(st, metrics)?;
                }
            }
            Ok(EpochEnd::Finished { checkpoint_due: false })
        })
    }

    /// Writes the checkpoint (rank 0; every rank calls this at the same steps and returns once
    /// rank 0's file is on disk, so no rank exits before it).
    fn save(&self, st: &State, metrics: &mut Option<MetricsLog>) -> Result<()> {
        let model = st.model.as_ref().expect("model present between steps");
        dist::grads::check_same(&*self.world, model, st.pos.global_step)?;
        let written = if dist::is_root(&*self.world) { self.write_checkpoint(st, metrics) } else { Ok(()) };
        let [failed] = any_rank_each(&*self.world, [written.is_err()]);
        written?;
        if failed {
            bail!("rank 0 could not write the checkpoint at step {} (see its error)", st.pos.global_step);
        }
        self.last_save.set(Instant::now());
        Ok(())
    }

    /// Rank 0's part of [`save`](Self::save): the metrics so far, then the checkpoint (also
    /// kept as `checkpoints/step-N` when `train.keep_checkpoints > 1`), each durable before the
    /// next, and only then the kept checkpoints beyond the newest K deleted.
    fn write_checkpoint(&self, st: &State, metrics: &mut Option<MetricsLog>) -> Result<()> {
        let model = st.model.as_ref().expect("model present between steps");
        if let Some(m) = metrics.as_mut() {
            m.sync()?;
        }
        let (method, method_notes) = st.method.export();
        let ck = Checkpoint {
            position: st.pos,
            model: named_tensors::collect(model),
            optimizer_steps: st.optim.steps(),
            optimizer: st.optim.export_state(),
            method,
            online: st.online.as_ref().map(OnlineLinear::export).unwrap_or_default(),
            config: self.cfg.to_toml(),
            notes: [
                ("device".to_string(), self.device_name.clone()),
                ("selfsup".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("elapsed_s".to_string(), format!("{:.3}", self.elapsed())),
            ]
            .into_iter()
            .chain(self.init.clone().map(|p| ("init".to_string(), p)))
            .chain(method_notes)
            .collect(),
        };
        let keep = self.cfg.train.keep_checkpoints;
        let links = if keep > 1 {
            let dir = self.run.kept_dir();
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            vec![self.run.kept(st.pos.global_step)]
        } else {
            Vec::new()
        };
        let previous = if self.run.checkpoint().is_file() {
            format!("the previous checkpoint {} is intact", self.run.checkpoint().display())
        } else {
            "no earlier checkpoint exists".to_string()
        };
        crate::atomic::write_bytes_linked(&self.run.checkpoint(), &ck.to_bytes()?, &links).with_context(|| {
            format!(
                "writing checkpoint {} at step {} ({previous})",
                self.run.checkpoint().display(),
                st.pos.global_step
            )
        })?;
        self.run.prune_kept(keep.max(1), None)
    }
}

/// Whether each flag holds on any rank (one small all-reduce; the flags themselves in one
/// process).
fn any_rank_each<const N: usize>(world: &dyn dist::Collective, flags: [bool; N]) -> [bool; N] {
    if world.size() == 1 {
        return flags;
    }
    let mut v = flags.map(|f| f64::from(u8::from(f)));
    world.all_reduce_sum_f64(&mut v);
    v.map(|x| x > 0.0)
}

/// Runs (or resumes) a pretraining run.
pub fn pretrain(opts: &PretrainOptions) -> Result<PretrainSummary> {
    let world = dist::world();
    let root = dist::is_root(&*world);
    // Listen for signals before anything lasting is written.
    let stop = StopRequest::install().context("installing the signal handlers")?;
    stop.reset();
    // Rank 0 owns (and locks) the run folder and decides whether to resume; the others get its
    // checkpoint through MPI (so no rank but rank 0 needs to see the folder). An empty
    // broadcast means a new run.
    let source = opts.resume_from.clone().unwrap_or_else(|| RunDir::new(&opts.out).checkpoint());
    let (run, _lock, bytes) = if root {
        let (run, lock, resuming) = RunDir::prepare(&opts.out, opts.resume, opts.resume_from.as_deref())?;
        let bytes = if resuming { read_checkpoint(&run, &source)?.0 } else { Vec::new() };
        (run, Some(lock), bytes)
    } else {
        (RunDir::new(&opts.out), None, Vec::new())
    };
    let bytes = world.broadcast_bytes(bytes);
    let resumed = if bytes.is_empty() { None } else { Some(Checkpoint::from_bytes(&bytes, &source)?) };
    drop(bytes);
    let cfg = match &resumed {
        Some(ck) => {
            let saved = Config::from_table(toml::from_str(&ck.config).context("checkpoint config")?)
                .context("the checkpoint's configuration no longer validates")?;
            if opts.config_given {
                check_same_config(&opts.config, &saved, &source)?;
            }
            saved
        }
        None => {
            if opts.resume == Resume::Auto && opts.verbose {
                eprintln!("no checkpoint in {}: starting a new run", opts.out.display());
            }
            opts.config.clone()
        }
    };
    let chosen = backend::choose(opts.backend.unwrap_or(cfg.train.backend))?;
    let ranks = if world.size() > 1 {
        format!("; {} ranks over {} (rank 0's device shown)", world.size(), world.engine())
    } else {
        String::new()
    };
    if opts.verbose {
        eprintln!("device: {}{ranks}", chosen.description);
        let kind = cfg.method.kind;
        if kind != crate::method::MethodKind::Simclr {
            let parts: Vec<&str> = [
                (kind.has_teacher(), "EMA teacher"),
                (kind.has_predictor(), "predictor"),
                (kind.has_queue(), "queue"),
                (kind == crate::method::MethodKind::Dino, "prototypes"),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| *name)
            .collect();
            let parts = if parts.is_empty() { String::new() } else { format!(" ({})", parts.join(", ")) };
            eprintln!("method: {}{parts}", kind.name());
        }
    }
    if root {
        crate::atomic::write_bytes(&run.device(), format!("{}{ranks}\n", chosen.description).as_bytes())?;
    }
    if resumed.is_none() && root {
        crate::atomic::write_bytes(&run.config(), cfg.to_toml().as_bytes())?;
        crate::atomic::write_bytes(&run.data(), format!("{}\n", opts.data.display()).as_bytes())?;
    }

    let ds = open_dataset(&opts.data, &cfg, opts.verbose)?;
    if cfg.loss.kind == LossKind::Supcon && !ds.is_labeled() {
        bail!("loss.kind = \"supcon\" needs labels, but {} is not a class-folder dataset", opts.data.display());
    }
    let aug = Augmenter::new(cfg.augment.clone())?;
    let (holdout, train_idx) = split_holdout(&ds, &cfg.monitor, cfg.seed);
    // Only rank 0 monitors (the other ranks wait for it in the next step's collectives).
    let monitor = if root { Monitor::new(&cfg.monitor, &ds, &aug, holdout, &train_idx, cfg.seed) } else { None };
    let train = ds.select(&train_idx);
    let batch = cfg.train.batch_size;
    if train.len() < batch {
        bail!(
            "{}: {} usable images ({} held out for monitoring), fewer than one batch (train.batch_size = {batch}); lower the batch size or add images",
            opts.data.display(),
            train.len(),
            ds.len() - train.len()
        );
    }
    dist::per_rank(batch, &*world)?;
    dist::agree::check(
        &*world,
        &dist::agree::RunIdentity {
            config: cfg.to_toml(),
            options: format!(
                "--resume={:?} --resume-from={:?} --init={:?} --stop-after-steps={:?} --stop-on-collapse={} backend={}",
                opts.resume, opts.resume_from, opts.init, opts.stop_after_steps, opts.stop_on_collapse, chosen.backend
            ),
            data: dist::agree::data_fingerprint(&ds),
        },
        &opts.data,
    )?;
    if opts.verbose && monitor.is_some() {
        eprintln!("monitoring collapse on {} held-out images", ds.len() - train.len());
    }

    let device = chosen.device.clone().autodiff();
    device.seed(cfg.seed);
    let model = cfg.encoder(&device);
    let online = OnlineLinear::for_run(&cfg, &ds, &model, &device);
    let mut st = State {
        model: Some(model),
        method: MethodState::default(),
        online,
        optim: Optimizer::new(cfg.optim.clone()),
        pos: Position::default(),
        last_loss: None,
        collapsed: false,
    };
    let mut elapsed_before = 0.0;
    let mut init_note = None;
    if resumed.is_none() {
        if let (Some(path), true) = (&opts.init, root) {
            let (model, w) =
                crate::interop::torch_file::init_backbone(st.model.take().expect("built above"), path, cfg.model.arch)?;
            st.model = Some(model);
            if opts.verbose {
                let counters = w.ignored.iter().filter(|n| n.ends_with("num_batches_tracked")).count();
                let others: Vec<&str> =
                    w.ignored.iter().filter(|n| !n.ends_with("num_batches_tracked")).map(String::as_str).collect();
                let ignored = match (others.is_empty(), counters) {
                    (true, 0) => String::new(),
                    (true, c) => format!("; left aside: {c} num_batches_tracked counters"),
                    (false, c) if others.len() <= 3 => {
                        format!("; left aside: {} and {c} num_batches_tracked counters", others.join(", "))
                    }
                    (false, c) => format!(
                        "; left aside: {} tensors such as {} and {c} num_batches_tracked counters",
                        others.len(),
                        others[..3].join(", ")
                    ),
                };
                eprintln!(
                    "backbone initialized from {} ({}, {} tensors){ignored}; the projection head starts fresh",
                    path.display(),
                    w.kind,
                    w.tensors.len()
                );
            }
            init_note = Some(path.display().to_string());
        }
        st.model = Some(dist::grads::broadcast_model(&*world, st.model.take().expect("built above"))?);
    } else if opts.init.is_some() && opts.verbose {
        eprintln!("--init ignored: the run resumes from its checkpoint");
    }
    if let Some(ck) = &resumed {
        st.model = Some(
            named_tensors::apply(st.model.take().expect("built above"), &ck.model)
                .context("loading the checkpoint's weights")?,
        );
        st.optim.import_state(ck.optimizer_steps, &ck.optimizer, &device)?;
        let fresh = MethodState::new(&cfg, st.model.as_ref().expect("loaded above"), &device);
        st.method = MethodState::import(fresh, &ck.method, &ck.notes, cfg.method.kind)
            .with_context(|| format!("{}: the method's state", source.display()))?;
        st.optim.check_fits(&named_tensors::collect(st.model.as_ref().expect("loaded above")))?;
        st.online = match st.online.take() {
            Some(fresh) if ck.online.is_empty() => {
                if opts.verbose {
                    eprintln!(
                        "the checkpoint has no online linear classifier (written before it existed): it starts now"
                    );
                }
                Some(fresh)
            }
            Some(fresh) => Some(fresh.import(&ck.online).with_context(|| format!("{}", source.display()))?),
            None => None,
        };
        st.pos = ck.position;
        elapsed_before = ck.notes.get("elapsed_s").and_then(|v| v.parse().ok()).unwrap_or(0.0);
        if opts.verbose {
            eprintln!(
                "resuming at epoch {} step {} (global step {})",
                st.pos.epoch + 1,
                st.pos.step_in_epoch,
                st.pos.global_step
            );
        }
    }

    if resumed.is_none() {
        // The teacher starts as a copy of the student (after --init and rank 0's broadcast).
        st.method = MethodState::new(&cfg, st.model.as_ref().expect("built above"), &device);
    }
    let steps_per_epoch = (train.len() / batch) as u64;
    let total_steps = steps_per_epoch * cfg.train.epochs;
    let warmup = (cfg.optim.warmup_epochs * steps_per_epoch as f64).round() as u64;
    let schedule =
        Schedule::new(cfg.optim.lr, cfg.optim.lr_scaling, batch, warmup, total_steps, cfg.optim.min_lr_ratio);
    let mut scheduled = HashMap::new();
    for epoch in 0..cfg.train.epochs {
        let s = cfg.augment.size_at(epoch, cfg.train.epochs);
        if s != cfg.augment.size && !scheduled.contains_key(&s) {
            scheduled.insert(s, Augmenter::new(selfsup_augment::AugmentConfig { size: s, ..cfg.augment.clone() })?);
        }
    }
    let small = aug.small_views();
    let trainer = Trainer {
        cfg: &cfg,
        full: &ds,
        train: &train,
        aug: &aug,
        scheduled,
        small,
        device,
        device_name: chosen.description.clone(),
        run,
        schedule,
        steps_per_epoch,
        total_steps,
        monitor,
        stop_on_collapse: opts.stop_on_collapse || cfg.monitor.stop_on_collapse,
        elapsed_before,
        started: Instant::now(),
        world: world.clone(),
        last_save: Cell::new(Instant::now()),
        init: init_note.or_else(|| resumed.as_ref().and_then(|c| c.notes.get("init").cloned())),
    };
    let mut metrics = if root {
        // Lines (and kept checkpoints) past the resumed step belong to a future this run
        // replaces; a new run in a folder left without a checkpoint starts the file afresh.
        let upto = resumed.as_ref().map_or(0, |c| c.position.global_step);
        trainer.run.prune_kept(usize::MAX, Some(upto))?;
        Some(MetricsLog::open(&trainer.run.metrics(), Some(upto))?.with_tensorboard(&trainer.run.tensorboard())?)
    } else {
        None
    };
    let progress = TrainProgress::new(cfg.train.epochs, steps_per_epoch, opts.verbose);

    // Already at --stop-after-steps (0 for a new run: its initial weights, e.g. after --init).
    if opts.stop_after_steps.is_some_and(|s| st.pos.global_step >= s) {
        trainer.save(&st, &mut metrics)?;
        progress.finish();
        return Ok(PretrainSummary {
            position: st.pos,
            last_loss: st.last_loss,
            interrupted: true,
            device: chosen.description,
        });
    }
    while st.pos.epoch < cfg.train.epochs {
        progress.start_epoch(st.pos.epoch, st.pos.step_in_epoch);
        let end = trainer.epoch(&mut st, &mut metrics, &progress, &stop, opts.stop_after_steps)?;
        if let EpochEnd::Stopped { by_signal } = end {
            trainer.save(&st, &mut metrics)?;
            progress.finish();
            if by_signal {
                let signal = stop.received().map_or("a signal on another rank", super::signals::name);
                return Err(StoppedBySignal {
                    signal: signal.to_string(),
                    step: st.pos.global_step,
                    checkpoint: trainer.run.checkpoint(),
                }
                .into());
            }
            if opts.verbose {
                eprintln!(
                    "stopped at global step {}; checkpoint written to {} (continue with --resume)",
                    st.pos.global_step,
                    trainer.run.checkpoint().display()
                );
            }
            return Ok(PretrainSummary {
                position: st.pos,
                last_loss: st.last_loss,
                interrupted: true,
                device: chosen.description,
            });
        }
        st.pos.epoch += 1;
        st.pos.step_in_epoch = 0;
        progress.end_epoch();
        let due = matches!(end, EpochEnd::Finished { checkpoint_due: true });
        if due || st.pos.epoch.is_multiple_of(cfg.train.checkpoint_every) || st.pos.epoch == cfg.train.epochs {
            trainer.save(&st, &mut metrics)?;
        }
        if let Some(l) = st.last_loss {
            progress.println(&format!("epoch {}/{}: loss {l:.4}", st.pos.epoch, cfg.train.epochs));
        }
    }
    progress.finish();
    Ok(PretrainSummary { position: st.pos, last_loss: st.last_loss, interrupted: false, device: chosen.description })
}
