//! Two views of a whole batch, made in parallel with rayon and written in place into two
//! batch buffers (`[batch, 3, size, size]` each, row-major).

use rayon::prelude::*;

use crate::buffer::ImageRef;
use crate::pipeline::{Augmenter, Scratch};
use crate::rng::view_rng;

thread_local! {
    /// Each worker thread keeps its buffers across samples and batches: allocating them per
    /// task cost 14 % of the time at 224 px (fresh pages zeroed by the kernel).
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Where the images come from: anything that can lend image `index` as 8-bit RGB. The image may
/// be borrowed from a cache or decoded on the spot.
pub trait ImageSource: Sync {
    /// Number of images.
    fn len(&self) -> usize;

    /// Whether there are no images.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with image `index`.
    fn with_image(&self, index: usize, f: &mut dyn FnMut(ImageRef<'_>));
}

impl ImageSource for [ImageRef<'_>] {
    fn len(&self) -> usize {
        <[ImageRef<'_>]>::len(self)
    }
    fn with_image(&self, index: usize, f: &mut dyn FnMut(ImageRef<'_>)) {
        f(self[index]);
    }
}

impl ImageSource for Vec<ImageRef<'_>> {
    fn len(&self) -> usize {
        <[ImageRef<'_>]>::len(self)
    }
    fn with_image(&self, index: usize, f: &mut dyn FnMut(ImageRef<'_>)) {
        f(self[index]);
    }
}

impl Augmenter {
    /// Augments images `samples` (indices into `source`) twice each: view 1 of sample `k` goes
    /// to `out1[k · view_len ..]`, view 2 to `out2`. The draws of view `v` of sample `i` depend
    /// only on `(seed, epoch, i, v)`, never on the batch or the thread count.
    pub fn two_views_batch<S: ImageSource + ?Sized>(
        &self,
        source: &S,
        samples: &[usize],
        seed: u64,
        epoch: u64,
        out1: &mut [f32],
        out2: &mut [f32],
    ) {
        let len = self.view_len();
        assert_eq!(out1.len(), samples.len() * len, "out1 must hold {} views", samples.len());
        assert_eq!(out2.len(), samples.len() * len, "out2 must hold {} views", samples.len());
        let slots = out1.chunks_mut(len).zip(out2.chunks_mut(len)).map(|(a, b)| vec![(0, a), (1, b)]).collect();
        self.fill(source, samples, seed, epoch, slots);
    }

    /// Augments images `samples` into `out`, `views = out.len() / (samples.len() · view_len)`
    /// (at most 255 streams in all: the configuration allows 64 + 64)
    /// views each, view-major: view `v` of sample `k` goes to `out[(v · samples.len() + k) ·
    /// view_len ..]` and is drawn from the stream of view `first_view + v` (so a second
    /// augmenter — multi-crop's small views — continues the numbering where this one stops).
    /// Each image is fetched once for all its views.
    pub fn views_batch<S: ImageSource + ?Sized>(
        &self,
        source: &S,
        samples: &[usize],
        seed: u64,
        epoch: u64,
        first_view: u8,
        out: &mut [f32],
    ) {
        let (len, n) = (self.view_len(), samples.len());
        assert!(n > 0 && out.len().is_multiple_of(n * len), "out must hold whole views of {n} samples");
        let mut slots: Vec<Vec<(u8, &mut [f32])>> = (0..n).map(|_| Vec::new()).collect();
        for (k, chunk) in out.chunks_mut(len).enumerate() {
            slots[k % n].push((first_view + (k / n) as u8, chunk));
        }
        self.fill(source, samples, seed, epoch, slots);
    }

    /// Every training view of images `samples`: this augmenter's `views` full-size views into
    /// `full_out` (streams `0..V`), then, with multi-crop, `small`'s `small_views` views into
    /// `small_out` (streams `V..V + S`; empty without small views) — the one numbering of the
    /// views that training and `bench augment` share (both view-major, see [`Self::views_batch`]).
    #[allow(clippy::too_many_arguments)]
    pub fn training_views_batch<S: ImageSource + ?Sized>(
        &self,
        small: Option<&Augmenter>,
        source: &S,
        samples: &[usize],
        seed: u64,
        epoch: u64,
        full_out: &mut [f32],
        small_out: &mut [f32],
    ) {
        self.views_batch(source, samples, seed, epoch, 0, full_out);
        if let Some(small) = small {
            small.views_batch(source, samples, seed, epoch, self.config().views as u8, small_out);
        }
    }

    /// Writes, in parallel over the samples, each sample's views into its `(view, output)`
    /// slots.
    fn fill<S: ImageSource + ?Sized>(
        &self,
        source: &S,
        samples: &[usize],
        seed: u64,
        epoch: u64,
        slots: Vec<Vec<(u8, &mut [f32])>>,
    ) {
        slots.into_par_iter().zip(samples.par_iter()).for_each(|(mut slots, &index)| {
            SCRATCH.with_borrow_mut(|scratch| {
                source.with_image(index, &mut |img| {
                    for (view, out) in slots.iter_mut() {
                        self.view(img, &mut view_rng(seed, epoch, index as u64, *view), scratch, out);
                    }
                });
            });
        });
    }
}

impl Augmenter {
    /// The evaluation views (no randomness, see [`crate::center`]) of images `samples`, in
    /// parallel: image `k`'s view goes to `out[k · view_len ..]`.
    pub fn eval_batch<S: ImageSource + ?Sized>(&self, source: &S, samples: &[usize], out: &mut [f32]) {
        let len = self.view_len();
        assert_eq!(out.len(), samples.len() * len, "out must hold {} views", samples.len());
        let c = self.config();
        out.par_chunks_mut(len).zip(samples.par_iter()).for_each(|(o, &index)| {
            SCRATCH.with_borrow_mut(|scratch| {
                source.with_image(index, &mut |img| {
                    let (resample, work) = scratch.eval_parts();
                    crate::center::eval_view(img, self.size(), c.eval_crop, &c.normalize, resample, work, o);
                });
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AugmentConfig, Preset};

    fn images() -> Vec<(u32, u32, Vec<u8>)> {
        (0..12u32)
            .map(|i| {
                let (w, h) = (20 + i * 3, 17 + i);
                (w, h, (0..w * h * 3).map(|k| ((k * (i + 7)) % 256) as u8).collect())
            })
            .collect()
    }

    fn run(threads: usize, samples: &[usize], cfg: &AugmentConfig) -> (Vec<f32>, Vec<f32>) {
        let owned = images();
        let refs: Vec<ImageRef> = owned.iter().map(|(w, h, p)| ImageRef::new(*w, *h, p)).collect();
        let aug = Augmenter::new(cfg.clone()).unwrap();
        let mut o1 = vec![0.0; samples.len() * aug.view_len()];
        let mut o2 = o1.clone();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| aug.two_views_batch(&refs[..], samples, 42, 3, &mut o1, &mut o2));
        (o1, o2)
    }

    #[test]
    fn same_views_whatever_the_thread_count_or_batch_order() {
        let mut cfg = AugmentConfig::preset(Preset::Cifar);
        cfg.blur.p = 0.5;
        cfg.noise.p = 0.5;
        cfg.solarize.p = 0.3;
        let samples: Vec<usize> = (0..12).collect();
        let (a1, a2) = run(1, &samples, &cfg);
        let (b1, b2) = run(4, &samples, &cfg);
        assert_eq!(a1, b1);
        assert_eq!(a2, b2);
        // Reversed batch: sample k's views move to position 11 - k, unchanged.
        let rev: Vec<usize> = (0..12).rev().collect();
        let (c1, _) = run(3, &rev, &cfg);
        let n = Augmenter::new(cfg).unwrap().view_len();
        for k in 0..12 {
            assert_eq!(&a1[k * n..(k + 1) * n], &c1[(11 - k) * n..(12 - k) * n]);
        }
        // The two views of a sample differ.
        assert_ne!(&a1[..n], &a2[..n]);
    }

    /// `views_batch` lays views out view-major and draws view `v` of sample `i` from stream
    /// `first_view + v`: its first two views are `two_views_batch`'s, a continuation numbered
    /// from 2 gives the rest, and each view equals the single-view pipeline on that stream.
    #[test]
    fn views_batch_is_view_major_and_continues_the_view_numbering() {
        let cfg = AugmentConfig::preset(Preset::Cifar);
        let samples = [3usize, 0, 7, 11, 5];
        let owned = images();
        let refs: Vec<ImageRef> = owned.iter().map(|(w, h, p)| ImageRef::new(*w, *h, p)).collect();
        let aug = Augmenter::new(cfg.clone()).unwrap();
        let (len, n) = (aug.view_len(), samples.len());
        let (two1, two2) = run(2, &samples, &cfg);
        let mut four = vec![0.0; 4 * n * len];
        aug.views_batch(&refs[..], &samples, 42, 3, 0, &mut four);
        assert_eq!(&four[..n * len], &two1[..]);
        assert_eq!(&four[n * len..2 * n * len], &two2[..]);
        let mut rest = vec![0.0; 2 * n * len];
        aug.views_batch(&refs[..], &samples, 42, 3, 2, &mut rest);
        assert_eq!(&four[2 * n * len..], &rest[..]);
        let mut scratch = Scratch::default();
        for (v, k) in [(2usize, 0usize), (3, 4), (3, 1)] {
            let mut one = vec![0.0; len];
            aug.view(refs[samples[k]], &mut view_rng(42, 3, samples[k] as u64, v as u8), &mut scratch, &mut one);
            assert_eq!(&four[(v * n + k) * len..(v * n + k + 1) * len], &one[..], "view {v} of sample {k}");
        }
        assert_ne!(&four[2 * n * len..3 * n * len], &four[3 * n * len..]);
    }
}
