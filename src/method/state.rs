//! What a method keeps between steps, beside the weights the optimizer trains: the EMA teacher,
//! the queue, DINO's centre. It is written into the checkpoint as named tensors
//! (`teacher.<module path>`, `queue.keys`, `queue.labels`, `center`; the queue's write position
//! in the metadata), so that `--resume` continues with exactly the state the run had.

use anyhow::{Context, Result, bail};
use burn::prelude::*;

use super::queue::Queue;
use super::{MethodKind, ema};
use crate::config::Config;
use crate::model::Encoder;
use crate::named_tensors::{self, NamedTensor};

/// The checkpoint metadata key of the queue's write position.
pub const QUEUE_NEXT: &str = "method.queue_next";

/// The state.
#[derive(Clone, Debug, Default)]
pub struct MethodState {
    /// The EMA teacher, without autodiff.
    pub teacher: Option<Encoder>,
    pub queue: Option<Queue>,
    /// DINO's centre of the teacher's outputs, `[prototypes]`.
    pub center: Option<Tensor<1>>,
}

impl MethodState {
    /// The state a new run starts with: the teacher a copy of `student` (after `--init`, so the
    /// teacher starts from the same weights), the queue random unit vectors, the centre 0.
    /// `device` is the training device; the state lives on it without autodiff.
    pub fn new(cfg: &Config, student: &Encoder, device: &Device) -> Self {
        let kind = cfg.method.kind;
        let inner = device.clone().inner();
        let teacher = kind.has_teacher().then(|| ema::copy(student));
        let d = cfg.model.head.out_dim;
        let queue = kind.has_queue().then(|| Queue::random(cfg.method.queue_size, d, cfg.seed, &inner));
        let center = (kind == MethodKind::Dino).then(|| Tensor::<1>::zeros([cfg.method.prototypes], &inner));
        Self { teacher, queue, center }
    }

    /// The state as named tensors and metadata, for the checkpoint.
    pub fn export(&self) -> (Vec<NamedTensor>, Vec<(String, String)>) {
        let mut tensors = Vec::new();
        let mut meta = Vec::new();
        if let Some(t) = &self.teacher {
            tensors.extend(named_tensors::collect(t).into_iter().map(|mut n| {
                n.name = format!("teacher.{}", n.name);
                n
            }));
        }
        if let Some(q) = &self.queue {
            let (keys, labels, next) = q.parts();
            let shape = keys.dims().to_vec();
            let values = keys.clone().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 queue");
            tensors.push(NamedTensor { name: "queue.keys".into(), shape, values });
            // Labels are class indices (or −1), exact in f32 below 2²⁴ classes.
            let labels: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
            tensors.push(NamedTensor { name: "queue.labels".into(), shape: vec![labels.len()], values: labels });
            meta.push((QUEUE_NEXT.to_string(), next.to_string()));
        }
        if let Some(c) = &self.center {
            let values = c.clone().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 centre");
            tensors.push(NamedTensor { name: "center".into(), shape: vec![values.len()], values });
        }
        (tensors, meta)
    }

    /// Restores the state a checkpoint holds (`tensors` and `meta` as [`Self::export`] wrote
    /// them) into `fresh` (the state [`Self::new`] built for this configuration, which says
    /// what must be there). A checkpoint that lacks a part, or holds one this method does not
    /// use, is refused.
    pub fn import(
        fresh: Self,
        tensors: &[NamedTensor],
        meta: &std::collections::HashMap<String, String>,
        kind: MethodKind,
    ) -> Result<Self> {
        let part = |prefix: &str| -> Vec<NamedTensor> {
            tensors
                .iter()
                .filter_map(|t| t.name.strip_prefix(prefix).map(|n| NamedTensor { name: n.to_string(), ..t.clone() }))
                .collect()
        };
        let want = |what: &str, has: bool, needed: bool| -> Result<()> {
            match (has, needed) {
                (false, true) => bail!("the checkpoint has no {what}, which method.kind = \"{}\" needs", kind.name()),
                (true, false) => {
                    bail!("the checkpoint has a {what}, which method.kind = \"{}\" does not use", kind.name())
                }
                _ => Ok(()),
            }
        };
        let teacher_tensors = part("teacher.");
        want("teacher", !teacher_tensors.is_empty(), fresh.teacher.is_some())?;
        let teacher = match fresh.teacher {
            Some(t) => Some(named_tensors::apply(t, &teacher_tensors).context("the checkpoint's teacher")?),
            None => None,
        };
        let keys = tensors.iter().find(|t| t.name == "queue.keys");
        want("queue", keys.is_some(), fresh.queue.is_some())?;
        let queue = match (fresh.queue, keys) {
            (Some(q), Some(k)) => {
                let device = q.keys().device();
                let [cap, d] = q.keys().dims();
                if k.shape != [cap, d] {
                    bail!("the checkpoint's queue is {:?}, the configuration's [{cap}, {d}]", k.shape);
                }
                let labels = tensors
                    .iter()
                    .find(|t| t.name == "queue.labels")
                    .context("the checkpoint's queue has no labels")?
                    .values
                    .iter()
                    .map(|&l| l as i64)
                    .collect();
                let next = meta
                    .get(QUEUE_NEXT)
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("the checkpoint's queue has no {QUEUE_NEXT}"))?;
                let keys = Tensor::<2>::from_data(TensorData::new(k.values.clone(), [cap, d]), &device);
                Some(Queue::from_parts(keys, labels, next).context("the checkpoint's queue")?)
            }
            _ => None,
        };
        let center = tensors.iter().find(|t| t.name == "center");
        want("centre", center.is_some(), fresh.center.is_some())?;
        let center = match (fresh.center, center) {
            (Some(c), Some(t)) => {
                if t.shape != c.dims() {
                    bail!("the checkpoint's centre has shape {:?}, the configuration's {:?}", t.shape, c.dims());
                }
                Some(Tensor::<1>::from_data(TensorData::new(t.values.clone(), [t.values.len()]), &c.device()))
            }
            _ => None,
        };
        Ok(Self { teacher, queue, center })
    }
}

impl MethodState {
    /// Applies what a taken step left ([`super::objective::Effects`]): rows into the queue, the
    /// new centre.
    pub fn apply(&mut self, effects: super::objective::Effects) {
        if let (Some(q), Some((rows, labels))) = (self.queue.as_mut(), effects.enqueue) {
            q.push(rows, &labels);
        }
        if let Some(c) = effects.center {
            self.center = Some(c);
        }
    }

    /// Moves the teacher towards `student` with `momentum` (after the optimizer's update).
    pub fn update_teacher(&mut self, student: &Encoder, momentum: f64) {
        if let Some(t) = self.teacher.take() {
            self.teacher = Some(ema::update(t, student, momentum));
        }
    }
}
