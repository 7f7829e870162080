//! Each method's loss of one step, from the rows the step computed (`crate::train::step`): the
//! student's rows of every view (`crate::model::Encoder::rows`: projections, `[z | p]` with a
//! predictor, DINO's logits) and the teacher's rows of the two full views, both of the global
//! batch (under several ranks, this rank's rows live and the others' constants). What the step
//! changes besides the weights — rows into the queue, DINO's centre — comes back as [`Effects`],
//! applied only when the step is taken.

use burn::prelude::*;

use super::{MethodKind, MethodState, QueueUpdate};
use crate::config::Config;
use crate::loss::{
    LossKind, LossOutput, barlow_twins::barlow_twins, cosine, dcl::dcl, debiased::debiased, dino, info_nce,
    nt_xent::nt_xent, supcon::multi_positive, supcon::supcon, vicreg,
};

/// A step's rows, as the loss sees them (all of the global batch of `n` images).
pub struct Rows<'a> {
    /// `[views · n, cols]`, view-major (every image's first view, then every image's second, …).
    pub student: Tensor<2>,
    /// The teacher's rows of the two full views, `[2n, d]`, without gradient.
    pub teacher: Option<Tensor<2>>,
    pub n: usize,
    pub views: usize,
    /// The images' labels, when the data has them.
    pub labels: Option<&'a [u32]>,
}

/// What a step does besides updating the weights, once it is taken.
#[derive(Default)]
pub struct Effects {
    /// Rows for the queue (`[m, d]`, detached) with their images' labels.
    pub enqueue: Option<(Tensor<2>, Vec<i64>)>,
    /// DINO's next centre.
    pub center: Option<Tensor<1>>,
    /// NNCLR: of the anchors whose neighbour has a label, the share whose neighbour's label is
    /// their own.
    pub neighbour_agreement: Option<f64>,
}

/// A method's loss and its effects.
pub struct MethodLoss {
    pub out: LossOutput,
    pub effects: Effects,
}

/// SimCLR's configured loss of projections `z` (`[views · n, d]`, view-major). Two views: the
/// configured loss. More: the multi-positive form (SupCon's, with each image its own class for
/// `ntxent`), which equals NT-Xent at two views; the other kinds are refused for them when the
/// configuration is read.
pub fn simclr(cfg: &Config, z: Tensor<2>, n: usize, views: usize, labels: Option<&[u32]>) -> LossOutput {
    let t = cfg.loss.temperature;
    let supcon_labels = || labels.expect("supcon needs labels (checked before training)");
    if views != 2 {
        return match cfg.loss.kind {
            LossKind::Supcon => multi_positive(z, views, supcon_labels(), t),
            _ => multi_positive(z, views, &(0..n as u32).collect::<Vec<_>>(), t),
        };
    }
    let z1 = z.clone().narrow(0, 0, n);
    let z2 = z.narrow(0, n, n);
    match cfg.loss.kind {
        LossKind::Ntxent => nt_xent(z1, z2, t),
        LossKind::Supcon => supcon(z1, z2, supcon_labels(), t),
        LossKind::Dcl => dcl(z1, z2, t, None),
        LossKind::Dclw => dcl(z1, z2, t, Some(cfg.loss.dclw_sigma)),
        LossKind::Debiased => debiased(z1, z2, t, cfg.loss.tau_plus, cfg.loss.beta),
    }
}

/// `x` (the teacher's rows or the method's state, without autodiff) as a constant of the
/// student's graph on `device`: lifted onto autodiff when the student trains with it.
fn constant<const D: usize>(x: Tensor<D>, device: &Device) -> Tensor<D> {
    if device.is_autodiff() { x.autodiff() } else { x }
}

/// The mean of two losses (and of their statistics).
fn mean_of(a: LossOutput, b: LossOutput) -> LossOutput {
    let half = |x: Tensor<1>, y: Tensor<1>| (x + y).mul_scalar(0.5);
    LossOutput { loss: half(a.loss, b.loss), pos_sim: half(a.pos_sim, b.pos_sim), neg_sim: half(a.neg_sim, b.neg_sim) }
}

