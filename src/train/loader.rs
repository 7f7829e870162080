//! Feeding the training loop: each epoch visits the images in a seeded random order, and a
//! worker thread augments batch `k + 1` (on the rayon pool) while the encoder steps on batch
//! `k`. Incomplete last batches are dropped, as SimCLR does. Under several ranks every rank walks
//! the same order and makes only its [`Shard`] of each step's images (their views are keyed by
//! image, so the ranks' views together are exactly one process's).

use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::Scope;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use selfsup_augment::Augmenter;

use crate::data::{Dataset, Images};

/// One step's input: both views of `n` images in one buffer (`[2n, 3, s, s]`: the `n` first
/// views, then the `n` second views), and the images' labels when the data has them.
pub struct Batch {
    pub step_in_epoch: u64,
    pub n: usize,
    pub views: Vec<f32>,
    pub labels: Option<Vec<u32>>,
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

/// Makes the batch of `indices`.
pub fn make_batch(
    ds: &Dataset,
    aug: &Augmenter,
    indices: &[usize],
    seed: u64,
    epoch: u64,
    step_in_epoch: u64,
) -> Batch {
    let n = indices.len();
    let len = aug.view_len();
    let mut views = vec![0.0f32; 2 * n * len];
    let (v1, v2) = views.split_at_mut(n * len);
    aug.two_views_batch(&Images(ds), indices, seed, epoch, v1, v2);
    let labels = ds.is_labeled().then(|| indices.iter().map(|&i| ds.label(i).unwrap_or(0)).collect());
    Batch { step_in_epoch, n, views, labels }
}

/// Starts a worker producing the batches of steps `first_step..` of epoch `epoch` (each of
/// `batch` images of `order`, of which this process makes its `shard`), at most `prefetch`
/// ahead of the consumer. Dropping the receiver stops the worker.
#[allow(clippy::too_many_arguments)]
pub fn spawn_epoch<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    ds: &'env Dataset,
    aug: &'env Augmenter,
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
            let b = make_batch(ds, aug, shard.of(&order[s..s + batch]), seed, epoch, step);
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
