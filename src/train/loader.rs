//! Feeding the training loop: each epoch visits the images in a seeded random order, and a
//! worker thread augments batch `k + 1` (on the rayon pool) while the encoder steps on batch
//! `k`. Incomplete last batches are dropped, as SimCLR does. Under several ranks every rank walks
//! the same order and makes only its [`Shard`] of each step's images (their views are keyed by
//! image, so the ranks' views together are exactly one process's). With multi-crop a batch
//! holds two groups of views: the full-size ones, then the small ones.

use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::Scope;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use selfsup_augment::Augmenter;

use crate::data::{Dataset, Images};

/// One step's input: the views of `n` images, in groups of one resolution (see [`ViewGroup`]),
/// and the images' labels when the data has them.
pub struct Batch {
    pub step_in_epoch: u64,
    pub n: usize,
    pub groups: Vec<ViewGroup>,
    pub labels: Option<Vec<u32>>,
}

/// `views` views of each of a batch's `n` images at `size` pixels, in one buffer
/// (`[views · n, 3, size, size]`, view-major: every image's first view, then every image's
/// second, …).
pub struct ViewGroup {
    pub size: usize,
    pub views: usize,
    pub pixels: Vec<f32>,
}

impl Batch {
    /// The views as tensors on `device`, for [`super::step::train_step`].
    pub fn to_device(&self, device: &burn::tensor::Device) -> super::step::StepViews {
        let groups = self
            .groups
            .iter()
            .map(|g| {
                let shape = [g.views * self.n, 3, g.size, g.size];
                burn::Tensor::<4>::from_data(burn::tensor::TensorData::new(g.pixels.clone(), shape), device)
            })
            .collect();
        super::step::StepViews { groups, n: self.n }
    }
}

/// The augmenters of a step: the full-size views' and, with multi-crop, the small views'.
#[derive(Clone, Copy)]
pub struct ViewMakers<'a> {
    pub full: &'a Augmenter,
    pub small: Option<&'a Augmenter>,
}

/// The order in which epoch `epoch` visits `n` images: a pure function of `(seed, epoch)`, so
/// a resumed run sees exactly the batches the interrupted one would have.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let key = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch.wrapping_add(0xA076_1D64_78BD_642F);
    order.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(key));
    order
}

/// Which part of each step's images this process makes: rank `rank` of `ranks` takes the
/// `rank`-th of `ranks` equal consecutive slices of the global batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub ranks: usize,
}

impl Shard {
    /// The whole batch (one process).
    pub const WHOLE: Shard = Shard { rank: 0, ranks: 1 };

    /// This shard's slice of a global batch (whose length the ranks divide).
    pub fn of<'a>(&self, batch: &'a [usize]) -> &'a [usize] {
        let b = batch.len() / self.ranks;
        &batch[self.rank * b..(self.rank + 1) * b]
    }
}

/// Makes the batch of `indices`: `makers.full`'s configured number of views, then the small
/// views, numbered as `Augmenter::training_views_batch` says.
pub fn make_batch(
    ds: &Dataset,
    makers: ViewMakers<'_>,
    indices: &[usize],
    seed: u64,
    epoch: u64,
    step_in_epoch: u64,
) -> Batch {
    let n = indices.len();
    let (full, cfg) = (makers.full, makers.full.config());
    let mut pixels = vec![0.0f32; cfg.views as usize * n * full.view_len()];
    let small_len = makers.small.map_or(0, |s| cfg.small_views as usize * n * s.view_len());
    let mut small_pixels = vec![0.0f32; small_len];
    full.training_views_batch(makers.small, &Images(ds), indices, seed, epoch, &mut pixels, &mut small_pixels);
    let mut groups = vec![ViewGroup { size: full.size(), views: cfg.views as usize, pixels }];
    if let Some(small) = makers.small {
        groups.push(ViewGroup { size: small.size(), views: cfg.small_views as usize, pixels: small_pixels });
    }
    let labels = ds.is_labeled().then(|| indices.iter().map(|&i| ds.label(i).unwrap_or(0)).collect());
    Batch { step_in_epoch, n, groups, labels }
}

/// Starts a worker producing the batches of steps `first_step..` of epoch `epoch` (each of
/// `batch` images of `order`, of which this process makes its `shard`), at most `prefetch`
/// ahead of the consumer. Dropping the receiver stops the worker.
#[allow(clippy::too_many_arguments)]
pub fn spawn_epoch<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    ds: &'env Dataset,
    makers: ViewMakers<'env>,
    order: Vec<usize>,
    batch: usize,
    shard: Shard,
    first_step: u64,
    seed: u64,
    epoch: u64,
    prefetch: usize,
) -> Receiver<Batch> {
    let (tx, rx) = sync_channel(prefetch);
    let steps = (order.len() / batch) as u64;
    scope.spawn(move || {
        for step in first_step..steps {
            let s = step as usize * batch;
            let b = make_batch(ds, makers, shard.of(&order[s..s + batch]), seed, epoch, step);
            if tx.send(b).is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_seeded_permutations_that_change_per_epoch() {
        let a = epoch_order(100, 7, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 7, 0));
        assert_ne!(a, epoch_order(100, 7, 1));
        assert_ne!(a, epoch_order(100, 8, 0));
    }

    #[test]
    fn shards_split_a_batch_into_consecutive_equal_parts() {
        let batch: Vec<usize> = (10..22).collect();
        let parts: Vec<&[usize]> = (0..3).map(|rank| Shard { rank, ranks: 3 }.of(&batch)).collect();
        assert_eq!(parts, vec![&[10, 11, 12, 13][..], &[14, 15, 16, 17][..], &[18, 19, 20, 21][..]]);
        assert_eq!(Shard::WHOLE.of(&batch), &batch[..]);
    }
}
