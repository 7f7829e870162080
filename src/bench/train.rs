//! `selfsup bench train`: training-step throughput in image pairs per second, of any method
//! (`method.kind`, with its teacher, queue and heads), on pre-made
//! tensors (compute alone) and with the real data path (augmentation on the loader thread,
//! overlapping the steps), so their ratio shows whether loading ever holds the encoder back.
//! Under `mpirun` every rank steps on its share of the global batch, and the time spent in
//! collectives is reported beside the step time. With a labelled folder (and `monitor.linear`)
//! the online linear classifier trains in the step as in `pretrain`, and its own work (its
//! gradients and update on the step's features, timed apart on a copy) is reported against the
//! step.

use std::sync::mpsc::sync_channel;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::prelude::*;
use selfsup_augment::Augmenter;

use super::median;
use crate::config::Config;
use crate::data::Dataset;
use crate::method::MethodState;
use crate::optim::Optimizer;
use crate::train::loader::{Batch, Shard, ViewMakers, dataset_order, make_batch};
use crate::train::online_linear::OnlineLinear;
use crate::train::step::{StepAt, train_step};

/// Timings of one mode.
#[derive(Debug, Clone)]
pub struct TrainBench {
    /// Pairs per step, all ranks together.
    pub batch: usize,
    /// Ranks that shared each step.
    pub ranks: usize,
    /// Seconds this rank spent in collectives during the timed steps.
    pub comm_seconds: f64,
    /// Trainable values of the model (the gradient all-reduce moves this many f32 per step).
    pub trainable_values: usize,
    /// Seconds of each timed step.
    pub step_seconds: Vec<f64>,
    /// Wall time of all timed steps.
    pub total_seconds: f64,
    /// Seconds of the online linear classifier's work in each timed step (empty without it).
    pub online_seconds: Vec<f64>,
}

impl TrainBench {
    pub fn pairs_per_sec(&self) -> f64 {
        self.batch as f64 / median(&self.step_seconds)
    }
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs `warmup + steps` steps; `loader = false` feeds batches made before timing, `true`
/// makes them on a worker thread while the steps run (as `pretrain` does).
pub fn run(
    cfg: &Config,
    device: &Device,
    ds: &Dataset,
    steps: usize,
    warmup: usize,
    loader: bool,
) -> Result<TrainBench> {
    let batch = cfg.train.batch_size;
    if ds.len() < batch {
        bail!("bench train: {} images, fewer than one batch of {batch}", ds.len());
    }
    let world = crate::dist::world();
    crate::dist::per_rank(batch, &*world)?;
    let shard = Shard { rank: world.rank(), ranks: world.size() };
    let aug = Augmenter::new(cfg.augment.clone())?;
    let small = aug.small_views();
    let makers = ViewMakers { full: &aug, small: small.as_ref() };
    let device = device.clone().autodiff();
    device.seed(cfg.seed);
    let mut model = cfg.encoder(&device);
    let mut state = MethodState::new(cfg, &model, &device);
    let trainable_values = crate::named_tensors::collect(&model)
        .iter()
        .filter(|t| !crate::named_tensors::is_running_stat(&t.name))
        .map(|t| t.values.len())
        .sum();
    let mut optim = Optimizer::new(cfg.optim.clone());
    let mut online = OnlineLinear::for_run(cfg, ds, &model, &device);
    let mut online_seconds = Vec::new();
    let order = dataset_order(&ds, cfg.seed, 0, cfg.data.shuffle_buffer);
    let total = warmup + steps;
    let indices = |k: usize| -> Vec<usize> {
        let global: Vec<usize> = (0..batch).map(|i| order[(k * batch + i) % order.len()]).collect();
        shard.of(&global).to_vec()
    };
    let mut comm_start = 0.0;
    let mut step_seconds = Vec::with_capacity(steps);
    let mut start = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = sync_channel(cfg.train.prefetch);
        let premade: Vec<Batch> = if loader {
            let indices = &indices;
            scope.spawn(move || {
                for k in 0..total {
                    if tx.send(make_batch(ds, None, makers, &indices(k), cfg.seed, 0, k as u64)).is_err() {
                        return;
                    }
                }
            });
            Vec::new()
        } else {
            drop(tx);
            (0..total).map(|k| make_batch(ds, None, makers, &indices(k), cfg.seed, 0, k as u64)).collect()
        };
        let mut premade = premade.into_iter();
        for k in 0..total {
            if k == warmup {
                start = Instant::now();
                comm_start = crate::dist::watchdog::seconds_in_collectives();
            }
            let t = Instant::now();
            let batch = if loader { rx.recv()? } else { premade.next().expect("made above") };
            let at = StepAt { lr: 0.01, step: k as u64, total_steps: total as u64, epoch: 0 };
            let (trained, out) = train_step(
                model.clone(),
                &mut state,
                &mut optim,
                cfg,
                batch.to_device(&device),
                batch.labels.as_deref(),
                at,
                &world,
                online.as_mut(),
            )?;
            model = trained;
            if !out.loss.is_finite() {
                bail!("bench train: the loss became {} at step {k}", out.loss);
            }
            if k >= warmup {
                step_seconds.push(t.elapsed().as_secs_f64());
                if let (Some(o), Some(labels)) = (&online, batch.labels.as_deref()) {
                    let mut copy = o.clone();
                    let t = Instant::now();
                    let rows = out.features.dims()[0] * world.size();
                    let g = copy.gradients(out.features.clone(), labels, rows);
                    copy.update(g, k as u64, total as u64);
                    // Reading a value waits for the device.
                    let _ = copy.bias.into_data();
                    online_seconds.push(t.elapsed().as_secs_f64());
                }
            }
        }
        Ok(())
    })?;
    let total_seconds = start.elapsed().as_secs_f64();
    let comm_seconds = crate::dist::watchdog::seconds_in_collectives() - comm_start;
    Ok(TrainBench {
        batch,
        ranks: world.size(),
        comm_seconds,
        trainable_values,
        step_seconds,
        total_seconds,
        online_seconds,
    })
}
