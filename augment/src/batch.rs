//! Two views of a whole batch, made in parallel with rayon and written in place into two
//! batch buffers (`[batch, 3, size, size]` each, row-major).

use std::cell::RefCell;

use rayon::prelude::*;

use crate::buffer::ImageRef;
use crate::crop::CropBox;
use crate::pipeline::{Augmenter, Scratch};
use crate::rng::{ViewRng, view_rng};

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

    /// Calls `f` with image `index`, decoded no larger than its views need where the source
    /// can decode at a reduced scale. `plan` is called first with the image's size as
    /// [`with_image`](Self::with_image) lends it (the *reference* size, in which crop boxes are
    /// drawn) and returns how many times smaller than that the image may be (`>= 1`); `f` gets
    /// the image and the factors `[fx, fy]` that carry reference coordinates onto its pixels
    /// (`[1, 1]` at full scale). A source that cannot reduce lends the image as it is.
    fn with_image_planned(
        &self,
        index: usize,
        plan: &mut dyn FnMut(u32, u32) -> f64,
        f: &mut dyn FnMut(ImageRef<'_>, [f64; 2]),
    ) {
        self.with_image(index, &mut |img| {
            plan(img.width, img.height);
            f(img, [1.0, 1.0]);
        });
    }
}

/// One view to make of a sample: the augmenter (full-size or multi-crop's small one), the
/// number of its random stream and where it goes.
type Slot<'a, 'o> = (&'a Augmenter, u8, &'o mut [f32]);

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
        let slots =
            out1.chunks_mut(len).zip(out2.chunks_mut(len)).map(|(a, b)| vec![(self, 0, a), (self, 1, b)]).collect();
        fill(source, samples, seed, epoch, slots);
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
        let mut slots: Vec<Vec<Slot>> = (0..samples.len()).map(|_| Vec::new()).collect();
        self.add_slots(first_view, out, &mut slots);
        fill(source, samples, seed, epoch, slots);
    }

    /// Adds this augmenter's views of every sample (view-major in `out`, streams numbered from
    /// `first_view`) to the samples' `slots`.
    fn add_slots<'a, 'o>(&'a self, first_view: u8, out: &'o mut [f32], slots: &mut [Vec<Slot<'a, 'o>>]) {
        let (len, n) = (self.view_len(), slots.len());
        assert!(n > 0 && out.len().is_multiple_of(n * len), "out must hold whole views of {n} samples");
        for (k, chunk) in out.chunks_mut(len).enumerate() {
            slots[k % n].push((self, first_view + (k / n) as u8, chunk));
        }
    }

    /// Every training view of images `samples`: this augmenter's `views` full-size views into
    /// `full_out` (streams `0..V`), then, with multi-crop, `small`'s `small_views` views into
    /// `small_out` (streams `V..V + S`; empty without small views) — the one numbering of the
    /// views that training and `bench augment` share (both view-major, see [`Self::views_batch`]).
    /// Each image is fetched once for all its views, full-size and small.
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
        let mut slots: Vec<Vec<Slot>> = (0..samples.len()).map(|_| Vec::new()).collect();
        self.add_slots(0, full_out, &mut slots);
        if let Some(small) = small {
            small.add_slots(self.config().views as u8, small_out, &mut slots);
        }
        fill(source, samples, seed, epoch, slots);
    }
}

/// How many times smaller than the image a view of `size` pixels from `crop` may be decoded:
/// the crop's shorter side over the view's side (below 1 when the view enlarges).
fn allowed_reduction(crop: CropBox, size: usize) -> f64 {
    f64::from(crop.width.min(crop.height)) / size as f64
}

