//! Random Gaussian blur, as SimCLR uses it: applied with probability `p`, kernel size about a
//! tenth of the image side (odd), sigma drawn from `U(sigma_min, sigma_max)`. Separable, with
//! reflect padding like torchvision's `gaussian_blur`.
//!
//! Both passes run one kernel over a reflect-padded copy: a register-blocked, symmetric
//! convolution (pairs of taps share a multiply) that the compiler vectorizes.

use multiversion::multiversion;
use serde::{Deserialize, Serialize};

use crate::buffer::RgbF32;

/// Gaussian blur parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlurConfig {
    /// Probability of blurring, in `[0, 1]`.
    pub p: f64,
    /// Range of the standard deviation, in output pixels.
    pub sigma: [f64; 2],
    /// Kernel size as a fraction of the output side (rounded down, made odd, at least 3).
    pub kernel_fraction: f64,
}

impl BlurConfig {
    /// The odd kernel size used for an output side of `side` pixels.
    pub fn kernel_size(&self, side: usize) -> usize {
        let k = ((self.kernel_fraction * side as f64) as usize).max(3);
        k | 1
    }
}

/// The normalized 1-D Gaussian kernel of odd size `size`, as torchvision's `_get_gaussian_kernel1d`.
pub fn gaussian_kernel(size: usize, sigma: f32) -> Vec<f32> {
    let half = (size / 2) as f32;
    let w: Vec<f32> = (0..size).map(|i| (-0.5 * ((i as f32 - half) / sigma).powi(2)).exp()).collect();
    let sum: f32 = w.iter().sum();
    w.into_iter().map(|v| v / sum).collect()
}

/// Reflects an index into `0..n` without repeating the edge (…, 2, 1, 0, 1, 2, …).
#[inline]
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m >= n as isize { period - m } else { m }) as usize
}

/// `out[x] = Σ_k kernel[k] · src[x + k·stride]` for a symmetric `kernel` of odd length.
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn symmetric_conv(out: &mut [f32], src: &[f32], stride: usize, kernel: &[f32]) {
    const BLOCK: usize = 16;
    let r = kernel.len() / 2;
    let n = out.len();
    let mut x = 0;
    while x + BLOCK <= n {
        let mut acc = [0.0f32; BLOCK];
        let centre = &src[x + r * stride..x + r * stride + BLOCK];
        for j in 0..BLOCK {
            acc[j] = kernel[r] * centre[j];
        }
        for k in 0..r {
            let a = &src[x + k * stride..x + k * stride + BLOCK];
            let b = &src[x + (2 * r - k) * stride..x + (2 * r - k) * stride + BLOCK];
            let w = kernel[k];
            for j in 0..BLOCK {
                acc[j] += w * (a[j] + b[j]);
            }
        }
        out[x..x + BLOCK].copy_from_slice(&acc);
        x += BLOCK;
    }
    for (x, o) in out.iter_mut().enumerate().skip(x) {
        let mut acc = kernel[r] * src[x + r * stride];
        for k in 0..r {
            acc += kernel[k] * (src[x + k * stride] + src[x + (2 * r - k) * stride]);
        }
        *o = acc;
    }
}

/// Drops the outer taps whose weight is below `1e-7` of the centre weight (they change no
/// value by more than about 1e-6, far below 8-bit resolution); SimCLR's kernel of a tenth of
/// the side is mostly such taps at small sigma. Returns the middle part of `kernel`.
pub fn significant_taps(kernel: &[f32]) -> &[f32] {
    let r = kernel.len() / 2;
    let keep = kernel[..r].iter().position(|&w| w >= 1e-7 * kernel[r]).unwrap_or(r);
    &kernel[keep..kernel.len() - keep]
}

/// Fills `dst` (length `n + 2r`) with `src` (length `n`) padded by `r` reflected values each side.
fn reflect_pad(dst: &mut [f32], src: &[f32], r: usize) {
    let n = src.len();
    dst[r..r + n].copy_from_slice(src);
    for i in 0..r {
        dst[r - 1 - i] = src[reflect(-(i as isize) - 1, n)];
        dst[r + n + i] = src[reflect((n + i) as isize, n)];
    }
}

