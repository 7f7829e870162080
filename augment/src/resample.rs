//! Resampling of a crop box straight from the 8-bit source to the output size.
//!
//! A separable triangle (bilinear) filter in the style of Pillow's and torchvision's
//! `antialias=True` resize: when enlarging, it is plain bilinear interpolation with half-pixel
//! centres (`align_corners=False`); when shrinking by a factor `s`, the filter is widened to `s`
//! source pixels so that every source pixel contributes (no aliasing). Taps are clamped to the
//! crop box, exactly as if the box had been cut out first.
//!
//! The vertical pass runs first, on whole source rows (contiguous, so it vectorizes), producing
//! only `output height × box width` values; the horizontal pass then writes the planar output.
//! No full-size intermediate copy is ever made.

use multiversion::multiversion;

use crate::buffer::{ImageRef, RgbF32};
use crate::crop::{CropBox, Region};

/// Filter taps of one output coordinate: `weights[offset..offset + len]` apply to source
/// positions `start..start + len` (relative to the box).
#[derive(Clone, Copy, Debug, Default)]
struct Taps {
    start: u32,
    len: u32,
    offset: u32,
}

/// Reusable buffers for [`resample`], so that a worker thread allocates once.
#[derive(Clone, Debug, Default)]
pub struct ResampleScratch {
    taps_x: Vec<Taps>,
    taps_y: Vec<Taps>,
    weights_x: Vec<f32>,
    weights_y: Vec<f32>,
    rows: Vec<f32>,
    starts_x: Vec<u32>,
    fixed_x: Vec<f32>,
}

/// Computes the taps mapping the span `start .. start + extent` of a box of `in_size` pixels
/// onto `out_size` output pixels (for an integer crop box the span is the whole box: `start` 0,
/// `extent` `in_size`). Weights are normalized to sum to `gain`.
fn compute_taps(
    start: f64,
    extent: f64,
    in_size: u32,
    out_size: u32,
    gain: f32,
    taps: &mut Vec<Taps>,
    weights: &mut Vec<f32>,
) {
    taps.clear();
    weights.clear();
    let scale = extent / f64::from(out_size);
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle filter's support is 1
    for x in 0..out_size {
        let center = start + (f64::from(x) + 0.5) * scale;
        let lo = ((center - support + 0.5).floor().max(0.0)) as u32;
        let hi = ((center + support + 0.5).floor() as u32).min(in_size).max(lo + 1);
        let offset = weights.len() as u32;
        let mut sum = 0.0f64;
        for k in lo..hi {
            let w = (1.0 - ((f64::from(k) - center + 0.5) / filter_scale).abs()).max(0.0);
            weights.push(w as f32);
            sum += w;
        }
        if sum > 0.0 {
            let norm = f64::from(gain) / sum;
            for w in &mut weights[offset as usize..] {
                *w = (f64::from(*w) * norm) as f32;
            }
        } else {
            // Degenerate (cannot happen with lo < hi inside the support): nearest pixel.
            weights[offset as usize] = gain;
        }
        taps.push(Taps { start: lo, len: hi - lo, offset });
    }
}

/// `dst = Σ_k weights[k] · rows[k]` over `u8` rows (the vertical pass).
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn weighted_rows(dst: &mut [f32], src: &[u8], stride: usize, first: usize, weights: &[f32]) {
    let n = dst.len();
    let row = |k: usize| &src[(first + k) * stride..(first + k) * stride + n];
    let (w0, r0) = (weights[0], row(0));
    for (d, &s) in dst.iter_mut().zip(r0) {
        *d = w0 * f32::from(s);
    }
    for (k, &wk) in weights.iter().enumerate().skip(1) {
        for (d, &s) in dst.iter_mut().zip(row(k)) {
            *d += wk * f32::from(s);
        }
    }
}