/// Writes, in parallel over the samples, each sample's views into its slots. Every view's crop
/// box is drawn first, in the image's reference size, so that the source can decode the image
/// once, at the smallest scale all of them allow; the rest of each view then comes from that
/// decode with the box carried onto it. A view's draws are the same whatever the decode scale.
fn fill<S: ImageSource + ?Sized>(source: &S, samples: &[usize], seed: u64, epoch: u64, slots: Vec<Vec<Slot>>) {
    slots.into_par_iter().zip(samples.par_iter()).for_each(|(slots, &index)| {
        SCRATCH.with_borrow_mut(|scratch| {
            let (views, mut outs): (Vec<(&Augmenter, u8)>, Vec<&mut [f32]>) =
                slots.into_iter().map(|(aug, view, out)| ((aug, view), out)).unzip();
            let drawn: RefCell<Vec<(CropBox, ViewRng)>> = RefCell::new(Vec::with_capacity(views.len()));
            let mut plan = |width: u32, height: u32| {
                let mut drawn = drawn.borrow_mut();
                drawn.clear();
                let mut allowed = f64::INFINITY;
                for &(aug, view) in &views {
                    let mut rng = view_rng(seed, epoch, index as u64, view);
                    let crop = aug.draw_crop(width, height, &mut rng);
                    allowed = allowed.min(allowed_reduction(crop, aug.size()));
                    drawn.push((crop, rng));
                }
                allowed.max(1.0)
            };
            let mut make = |img: ImageRef<'_>, [fx, fy]: [f64; 2]| {
                let mut drawn = drawn.borrow_mut();
                for ((&(aug, _), out), (crop, rng)) in views.iter().zip(outs.iter_mut()).zip(drawn.iter_mut()) {
                    aug.finish(img, crop.scaled(fx, fy), rng, scratch, out);
                }
            };
            source.with_image_planned(index, &mut plan, &mut make);
        });
    });
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

    /// A source that decodes "at reduced scale" the way a JPEG decoder's DCT scaling does, here
    /// by exact `r × r` means of the reference image, and records what the plan allowed.
    struct Reducing {
        width: u32,
        height: u32,
        pixels: Vec<u8>,
        allowed: std::sync::Mutex<Vec<f64>>,
    }

    impl ImageSource for Reducing {
        fn len(&self) -> usize {
            1
        }
        fn with_image(&self, _: usize, f: &mut dyn FnMut(ImageRef<'_>)) {
            f(ImageRef::new(self.width, self.height, &self.pixels));
        }
        fn with_image_planned(
            &self,
            _: usize,
            plan: &mut dyn FnMut(u32, u32) -> f64,
            f: &mut dyn FnMut(ImageRef<'_>, [f64; 2]),
        ) {
            let allowed = plan(self.width, self.height);
            self.allowed.lock().unwrap().push(allowed);
            let r = [4u32, 2, 1].into_iter().find(|&r| f64::from(r) <= allowed).unwrap();
            let (w, h) = (self.width / r, self.height / r);
            let mut reduced = Vec::with_capacity((w * h * 3) as usize);
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let mut sum = 0u32;
                        for dy in 0..r {
                            for dx in 0..r {
                                sum +=
                                    u32::from(self.pixels[(((y * r + dy) * self.width + x * r + dx) * 3 + c) as usize]);
                            }
                        }
                        reduced.push(((sum + r * r / 2) / (r * r)) as u8);
                    }
                }
            }
            let factor = 1.0 / f64::from(r);
            f(ImageRef::new(w, h, &reduced), [factor, factor]);
        }
    }

    /// Every view's crop box is drawn before the image is fetched: the plan allows the smallest
    /// crop side over the view size (checked against boxes drawn here from the same streams),
    /// and views made from the reduced image stay close to those from the full one.
    #[test]
    fn views_from_a_reduced_decode_use_the_same_boxes_and_stay_close() {
        let mut cfg = AugmentConfig::preset(Preset::Cifar);
        cfg.size = 16;
        cfg.crop.scale = [0.3, 1.0];
        cfg.color_jitter.p = 0.0; // keep the comparison about the pixels' geometry
        cfg.normalize.mean = [0.0; 3];
        cfg.normalize.std = [1.0; 3];
        let aug = Augmenter::new(cfg.clone()).unwrap();
        let (w, h) = (160u32, 128u32);
        let pixels: Vec<u8> =
            (0..h).flat_map(|y| (0..w).flat_map(move |x| [x as u8, (y * 2) as u8, ((x + y) / 2) as u8])).collect();
        let source = Reducing { width: w, height: h, pixels: pixels.clone(), allowed: Default::default() };
        let full = [ImageRef::new(w, h, &pixels)];
        let len = aug.view_len();
        let mut reduced_seen = 0;
        for epoch in 0..12u64 {
            let (mut a, mut b) = (vec![0.0; 2 * len], vec![0.0; 2 * len]);
            aug.views_batch(&source, &[0], 5, epoch, 0, &mut a);
            aug.views_batch(&full[..], &[0], 5, epoch, 0, &mut b);
            let allowed = *source.allowed.lock().unwrap().last().unwrap();
            let want = (0..2u8)
                .map(|v| {
                    let crop = cfg.crop.sample(w, h, &mut view_rng(5, epoch, 0, v));
                    f64::from(crop.width.min(crop.height)) / 16.0
                })
                .fold(f64::INFINITY, f64::min);
            assert_eq!(allowed, want.max(1.0), "epoch {epoch}");
            reduced_seen += usize::from(allowed >= 2.0);
            let mean = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
            assert!(mean < 1.5 / 255.0, "epoch {epoch}: mean difference {mean}");
        }
        assert!(reduced_seen >= 3, "only {reduced_seen} of 12 draws used a reduced image");
    }
}