/// Blurs in place with a separable Gaussian of the given (symmetric, odd) kernel.
/// `scratch` is reused between calls.
pub fn blur(img: &mut RgbF32, kernel: &[f32], scratch: &mut Vec<f32>) {
    let kernel = significant_taps(kernel);
    let (w, h) = (img.width, img.height);
    let r = kernel.len() / 2;
    let padded_w = w + 2 * r;
    scratch.clear();
    scratch.resize(padded_w.max((h + 2 * r) * w), 0.0);
    for plane in img.planes_mut() {
        // Horizontal: each row from a reflect-padded copy of itself.
        for row in plane.chunks_exact_mut(w) {
            reflect_pad(&mut scratch[..padded_w], row, r);
            symmetric_conv(row, &scratch[..padded_w], 1, kernel);
        }
        // Vertical: the whole plane from a copy padded with reflected rows above and below.
        scratch[r * w..(r + h) * w].copy_from_slice(plane);
        for i in 0..r {
            let above = reflect(-(i as isize) - 1, h);
            let below = reflect((h + i) as isize, h);
            scratch[(r - 1 - i) * w..(r - i) * w].copy_from_slice(&plane[above * w..(above + 1) * w]);
            scratch[(r + h + i) * w..(r + h + i + 1) * w].copy_from_slice(&plane[below * w..(below + 1) * w]);
        }
        for (y, row) in plane.chunks_exact_mut(w).enumerate() {
            symmetric_conv(row, &scratch[y * w..(y + 2 * r + 1) * w], w, kernel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive 2-D reference in f64: the outer product of the 1-D kernels with reflect indexing.
    fn reference(img: &RgbF32, sigma: f64, size: usize) -> Vec<f64> {
        let half = (size / 2) as f64;
        let k: Vec<f64> = (0..size).map(|i| (-0.5 * ((i as f64 - half) / sigma).powi(2)).exp()).collect();
        let s: f64 = k.iter().sum();
        let k: Vec<f64> = k.iter().map(|v| v / s).collect();
        let (w, h) = (img.width, img.height);
        let mut out = vec![0.0; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut acc = 0.0;
                    for (ky, wy) in k.iter().enumerate() {
                        for (kx, wx) in k.iter().enumerate() {
                            let sy = reflect(y as isize + ky as isize - half as isize, h);
                            let sx = reflect(x as isize + kx as isize - half as isize, w);
                            acc += wy * wx * f64::from(img.pixel(sx, sy)[c]);
                        }
                    }
                    out[(y * w + x) * 3 + c] = acc;
                }
            }
        }
        out
    }

    fn pattern(w: usize, h: usize) -> RgbF32 {
        let data = (0..w * h * 3).map(|i| ((i * 7919) % 1000) as f32 / 999.0).collect();
        RgbF32 { width: w, height: h, data }
    }

    #[test]
    fn negligible_taps_are_dropped_and_significant_ones_kept() {
        let k = gaussian_kernel(23, 0.5);
        let kept = significant_taps(&k);
        assert!(kept.len() < 23 && kept.len() % 2 == 1, "{}", kept.len());
        let dropped: f32 = k.iter().sum::<f32>() - kept.iter().sum::<f32>();
        assert!(dropped < 1e-6, "{dropped}");
        assert_eq!(significant_taps(&gaussian_kernel(23, 2.0)).len(), 23);
        let mut pad = vec![0.0; 9];
        reflect_pad(&mut pad, &[1.0, 2.0, 3.0, 4.0, 5.0], 2);
        assert_eq!(pad, vec![3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 5.0, 4.0, 3.0]);
    }

    #[test]
    fn reflect_indexing() {
        let got: Vec<usize> = (-3..8).map(|i| reflect(i, 5)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
        assert_eq!(reflect(-5, 1), 0);
    }

    #[test]
    fn kernel_is_normalized_symmetric_gaussian() {
        let k = gaussian_kernel(5, 1.0);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((k[0] - k[4]).abs() < 1e-7 && (k[1] - k[3]).abs() < 1e-7);
        // Ratio of neighbours is exp(-0.5 (x1² - x0²) / sigma²).
        assert!((k[1] / k[2] - (-0.5f32).exp()).abs() < 1e-6);
        assert!((k[0] / k[2] - (-2.0f32).exp()).abs() < 1e-6);
    }

    #[test]
    fn kernel_size_follows_the_fraction_and_is_odd() {
        let cfg = BlurConfig { p: 0.5, sigma: [0.1, 2.0], kernel_fraction: 0.1 };
        assert_eq!(cfg.kernel_size(224), 23);
        assert_eq!(cfg.kernel_size(32), 3);
        assert_eq!(cfg.kernel_size(96), 9);
    }

    #[test]
    fn matches_naive_2d_reference() {
        // Widths above and below the 16-wide block, and kernels wider than the image.
        for (w, h, size, sigma) in
            [(9, 7, 3, 0.8), (37, 11, 5, 1.7), (5, 4, 7, 2.0), (40, 40, 23, 1.9), (33, 20, 23, 0.4)]
        {
            let orig = pattern(w, h);
            let mut img = orig.clone();
            blur(&mut img, &gaussian_kernel(size, sigma as f32), &mut Vec::new());
            let want = reference(&orig, sigma, size);
            for (g, r) in img.to_interleaved().iter().zip(&want) {
                assert!((f64::from(*g) - r).abs() < 1e-5, "{w}x{h} k{size}: {g} vs {r}");
            }
        }
    }

    #[test]
    fn matches_imageproc_away_from_the_border() {
        // imageproc's Gaussian blur is an independent implementation: it cuts its kernel at
        // ⌈2σ⌉ (so that is the size used here) and replicates the border where this one
        // reflects, so the two agree wherever the kernel stays inside the image.
        for sigma in [0.6f32, 1.3, 2.2] {
            let r = (2.0 * sigma).ceil() as usize;
            let (w, h) = (31, 24);
            let orig = pattern(w, h);
            let theirs =
                image::Rgb32FImage::from_fn(w as u32, h as u32, |x, y| image::Rgb(orig.pixel(x as usize, y as usize)));
            let theirs = imageproc::filter::gaussian_blur_f32(&theirs, sigma);
            let mut ours = orig.clone();
            blur(&mut ours, &gaussian_kernel(2 * r + 1, sigma), &mut Vec::new());
            let mut worst = 0.0f32;
            for y in r..h - r {
                for x in r..w - r {
                    let (a, b) = (ours.pixel(x, y), theirs.get_pixel(x as u32, y as u32).0);
                    worst = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(worst, f32::max);
                }
            }
            assert!(worst < 1e-5, "sigma {sigma}: max difference {worst}");
        }
    }

    #[test]
    fn constant_stays_constant_and_mean_is_preserved() {
        let mut flat = RgbF32 { width: 12, height: 9, data: vec![0.3; 12 * 9 * 3] };
        blur(&mut flat, &gaussian_kernel(5, 1.5), &mut Vec::new());
        assert!(flat.data.iter().all(|v| (v - 0.3).abs() < 1e-6));

        // With reflect padding the mean is not exactly invariant at the borders, but on a
        // pattern far larger than the kernel it stays within a small tolerance.
        let orig = pattern(64, 64);
        let mut img = orig.clone();
        blur(&mut img, &gaussian_kernel(3, 1.0), &mut Vec::new());
        let mean = |d: &[f32]| d.iter().map(|&v| f64::from(v)).sum::<f64>() / d.len() as f64;
        assert!((mean(&img.data) - mean(&orig.data)).abs() < 2e-3);
        // And it does smooth: the variance drops.
        let var = |d: &[f32]| {
            let m = mean(d);
            d.iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>() / d.len() as f64
        };
        assert!(var(&img.data) < 0.5 * var(&orig.data));
    }
}
