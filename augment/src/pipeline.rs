//! One view through the whole SimCLR chain: RandomResizedCrop → flip → colour jitter (p) →
//! grayscale (p) → blur (p) → solarize (p) → noise (p) → normalize into a CHW slice.

use rand::RngExt;

use crate::blur::{blur, gaussian_kernel};
use crate::buffer::{ImageRef, RgbF32};
use crate::color_jitter;
use crate::config::{AugmentConfig, ConfigError};
use crate::crop::{CropBox, Region, uniform};
use crate::flip::flip_horizontal;
use crate::grayscale::to_grayscale;
use crate::noise::add_noise;
use crate::resample::{ResampleScratch, resample_region};
use crate::solarize::solarize;

/// Per-thread reusable buffers: one working image and the resampler's and blur's temporaries.
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    resample: ResampleScratch,
    blur: Vec<f32>,
    img: RgbF32,
}

impl Scratch {
    /// The buffers the evaluation view needs.
    pub(crate) fn eval_parts(&mut self) -> (&mut ResampleScratch, &mut RgbF32) {
        (&mut self.resample, &mut self.img)
    }
}

/// A validated augmentation configuration, ready to make views.
#[derive(Clone, Debug)]
pub struct Augmenter {
    cfg: AugmentConfig,
}

impl Augmenter {
    /// Validates `cfg` (keys in errors are relative to the augmentation section).
    pub fn new(cfg: AugmentConfig) -> Result<Self, ConfigError> {
        cfg.validate("augment.")?;
        Ok(Self { cfg })
    }

    pub fn config(&self) -> &AugmentConfig {
        &self.cfg
    }

    /// The augmenter of this configuration's small views (multi-crop), if it has any.
    pub fn small_views(&self) -> Option<Augmenter> {
        // Validated with this configuration: `small.size` and `small.scale` were checked.
        self.cfg.small_view_config().map(|cfg| Self { cfg })
    }

    /// Side of the square views.
    pub fn size(&self) -> usize {
        self.cfg.size as usize
    }

    /// Number of `f32` values one view occupies (`3 · size²`).
    pub fn view_len(&self) -> usize {
        3 * self.size() * self.size()
    }

