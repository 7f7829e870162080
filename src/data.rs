//! The bridge between the two data crates: opening a [`Dataset`] from the run configuration, and
//! lending its images to the augmentation stage (an [`ImageSource`]).

use std::path::Path;

use anyhow::Result;
use selfsup_augment::{ImageRef, ImageSource};
use selfsup_datasets::{DecodeOptions, LoadOptions, ReadAhead};

pub use selfsup_datasets::Dataset;

use crate::config::Config;

/// The loader options the configuration asks for.
pub fn load_options(cfg: &Config, verbose: bool) -> LoadOptions {
    LoadOptions {
        decode: DecodeOptions { load_size: cfg.data.load_size, max_pixels: cfg.data.max_pixels },
        cache_limit: cfg.data.cache_limit.0,
        limit: cfg.data.limit,
        seed: cfg.seed,
        verbose,
    }
}

/// Opens the dataset at `path` as the configuration says.
pub fn open_dataset(path: &Path, cfg: &Config, verbose: bool) -> Result<Dataset> {
    Ok(selfsup_datasets::open(path, &load_options(cfg, verbose))?)
}

/// A dataset seen as an augmentation source.
pub struct Images<'a>(pub &'a Dataset);

/// A streaming dataset seen as an augmentation source, its files read ahead of the workers by
/// `ahead` (what a worker finds there it does not read again).
pub struct ReadAheadImages<'a> {
    pub ds: &'a Dataset,
    pub ahead: &'a ReadAhead,
}

impl ImageSource for ReadAheadImages<'_> {
    fn len(&self) -> usize {
        self.ds.len()
    }

    fn with_image(&self, index: usize, f: &mut dyn FnMut(ImageRef<'_>)) {
        Images(self.ds).with_image(index, f);
    }

    fn with_image_planned(
        &self,
        index: usize,
        plan: &mut dyn FnMut(u32, u32) -> f64,
        f: &mut dyn FnMut(ImageRef<'_>, [f64; 2]),
    ) {
        self.ds.with_image_read_ahead(index, self.ahead, plan, |w, h, px, factors| f(ImageRef::new(w, h, px), factors));
    }
}

impl ImageSource for Images<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn with_image(&self, index: usize, f: &mut dyn FnMut(ImageRef<'_>)) {
        self.0.with_image(index, |w, h, px| f(ImageRef::new(w, h, px)));
    }

    fn with_image_planned(
        &self,
        index: usize,
        plan: &mut dyn FnMut(u32, u32) -> f64,
        f: &mut dyn FnMut(ImageRef<'_>, [f64; 2]),
    ) {
        self.0.with_image_planned(index, plan, |w, h, px, factors| f(ImageRef::new(w, h, px), factors));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};
    use selfsup_augment::{AugmentConfig, Augmenter, Preset, view_rng};
    use selfsup_datasets::{LoadOptions, open};

    use super::Images;

    /// Photo-like JPEGs (gradients, slow waves) of `w` × `h` at quality 95.
    fn write_jpegs(dir: &Path, w: u32, h: u32, count: u32) {
        for i in 0..count {
            let img = ImageBuffer::from_fn(w, h, |x, y| {
                let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
                let wave = ((fx * (5.0 + i as f32)).sin() * (fy * 6.0).cos() + 1.0) * 60.0;
                Rgb([(fx * 200.0 + 20.0) as u8, (wave + 40.0) as u8, ((1.0 - fy) * 180.0) as u8])
            });
            DynamicImage::ImageRgb8(img).save_with_format(dir.join(format!("{i}.jpg")), ImageFormat::Jpeg).unwrap();
        }
    }

    /// Both views of every sample of `epoch`, view-major, as `[0, 1]` values.
    fn views(aug: &Augmenter, ds: &super::Dataset, epoch: u64) -> Vec<f32> {
        let samples: Vec<usize> = (0..ds.len()).collect();
        let mut out = vec![0.0; 2 * samples.len() * aug.view_len()];
        aug.training_views_batch(None, &Images(ds), &samples, 3, epoch, &mut out, &mut []);
        out
    }

    /// Streaming makes its views from reduced-scale decodes where every crop allows it: the
    /// same crop boxes (the seed's draws do not depend on the decode), pixels within a stated
    /// tolerance of the cached full decode's views; where no crop allows it, bit for bit.
    #[test]
    fn streamed_views_match_cached_views() {
        let mut cfg = AugmentConfig::preset(Preset::Imagenet);
        cfg.size = 64;
        cfg.normalize.mean = [0.0; 3];
        cfg.normalize.std = [1.0; 3];
        let aug = Augmenter::new(cfg.clone()).unwrap();
        let quiet = LoadOptions { verbose: false, ..LoadOptions::default() };
        let streaming = LoadOptions { cache_limit: 0, ..quiet.clone() };

        let big = tempfile::tempdir().unwrap();
        write_jpegs(big.path(), 640, 480, 4);
        let (cached, streamed) = (open(big.path(), &quiet).unwrap(), open(big.path(), &streaming).unwrap());
        assert!(streamed.is_streaming() && !cached.is_streaming());
        let mut reduced = 0;
        for epoch in 0..4 {
            let (a, b) = (views(&aug, &cached, epoch), views(&aug, &streamed, epoch));
            let mean = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
            let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            // Measured: mean 0.0003 to 0.0004, largest 0.012 (3 levels; colour jitter's
            // contrast amplifies the decodes' differences).
            assert!(mean < 0.002 && worst < 0.03, "epoch {epoch}: mean {mean}, largest {worst}");
            // How many samples had both crops at least twice the view size (drawn here alone).
            reduced += (0..cached.len() as u64)
                .filter(|&i| {
                    (0..2).all(|v| {
                        let crop = cfg.crop.sample(640, 480, &mut view_rng(3, epoch, i, v));
                        crop.width.min(crop.height) >= 128
                    })
                })
                .count();
        }
        assert!(reduced >= 2, "only {reduced} of 16 samples were decoded at reduced scale");

        let small = tempfile::tempdir().unwrap();
        write_jpegs(small.path(), 100, 75, 4);
        let (cached, streamed) = (open(small.path(), &quiet).unwrap(), open(small.path(), &streaming).unwrap());
        for epoch in 0..2 {
            assert_eq!(views(&aug, &cached, epoch), views(&aug, &streamed, epoch), "epoch {epoch}");
        }
    }
}