/// Resamples `region` of `src` to `out_w` × `out_h`, writing `[0, 1]` floats into `out`.
pub fn resample(
    src: ImageRef<'_>,
    region: CropBox,
    out_w: usize,
    out_h: usize,
    scratch: &mut ResampleScratch,
    out: &mut RgbF32,
) {
    assert!(region.left + region.width <= src.width && region.top + region.height <= src.height);
    resample_region(src, region.into(), out_w, out_h, scratch, out);
}

/// The whole source pixels a fractional span covers: `(first, count, offset of the span in
/// them)`, kept inside `0..size`.
fn covering(start: f64, extent: f64, size: u32) -> (u32, u32, f64) {
    let first = (start.max(0.0).floor() as u32).min(size - 1);
    let end = ((start + extent).ceil() as u32).clamp(first + 1, size);
    (first, end - first, start - f64::from(first))
}

/// [`resample`] of a fractional region: the same crop of an image decoded at another scale
/// ([`CropBox::scaled`]). Taps are clamped to the whole pixels the region covers. For a region
/// of whole pixels this is exactly [`resample`].
pub fn resample_region(
    src: ImageRef<'_>,
    region: Region,
    out_w: usize,
    out_h: usize,
    scratch: &mut ResampleScratch,
    out: &mut RgbF32,
) {
    assert!(region.width > 0.0 && region.height > 0.0 && out_w > 0 && out_h > 0);
    assert!(src.width > 0 && src.height > 0);
    let (left, width, x0) = covering(region.left, region.width, src.width);
    let (top, height, y0) = covering(region.top, region.height, src.height);
    let ResampleScratch { taps_x, taps_y, weights_x, weights_y, rows, starts_x, fixed_x } = scratch;
    compute_taps(x0, region.width, width, out_w as u32, 1.0, taps_x, weights_x);
    compute_taps(y0, region.height, height, out_h as u32, 1.0 / 255.0, taps_y, weights_y);
    let region = CropBox { top, left, height, width };

    // Vertical pass: out_h rows of the box's width, interleaved RGB, scaled to [0, 1]. Each
    // row keeps one spare value at its end so the horizontal pass can load 4 lanes per pixel.
    let stride = src.width as usize * 3;
    let row_len = region.width as usize * 3;
    let box_src = &src.pixels[region.top as usize * stride + region.left as usize * 3..];
    rows.resize(out_h * (row_len + 1), 0.0);
    for (t, dst) in taps_y.iter().zip(rows.chunks_exact_mut(row_len + 1)) {
        let w = &weights_y[t.offset as usize..(t.offset + t.len) as usize];
        weighted_rows(&mut dst[..row_len], box_src, stride, t.start as usize, w);
    }

    // Horizontal pass into the planar output, unrolled for the common tap counts.
    let n = fixed_taps(taps_x, weights_x, region.width, starts_x, fixed_x);
    out.reshape(out_w, out_h);
    let [pr, pg, pb] = out.planes_mut();
    // More than 8 taps (strong shrinking): the loop overhead is minor next to the taps.
    let any = move |row: &[f32], starts: &[u32], w: &[f32], r: &mut [f32], g: &mut [f32], b: &mut [f32]| {
        row_pass(n, row, starts, w, r, g, b)
    };
    let pass: &RowPass = match n {
        1 => &horizontal_row::<1>,
        2 => &horizontal_row::<2>,
        3 => &horizontal_row::<3>,
        4 => &horizontal_row::<4>,
        5 => &horizontal_row::<5>,
        6 => &horizontal_row::<6>,
        7 => &horizontal_row::<7>,
        8 => &horizontal_row::<8>,
        _ => &any,
    };
    for (y, row) in rows.chunks_exact(row_len + 1).enumerate() {
        let o = y * out_w..(y + 1) * out_w;
        pass(row, starts_x, fixed_x, &mut pr[o.clone()], &mut pg[o.clone()], &mut pb[o]);
    }
}