    /// Makes one augmented view as a `[0, 1]` RGB image (before normalization); the result lives
    /// in `scratch`. The draws from `rng` are fully determined by the image size and `rng`.
    pub fn view_rgb<'s, R: RngExt + ?Sized>(
        &self,
        src: ImageRef<'_>,
        rng: &mut R,
        scratch: &'s mut Scratch,
    ) -> &'s RgbF32 {
        let region = self.draw_crop(src.width, src.height, rng);
        self.finish_rgb(src, region.into(), rng, scratch)
    }

    /// The first draw of a view: its crop box on an image of `width` × `height`. Drawn before
    /// the image is decoded, it tells how small a decode the view allows.
    pub fn draw_crop<R: RngExt + ?Sized>(&self, width: u32, height: u32, rng: &mut R) -> CropBox {
        self.cfg.crop.sample(width, height, rng)
    }

    /// The rest of a view after [`draw_crop`](Self::draw_crop): `region` is the drawn box,
    /// carried onto `src` (which may be a reduced-scale decode, see [`CropBox::scaled`]), and
    /// `rng` continues the view's stream.
    pub fn finish_rgb<'s, R: RngExt + ?Sized>(
        &self,
        src: ImageRef<'_>,
        region: Region,
        rng: &mut R,
        scratch: &'s mut Scratch,
    ) -> &'s RgbF32 {
        let c = &self.cfg;
        let size = self.size();
        resample_region(src, region, size, size, &mut scratch.resample, &mut scratch.img);
        let img = &mut scratch.img;
        if rng.random::<f64>() < c.flip.p {
            flip_horizontal(img);
        }
        if rng.random::<f64>() < c.color_jitter.p {
            let params = c.color_jitter.sample(rng);
            color_jitter::apply(img, &params);
        }
        if rng.random::<f64>() < c.grayscale.p {
            to_grayscale(img);
        }
        if rng.random::<f64>() < c.blur.p {
            let sigma = uniform(rng, c.blur.sigma[0], c.blur.sigma[1]) as f32;
            let kernel = gaussian_kernel(c.blur.kernel_size(size), sigma);
            blur(img, &kernel, &mut scratch.blur);
        }
        if rng.random::<f64>() < c.solarize.p {
            solarize(img, c.solarize.threshold as f32);
        }
        if rng.random::<f64>() < c.noise.p {
            add_noise(img, c.noise.std as f32, rng);
        }
        img
    }

    /// Makes one augmented, normalized view into `out` (CHW, length [`view_len`](Self::view_len)).
    pub fn view<R: RngExt + ?Sized>(&self, src: ImageRef<'_>, rng: &mut R, scratch: &mut Scratch, out: &mut [f32]) {
        let img = self.view_rgb(src, rng, scratch);
        self.cfg.normalize.write_chw(img, out);
    }

    /// [`finish_rgb`](Self::finish_rgb), normalized into `out` as [`view`](Self::view) writes it.
    pub fn finish<R: RngExt + ?Sized>(
        &self,
        src: ImageRef<'_>,
        region: Region,
        rng: &mut R,
        scratch: &mut Scratch,
        out: &mut [f32],
    ) {
        let img = self.finish_rgb(src, region, rng, scratch);
        self.cfg.normalize.write_chw(img, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;
    use crate::rng::view_rng;

    fn image(w: u32, h: u32) -> Vec<u8> {
        (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect()
    }

    #[test]
    fn views_have_the_right_size_and_are_normalized() {
        for preset in [Preset::Cifar, Preset::Imagenet] {
            let aug = Augmenter::new(AugmentConfig::preset(preset)).unwrap();
            let src = image(40, 30);
            let mut out = vec![f32::NAN; aug.view_len()];
            aug.view(ImageRef::new(40, 30, &src), &mut view_rng(0, 0, 0, 0), &mut Scratch::default(), &mut out);
            assert!(out.iter().all(|v| v.is_finite()));
            // Normalized values of [0, 1] inputs are bounded by (0 - mean)/std and (1 - mean)/std.
            let n = &aug.config().normalize;
            let plane = aug.size() * aug.size();
            for c in 0..3 {
                let (lo, hi) = ((0.0 - n.mean[c]) / n.std[c], (1.0 - n.mean[c]) / n.std[c]);
                assert!(out[c * plane..(c + 1) * plane].iter().all(|&v| v >= lo - 1e-5 && v <= hi + 1e-5));
            }
        }
    }

    #[test]
    fn all_ops_off_and_full_crop_is_a_plain_resize() {
        let mut cfg = AugmentConfig::preset(Preset::Cifar);
        cfg.crop.scale = [1.0, 1.0];
        cfg.crop.ratio = [1.0, 1.0];
        cfg.flip.p = 0.0;
        cfg.color_jitter.p = 0.0;
        cfg.grayscale.p = 0.0;
        let aug = Augmenter::new(cfg).unwrap();
        let src = image(32, 32);
        let mut scratch = Scratch::default();
        let img = aug.view_rgb(ImageRef::new(32, 32, &src), &mut view_rng(1, 2, 3, 0), &mut scratch);
        assert_eq!(img.to_u8(), src);
    }

    #[test]
    fn grayscale_always_gives_equal_channels() {
        let mut cfg = AugmentConfig::preset(Preset::Cifar);
        cfg.grayscale.p = 1.0;
        let aug = Augmenter::new(cfg).unwrap();
        let src = image(20, 20);
        let mut scratch = Scratch::default();
        for i in 0..20 {
            let img = aug.view_rgb(ImageRef::new(20, 20, &src), &mut view_rng(1, 0, i, 0), &mut scratch);
            assert!(img.to_interleaved().chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        }
    }

    #[test]
    fn tiny_images_are_upscaled() {
        let aug = Augmenter::new(AugmentConfig::preset(Preset::Cifar)).unwrap();
        let src = image(1, 1);
        let mut out = vec![0.0; aug.view_len()];
        aug.view(ImageRef::new(1, 1, &src), &mut view_rng(0, 0, 0, 0), &mut Scratch::default(), &mut out);
        assert!(out.iter().all(|v| v.is_finite()));
    }
}