/// The loss of `kind` on `rows`, with `state` as it was before the step, in epoch `epoch`.
pub fn loss(cfg: &Config, state: &MethodState, rows: Rows<'_>, epoch: u64) -> MethodLoss {
    let m = &cfg.method;
    let Rows { student, teacher, n, views, labels } = rows;
    let d = cfg.model.head.out_dim;
    let device = student.device();
    // The teacher's rows and the state are constants of the student's graph.
    let teacher = teacher.map(|t| constant(t, &device));
    let teacher = || teacher.clone().expect("the method has a teacher");
    let view = |x: &Tensor<2>, v: usize| x.clone().narrow(0, v * n, n);
    // With a predictor, the student's rows are [z | p].
    let z = || student.clone().narrow(1, 0, d);
    let p = || student.clone().narrow(1, d, student.dims()[1] - d);
    let labels_of = |count: usize| -> Vec<i64> {
        (0..count).map(|i| labels.map_or(super::queue::UNKNOWN, |l| i64::from(l[i % n]))).collect()
    };
    let mut effects = Effects::default();
    let out = match m.kind {
        MethodKind::Simclr => simclr(cfg, student.clone(), n, views, labels),
        MethodKind::Moco => {
            let state_queue = state.queue.as_ref().expect("moco has a queue");
            let queue = constant(state_queue.keys(), &device);
            let (q, k) = (student.clone(), teacher());
            let t = cfg.loss.temperature;
            let forward = info_nce::moco(view(&q, 0), view(&k, 1), queue.clone(), t);
            let (out, pushed) = if m.symmetric {
                // The second term's negatives: the queue before the step, or (lightly's memory
                // bank) the queue that has already received the first term's keys. Either way
                // the queue ends the step with both views' keys, the first term's pushed first.
                let queue = match m.queue_update {
                    QueueUpdate::AfterStep => queue,
                    QueueUpdate::BetweenTerms => {
                        let mut between = state_queue.clone();
                        between.push(view(&k, 1).detach(), &labels_of(n));
                        constant(between.keys(), &device)
                    }
                };
                let backward = info_nce::moco(view(&q, 1), view(&k, 0), queue, t);
                (mean_of(forward, backward), Tensor::cat(vec![view(&k, 1), view(&k, 0)], 0))
            } else {
                (forward, view(&k, 1))
            };
            let count = pushed.dims()[0];
            effects.enqueue = Some((pushed.detach(), labels_of(count)));
            out
        }
        MethodKind::Mocov3 => {
            let (q, k, t) = (p(), teacher(), cfg.loss.temperature);
            let a = info_nce::mocov3(view(&q, 0), view(&k, 1), t);
            let b = info_nce::mocov3(view(&q, 1), view(&k, 0), t);
            // The sum of both orders (the paper's ctr(q1, k2) + ctr(q2, k1)); statistics averaged.
            let stats = mean_of(a.clone(), b.clone());
            LossOutput { loss: a.loss + b.loss, ..stats }
        }
        MethodKind::Byol => cosine::byol(p(), teacher(), n),
        MethodKind::Simsiam => cosine::simsiam(p(), z(), n, m.stop_gradient),
        MethodKind::Barlowtwins => barlow_twins(student.clone(), n, m.lambda),
        MethodKind::Vicreg => vicreg::vicreg(
            student.clone(),
            n,
            vicreg::Weights { invariance: m.invariance, variance: m.variance, covariance: m.covariance },
        ),
        MethodKind::Nnclr => {
            let queue = state.queue.as_ref().expect("nnclr has a queue");
            let (z, p) = (z(), p());
            let (mut agree, mut known) = (0usize, 0usize);
            let mut neighbours = |v: usize| {
                let (rows, idx) = queue.nearest(view(&z, v));
                for (i, &j) in idx.iter().enumerate() {
                    let (theirs, mine) = (queue.label(j), labels.map(|l| i64::from(l[i])));
                    if let (true, Some(mine)) = (theirs != super::queue::UNKNOWN, mine) {
                        known += 1;
                        agree += usize::from(theirs == mine);
                    }
                }
                constant(rows, &device)
            };
            let (nn1, nn2) = (neighbours(0), neighbours(1));
            if labels.is_some() {
                effects.neighbour_agreement = (known > 0).then(|| agree as f64 / known as f64);
            }
            let t = cfg.loss.temperature;
            let out = mean_of(nt_xent(nn1, view(&p, 1), t), nt_xent(nn2, view(&p, 0), t));
            effects.enqueue = Some((view(&z, 1).detach(), labels_of(n)));
            out
        }
        MethodKind::Dino => {
            let center = state.center.clone().expect("dino has a centre");
            let center = constant(center, &device);
            let tt = dino::teacher_temperature(
                m.warmup_teacher_temperature,
                m.teacher_temperature,
                m.warmup_teacher_epochs,
                epoch,
            );
            let out = dino::dino(student.clone(), teacher(), center.clone(), n, m.student_temperature, tt);
            effects.center = Some(dino::updated_center(center, teacher(), m.center_momentum).inner());
            out
        }
    };
    MethodLoss { out, effects }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::info_nce::tests::naive_moco;
    use crate::loss::nt_xent::tests::{random_rows, tensor};
    use crate::method::queue::Queue;

    fn rows_of(t: &Tensor<2>) -> Vec<Vec<f64>> {
        let [_, d] = t.dims();
        let v = t.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        v.chunks(d).map(|r| r.iter().map(|&x| f64::from(x)).collect()).collect()
    }

    /// MoCo's symmetric loss with the queue updated after the step is the mean of the naive f64
    /// InfoNCE of (q₁, k₂) and (q₂, k₁), both against the queue as it was; between the terms
    /// (lightly's bank), the second term's queue has k₂ written at the write position (wrapping
    /// round the end here), computed directly. Both leave the same rows to enqueue, k₂ then k₁.
    #[test]
    fn moco_queue_update_between_terms_shows_the_second_term_the_first_terms_keys() {
        let (n, d, cap, next, t) = (4, 6, 10, 8, 0.2);
        let device = Device::flex();
        let mut cfg = Config::default();
        cfg.method = crate::method::MethodConfig::preset(MethodKind::Moco);
        cfg.model.head.out_dim = d;
        cfg.loss.temperature = t;
        let (q, k) = (random_rows(2 * n, d, 1), random_rows(2 * n, d, 2));
        let start = Queue::random(cap, d, 3, &device);
        let queue_rows = rows_of(start.parts().0);
        let queue = Queue::from_parts(start.parts().0.clone(), vec![super::super::queue::UNKNOWN; cap], next).unwrap();
        let state = MethodState { teacher: None, queue: Some(queue), center: None };
        let (q1, q2, k1, k2) = (&q[..n], &q[n..], &k[..n], &k[n..]);
        let mut pushed = queue_rows.clone();
        for (i, row) in k2.iter().enumerate() {
            pushed[(next + i) % cap] = row.clone();
        }
        for (update, second_queue) in [(QueueUpdate::AfterStep, &queue_rows), (QueueUpdate::BetweenTerms, &pushed)] {
            cfg.method.queue_update = update;
            let rows =
                Rows { student: tensor(&q, &device), teacher: Some(tensor(&k, &device)), n, views: 2, labels: None };
            let got = loss(&cfg, &state, rows, 0);
            let got_loss = f64::from(got.out.loss.into_scalar::<f32>());
            let want = 0.5 * (naive_moco(q1, k2, &queue_rows, t) + naive_moco(q2, k1, second_queue, t));
            assert!((got_loss - want).abs() < 1e-4 * want.abs(), "{update:?}: {got_loss} vs {want}");
            let (enqueued, _) = got.effects.enqueue.expect("moco enqueues its keys");
            let want_rows: Vec<Vec<f64>> = k2.iter().chain(k1).cloned().collect();
            let got_rows = rows_of(&enqueued);
            assert!(
                got_rows.iter().flatten().zip(want_rows.iter().flatten()).all(|(a, b)| (a - b).abs() < 1e-6),
                "{update:?}: the enqueued rows"
            );
        }
        // The two differ (the test can tell them apart).
        let a = 0.5 * (naive_moco(q1, k2, &queue_rows, t) + naive_moco(q2, k1, &queue_rows, t));
        let b = 0.5 * (naive_moco(q1, k2, &queue_rows, t) + naive_moco(q2, k1, &pushed, t));
        assert!((a - b).abs() > 1e-3, "{a} vs {b}");
    }

    /// `between_terms` needs the symmetric loss.
    #[test]
    fn queue_update_between_terms_without_the_symmetric_loss_is_refused() {
        let mut m = crate::method::MethodConfig::preset(MethodKind::Moco);
        m.queue_update = QueueUpdate::BetweenTerms;
        m.validate().unwrap();
        m.symmetric = false;
        let e = m.validate().unwrap_err().to_string();
        assert!(e.contains("method.queue_update") && e.contains("method.symmetric = true"), "{e}");
    }
}