/// One output row of the horizontal pass: each pixel's taps accumulate all three channels
/// (plus one ignored lane) as a single 4-lane vector, written out to the three planes.
/// `weights` holds exactly `n` taps per pixel (see [`fixed_taps`]).
#[inline(always)]
fn row_pass(n: usize, row: &[f32], starts: &[u32], weights: &[f32], r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
    for (x, (&start, w)) in starts.iter().zip(weights.chunks_exact(n)).enumerate() {
        let base = start as usize * 3;
        let px = &row[base..base + 3 * n + 1];
        let mut acc = [0.0f32; 4];
        for (k, &wk) in w.iter().enumerate() {
            let lanes: &[f32; 4] = px[3 * k..3 * k + 4].try_into().expect("4 lanes");
            for c in 0..4 {
                acc[c] += wk * lanes[c];
            }
        }
        // Triangle weights are convex, so values stay in [0, 1] up to rounding.
        r[x] = acc[0].clamp(0.0, 1.0);
        g[x] = acc[1].clamp(0.0, 1.0);
        b[x] = acc[2].clamp(0.0, 1.0);
    }
}

/// [`row_pass`] with the tap count known at compile time, so the tap loop unrolls.
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn horizontal_row<const N: usize>(
    row: &[f32],
    starts: &[u32],
    weights: &[f32],
    r: &mut [f32],
    g: &mut [f32],
    b: &mut [f32],
) {
    row_pass(N, row, starts, weights, r, g, b);
}

/// A horizontal pass over one row: `(row, starts, weights, r, g, b)`.
type RowPass = dyn Fn(&[f32], &[u32], &[f32], &mut [f32], &mut [f32], &mut [f32]);

