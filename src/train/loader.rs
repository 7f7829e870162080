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
use selfsup_augment::{Augmenter, ImageSource};
use selfsup_datasets::ReadAhead;

use crate::data::{Dataset, Images, ReadAheadImages};

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
    order.shuffle(&mut epoch_rng(seed, epoch));
    order
}

fn epoch_rng(seed: u64, epoch: u64) -> Xoshiro256PlusPlus {
    let key = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch.wrapping_add(0xA076_1D64_78BD_642F);
    Xoshiro256PlusPlus::seed_from_u64(key)
}

/// The order in which epoch `epoch` visits `ds`: [`epoch_order`]'s uniform permutation, or for
/// WebDataset shards [`shard_order`]'s (reads stay within a window of the shards).
pub fn dataset_order(ds: &Dataset, seed: u64, epoch: u64, shuffle_buffer: usize) -> Vec<usize> {
    match (0..ds.len()).map(|i| ds.shard(i)).collect::<Option<Vec<u32>>>() {
        Some(shards) if !shards.is_empty() => shard_order(&shards, seed, epoch, shuffle_buffer),
        _ => epoch_order(ds.len(), seed, epoch),
    }
}

/// The `webdataset` package's order, as a pure function of `(seed, epoch)`: the shards (image
/// `i` lies in shard `shard_of[i]`; each shard's images in index order) are visited in a shuffled
/// order, and the stream passes through a shuffle buffer of `buffer` images: once the buffer is
/// full, each arriving image replaces a uniformly drawn one, which is emitted; at the end the
/// rest leave in shuffled order. So the image emitted `j`-th arrived before position
/// `j + buffer`, and `buffer = 1` is plain shard order.
pub fn shard_order(shard_of: &[u32], seed: u64, epoch: u64, buffer: usize) -> Vec<usize> {
    let mut runs: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for (i, &s) in shard_of.iter().enumerate() {
        runs.entry(s).or_default().push(i);
    }
    let mut runs: Vec<Vec<usize>> = runs.into_values().collect();
    let mut rng = epoch_rng(seed, epoch);
    runs.shuffle(&mut rng);
    let buffer = buffer.max(1);
    let mut held: Vec<usize> = Vec::with_capacity(buffer.min(shard_of.len()));
    let mut out = Vec::with_capacity(shard_of.len());
    for i in runs.into_iter().flatten() {
        if held.len() < buffer {
            held.push(i);
        } else {
            let k = rand::RngExt::random_range(&mut rng, 0..buffer);
            out.push(std::mem::replace(&mut held[k], i));
        }
    }
    held.shuffle(&mut rng);
    out.extend(held);
    out
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
/// `ahead`, when given, is the epoch's reader of a streaming dataset's files.
#[allow(clippy::too_many_arguments)]
pub fn make_batch(
    ds: &Dataset,
    ahead: Option<&ReadAhead>,
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
    let (plain, read_ahead);
    let source: &dyn ImageSource = match ahead {
        Some(ahead) => {
            read_ahead = ReadAheadImages { ds, ahead };
            &read_ahead
        }
        None => {
            plain = Images(ds);
            &plain
        }
    };
    full.training_views_batch(makers.small, source, indices, seed, epoch, &mut pixels, &mut small_pixels);
    let mut groups = vec![ViewGroup { size: full.size(), views: cfg.views as usize, pixels }];
    if let Some(small) = makers.small {
        groups.push(ViewGroup { size: small.size(), views: cfg.small_views as usize, pixels: small_pixels });
    }
    let labels = ds.is_labeled().then(|| indices.iter().map(|&i| ds.label(i).unwrap_or(0)).collect());
    Batch { step_in_epoch, n, groups, labels }
}

/// The most encoded bytes read ahead of the decoding at once (a bound on memory; ImageNet's
/// ~110 KB files reach the two steps' worth of images first).
pub const READ_AHEAD_BYTES: usize = 256 << 20;

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
        let step_images = |step: u64| shard.of(&order[step as usize * batch..(step as usize + 1) * batch]);
        // A streaming dataset's files are read ahead of the decoding: this process's images of
        // the coming steps, at most two steps' worth and READ_AHEAD_BYTES.
        let mine: Vec<usize> = (first_step..steps).flat_map(|step| step_images(step).iter().copied()).collect();
        let ahead = ds.read_ahead(&mine, 2 * shard.of(&order[..batch]).len(), READ_AHEAD_BYTES);
        for step in first_step..steps {
            let b = make_batch(ds, ahead.as_ref(), makers, step_images(step), seed, epoch, step);
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
    fn shard_orders_visit_whole_shards_in_a_seeded_order_through_the_buffer() {
        // 7 shards of uneven sizes, images listed shard by shard.
        let sizes = [5usize, 9, 1, 12, 7, 3, 8];
        let shard_of: Vec<u32> =
            sizes.iter().enumerate().flat_map(|(s, &n)| std::iter::repeat_n(s as u32, n)).collect();
        let n = shard_of.len();
        let plain = shard_order(&shard_of, 3, 0, 1);
        // Buffer 1: whole shards, each in index order, every shard once.
        let mut seen = Vec::new();
        for w in plain.windows(2) {
            if shard_of[w[0]] == shard_of[w[1]] {
                assert_eq!(w[1], w[0] + 1, "{plain:?}");
            }
        }
        for &i in &plain {
            if seen.last() != Some(&shard_of[i]) {
                assert!(!seen.contains(&shard_of[i]), "shard visited twice: {plain:?}");
                seen.push(shard_of[i]);
            }
        }
        assert_eq!(seen.len(), sizes.len());
        assert_ne!(seen, (0..7).collect::<Vec<u32>>(), "the shards are shuffled");
        for buffer in [1, 4, 10, n, 3 * n] {
            let order = shard_order(&shard_of, 3, 0, buffer);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "a permutation (buffer {buffer})");
            assert_eq!(order, shard_order(&shard_of, 3, 0, buffer), "seeded");
            assert_ne!(order, shard_order(&shard_of, 3, 1, buffer), "new each epoch");
            // The stream is the shard order of the same seed (its shard shuffle comes first).
            let position: Vec<usize> = {
                let mut stream: Vec<usize> = Vec::new();
                for s in &seen {
                    stream.extend((0..n).filter(|&i| shard_of[i] == *s));
                }
                let mut p = vec![0; n];
                for (k, &i) in stream.iter().enumerate() {
                    p[i] = k;
                }
                p
            };
            for (j, &i) in order.iter().enumerate() {
                assert!(
                    position[i] < j + buffer,
                    "buffer {buffer}: image {i} from stream position {} emitted at {j}",
                    position[i]
                );
            }
            if buffer > 1 {
                assert_ne!(order, plain, "buffer {buffer} mixes");
            }
        }
    }

    #[test]
    fn shards_split_a_batch_into_consecutive_equal_parts() {
        let batch: Vec<usize> = (10..22).collect();
        let parts: Vec<&[usize]> = (0..3).map(|rank| Shard { rank, ranks: 3 }.of(&batch)).collect();
        assert_eq!(parts, vec![&[10, 11, 12, 13][..], &[14, 15, 16, 17][..], &[18, 19, 20, 21][..]]);
        assert_eq!(Shard::WHOLE.of(&batch), &batch[..]);
    }
}
