//! The evaluation view: no randomness. A centred square crop of `eval_crop` × the shorter
//! side, resized to the output size (the same antialiased resampler as training), normalized —
//! torchvision's `Resize` + `CenterCrop` evaluation transform. With `eval_crop = 1` a square
//! image is only resized (CIFAR's usual evaluation: the image as it is).

use crate::buffer::{ImageRef, RgbF32};
use crate::crop::CropBox;
use crate::normalize::NormalizeConfig;
use crate::resample::{ResampleScratch, resample};

/// The centred square box covering `fraction` of the shorter side.
pub fn center_box(width: u32, height: u32, fraction: f64) -> CropBox {
    let side = ((f64::from(width.min(height)) * fraction).round() as u32).clamp(1, width.min(height));
    CropBox { top: (height - side) / 2, left: (width - side) / 2, height: side, width: side }
}

/// Writes the evaluation view of `src` (normalized CHW, `3 · size²` values) into `out`.
#[allow(clippy::too_many_arguments)]
pub fn eval_view(
    src: ImageRef<'_>,
    size: usize,
    fraction: f64,
    normalize: &NormalizeConfig,
    scratch: &mut ResampleScratch,
    img: &mut RgbF32,
    out: &mut [f32],
) {
    let region = center_box(src.width, src.height, fraction);
    resample(src, region, size, size, scratch, img);
    normalize.write_chw(img, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centred_boxes() {
        assert_eq!(center_box(32, 32, 1.0), CropBox { top: 0, left: 0, height: 32, width: 32 });
        // 300 × 0.875 = 262.5 rounds to 263; the box is centred with the odd pixel after it.
        assert_eq!(center_box(400, 300, 0.875), CropBox { top: 18, left: 68, height: 263, width: 263 });
        assert_eq!(center_box(10, 40, 1.0), CropBox { top: 15, left: 0, height: 10, width: 10 });
    }

    #[test]
    fn full_square_at_native_size_is_just_normalization() {
        let px: Vec<u8> = (0..8 * 8 * 3).map(|i| (i * 5 % 256) as u8).collect();
        let n = NormalizeConfig { mean: [0.5; 3], std: [0.25; 3] };
        let mut out = vec![0.0; 3 * 64];
        eval_view(
            ImageRef::new(8, 8, &px),
            8,
            1.0,
            &n,
            &mut ResampleScratch::default(),
            &mut RgbF32::default(),
            &mut out,
        );
        for (i, &v) in out.iter().enumerate() {
            let (c, p) = (i / 64, i % 64);
            let want = (f32::from(px[p * 3 + c]) / 255.0 - 0.5) / 0.25;
            assert!((v - want).abs() < 1e-5);
        }
    }
}