/// Re-lays taps so every pixel has exactly `n` (the most any has), padding with zero weights
/// and moving a start left where the padding would run past the box: a constant tap count
/// lets the horizontal pass unroll. Returns `n`.
fn fixed_taps(taps: &[Taps], weights: &[f32], in_size: u32, starts: &mut Vec<u32>, fixed: &mut Vec<f32>) -> usize {
    let n = taps.iter().map(|t| t.len).max().unwrap_or(1) as usize;
    starts.clear();
    fixed.clear();
    for t in taps {
        let start = t.start.min(in_size - n as u32);
        let lead = (t.start - start) as usize;
        starts.push(start);
        fixed.extend(std::iter::repeat_n(0.0, lead));
        fixed.extend_from_slice(&weights[t.offset as usize..(t.offset + t.len) as usize]);
        fixed.extend(std::iter::repeat_n(0.0, n - lead - t.len as usize));
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upscaling_matches_imageproc_bilinear_warp() {
        // Enlarging has nothing to antialias: it is bilinear interpolation with pixel centres
        // aligned (torchvision's align_corners = False, edges replicated). imageproc's warp
        // computes that independently once each output pixel centre is mapped to its input
        // position, x_in = (x_out + 0.5) / scale − 0.5.
        let (w, h) = (13u32, 9u32);
        let px: Vec<u8> = (0..w * h * 3).map(|i| ((i * 37 + i / 5) % 251) as u8).collect();
        for (ow, oh) in [(31usize, 20usize), (26, 18), (13, 40)] {
            let mut ours = RgbF32::new(1, 1);
            let region = CropBox { top: 0, left: 0, height: h, width: w };
            resample(ImageRef::new(w, h, &px), region, ow, oh, &mut ResampleScratch::default(), &mut ours);
            let src = image::Rgb32FImage::from_fn(w, h, |x, y| {
                let i = ((y * w + x) * 3) as usize;
                image::Rgb([0, 1, 2].map(|c| f32::from(px[i + c]) / 255.0))
            });
            let (sx, sy) = (ow as f32 / w as f32, oh as f32 / h as f32);
            let mut theirs = image::Rgb32FImage::new(ow as u32, oh as u32);
            imageproc::geometric_transformations::warp_into_with(
                &src,
                move |x, y| ((x + 0.5) / sx - 0.5, (y + 0.5) / sy - 0.5),
                imageproc::geometric_transformations::Interpolation::Bilinear,
                imageproc::geometric_transformations::Border::Replicate,
                &mut theirs,
            );
            let mut worst = 0.0f32;
            for y in 0..oh {
                for x in 0..ow {
                    let (a, b) = (ours.pixel(x, y), theirs.get_pixel(x as u32, y as u32).0);
                    worst = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(worst, f32::max);
                }
            }
            assert!(worst < 1e-4, "{w}x{h} -> {ow}x{oh}: max difference {worst}");
        }
    }

    fn gradient(w: u32, h: u32) -> Vec<u8> {
        let mut v = Vec::new();
        for y in 0..h {
            for x in 0..w {
                v.extend_from_slice(&[(x * 7 % 256) as u8, (y * 5 % 256) as u8, ((x + y) * 3 % 256) as u8]);
            }
        }
        v
    }

    /// Naive f64 reference: for each output pixel, sum the triangle filter, centred on the
    /// output pixel's centre in source coordinates, over every source pixel the region touches
    /// (whole pixels `floor(left) .. ceil(left + width)`). Returns interleaved values.
    fn reference(src: &[u8], sw: u32, region: Region, ow: usize, oh: usize) -> Vec<f64> {
        let axis = |start: f64, extent: f64, out_size: usize, o: usize| -> Vec<(usize, f64)> {
            let scale = extent / out_size as f64;
            let fs = scale.max(1.0);
            let c = start + (o as f64 + 0.5) * scale;
            let v: Vec<(usize, f64)> = (start.floor() as usize..(start + extent).ceil() as usize)
                .map(|k| (k, (1.0 - ((k as f64 + 0.5 - c) / fs).abs()).max(0.0)))
                .filter(|&(_, w)| w > 0.0)
                .collect();
            let s: f64 = v.iter().map(|p| p.1).sum();
            v.iter().map(|&(k, w)| (k, w / s)).collect()
        };
        let mut out = vec![0.0; ow * oh * 3];
        for y in 0..oh {
            for x in 0..ow {
                for &(sy, wy) in &axis(region.top, region.height, oh, y) {
                    for &(sx, wx) in &axis(region.left, region.width, ow, x) {
                        for c in 0..3 {
                            out[(y * ow + x) * 3 + c] +=
                                wy * wx * f64::from(src[(sy * sw as usize + sx) * 3 + c]) / 255.0;
                        }
                    }
                }
            }
        }
        out
    }

    /// A crop box carried onto an exactly halved image (2×2 means) gives nearly the view the
    /// full image gives: the reduced-scale decode's premise, away from the rounding of the means.
    #[test]
    fn a_box_on_a_halved_image_gives_nearly_the_same_view() {
        let (sw, sh) = (96u32, 80u32);
        let src: Vec<u8> =
            (0..sh).flat_map(|y| (0..sw).flat_map(move |x| [(x * 2) as u8, (y * 3) as u8, (x + y) as u8])).collect();
        let half: Vec<u8> = (0..sh / 2)
            .flat_map(|y| (0..sw / 2).flat_map(move |x| (0..3).map(move |c| (x, y, c))))
            .map(|(x, y, c)| {
                let at = |dx: u32, dy: u32| u32::from(src[(((2 * y + dy) * sw + 2 * x + dx) * 3 + c) as usize]);
                ((at(0, 0) + at(1, 0) + at(0, 1) + at(1, 1) + 2) / 4) as u8
            })
            .collect();
        let crop = CropBox { top: 9, left: 13, height: 60, width: 70 };
        let (mut scratch, mut full, mut reduced) = (ResampleScratch::default(), RgbF32::default(), RgbF32::default());
        resample(ImageRef::new(sw, sh, &src), crop, 24, 24, &mut scratch, &mut full);
        resample_region(
            ImageRef::new(sw / 2, sh / 2, &half),
            crop.scaled(0.5, 0.5),
            24,
            24,
            &mut scratch,
            &mut reduced,
        );
        let worst = full.data.iter().zip(&reduced.data).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 2.0 / 255.0, "largest difference {worst}");
    }

    /// Whole-pixel crop boxes (enlarging and shrinking), and regions in fractional pixels (a
    /// crop box carried onto a reduced-scale decode: centres offset by the fraction, taps
    /// clamped to the pixels it touches), against the naive reference.
    #[test]
    fn matches_naive_reference_enlarging_and_shrinking() {
        let (sw, sh) = (61u32, 47u32);
        let src = gradient(sw, sh);
        let img = ImageRef::new(sw, sh, &src);
        let mut scratch = ResampleScratch::default();
        let mut out = RgbF32::default();
        let whole = [
            (CropBox { top: 3, left: 5, height: 10, width: 13 }, 32, 32),
            (CropBox { top: 0, left: 0, height: 47, width: 61 }, 9, 7),
            (CropBox { top: 2, left: 1, height: 40, width: 11 }, 24, 5),
            (CropBox { top: 46, left: 60, height: 1, width: 1 }, 3, 2),
            (CropBox { top: 0, left: 0, height: 47, width: 61 }, 5, 4),
            (CropBox { top: 5, left: 7, height: 30, width: 50 }, 23, 19),
            (CropBox::full(sw, sh), 61, 47),
        ];
        let fractional = [
            (Region { left: 2.25, top: 1.5, width: 40.5, height: 30.125 }, 16, 12),
            (Region { left: 0.125, top: 0.0, width: 60.875, height: 47.0 }, 61, 47),
            (Region { left: 10.75, top: 20.5, width: 3.5, height: 2.25 }, 9, 7),
            (CropBox { top: 3, left: 5, height: 10, width: 13 }.scaled(0.25, 0.5), 4, 4),
        ];
        let cases = whole
            .iter()
            .map(|&(b, w, h)| (Some(b), b.into(), w, h))
            .chain(fractional.iter().map(|&(r, w, h)| (None, r, w, h)));
        for (crop_box, region, ow, oh) in cases {
            match crop_box {
                Some(b) => resample(img, b, ow, oh, &mut scratch, &mut out),
                None => resample_region(img, region, ow, oh, &mut scratch, &mut out),
            }
            let want = reference(&src, sw, region, ow, oh);
            for (i, (&g, &w)) in out.to_interleaved().iter().zip(&want).enumerate() {
                assert!((f64::from(g) - w).abs() < 2e-5, "{region:?}->{ow}x{oh} at {i}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn identity_size_is_exact_copy() {
        let src = gradient(16, 9);
        let mut out = RgbF32::default();
        resample(ImageRef::new(16, 9, &src), CropBox::full(16, 9), 16, 9, &mut ResampleScratch::default(), &mut out);
        assert_eq!(out.to_u8(), src);
    }

    #[test]
    fn constant_image_stays_constant_at_any_scale() {
        let src = vec![200u8; 50 * 30 * 3];
        let mut out = RgbF32::default();
        for (ow, oh) in [(3, 3), (50, 30), (224, 224)] {
            resample(
                ImageRef::new(50, 30, &src),
                CropBox { top: 1, left: 2, height: 20, width: 40 },
                ow,
                oh,
                &mut ResampleScratch::default(),
                &mut out,
            );
            assert!(out.data.iter().all(|&v| (v - 200.0 / 255.0).abs() < 1e-6));
        }
    }

    #[test]
    fn shrinking_averages_fine_detail_instead_of_aliasing() {
        // A one-pixel checkerboard shrunk 8x must come out near mid-gray everywhere.
        let (w, h) = (64u32, 64u32);
        let src: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let v = if (i % w + i / w) % 2 == 0 { 255 } else { 0 };
                [v, v, v]
            })
            .collect();
        let mut out = RgbF32::default();
        resample(ImageRef::new(w, h, &src), CropBox::full(w, h), 8, 8, &mut ResampleScratch::default(), &mut out);
        assert!(out.data.iter().all(|&v| (v - 0.5).abs() < 0.05), "{:?}", &out.data[..6]);
    }
}
