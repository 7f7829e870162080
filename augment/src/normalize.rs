//! Per-channel mean/std normalization, written from the interleaved working image straight into
//! a caller-provided planar CHW `f32` slice (one view's place inside a batch buffer).

use multiversion::multiversion;
use serde::{Deserialize, Serialize};

use crate::buffer::RgbF32;

/// Channel means and standard deviations (of `[0, 1]` intensities).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeConfig {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl NormalizeConfig {
    /// CIFAR-10 training-set statistics.
    pub fn cifar10() -> Self {
        Self { mean: [0.4914, 0.4822, 0.4465], std: [0.2470, 0.2435, 0.2616] }
    }

    /// ImageNet statistics, as torchvision's pretrained models use.
    pub fn imagenet() -> Self {
        Self { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }
    }

    /// Writes `(x − mean) / std` as CHW into `out` (length `3 · width · height`).
    pub fn write_chw(&self, img: &RgbF32, out: &mut [f32]) {
        assert_eq!(out.len(), img.data.len(), "output slice must hold 3 x {} values", img.plane_len());
        let n = img.plane_len();
        for (c, (dst, src)) in out.chunks_exact_mut(n.max(1)).zip(img.planes()).enumerate() {
            affine(dst, src, 1.0 / self.std[c], -self.mean[c] / self.std[c]);
        }
    }

    /// Inverse of [`write_chw`](Self::write_chw): back to a `[0, 1]` image.
    pub fn read_chw(&self, chw: &[f32], width: usize, height: usize) -> RgbF32 {
        let mut img = RgbF32::new(width, height);
        let n = img.plane_len();
        for (c, (dst, src)) in img.data.chunks_exact_mut(n.max(1)).zip(chw.chunks_exact(n.max(1))).enumerate() {
            affine(dst, src, self.std[c], self.mean[c]);
        }
        img
    }
}

/// `dst = scale · src + shift`.
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn affine(dst: &mut [f32], src: &[f32], scale: f32, shift: f32) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s * scale + shift;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_planar_normalized_values_and_inverts() {
        let img = RgbF32::from_interleaved(2, 1, &[0.1, 0.2, 0.3, 0.9, 0.8, 0.7]);
        let cfg = NormalizeConfig { mean: [0.5, 0.4, 0.3], std: [0.25, 0.5, 0.1] };
        let mut out = vec![0.0; 6];
        cfg.write_chw(&img, &mut out);
        let want =
            [(0.1 - 0.5) / 0.25, (0.9 - 0.5) / 0.25, (0.2 - 0.4) / 0.5, (0.8 - 0.4) / 0.5, 0.0, (0.7 - 0.3) / 0.1];
        for (g, w) in out.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-5, "{g} vs {w}");
        }
        let back = cfg.read_chw(&out, 2, 1);
        for (a, b) in back.data.iter().zip(&img.data) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
