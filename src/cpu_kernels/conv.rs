//! 2-D convolution on the CPU (f32, NCHW, one group): forward, input gradient and weight
//! gradient, each as `im2col` + one matrix product per chunk of images.
//!
//! A chunk holds enough images that the product's column count (`images × output pixels`) is
//! at least [`TARGET_COLUMNS`], so that small late layers (4×4 outputs) still feed the gemm wide
//! matrices; chunks run in parallel on the rayon pool, each with its own reused buffers.
//!
//! - forward: `Y[o, (b,p)] = W[o, q] · col[q, (b,p)]`;
//! - weight gradient: `dW[o, q] = Σ_chunks dY[o, (b,p)] · col[q, (b,p)]ᵀ` — a long inner
//!   dimension, where the generic path (a convolution with `dY` as the kernel) fed gemm products
//!   9 columns wide;
//! - input gradient: `dcol[q, (b,p)] = W[o, q]ᵀ · dY[o, (b,p)]`, then `col2im` (scatter-add).

use std::cell::RefCell;
use std::mem::MaybeUninit;

use multiversion::multiversion;
use rayon::prelude::*;

use super::filled;

/// Columns (images × output pixels) a chunk aims for.
pub const TARGET_COLUMNS: usize = 512;

/// The shapes of one convolution (square kernel stride and padding, no dilation, one group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeometry {
    pub fn h_out(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }

    pub fn w_out(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }

    /// Output pixels per image.
    pub fn hw_out(&self) -> usize {
        self.h_out() * self.w_out()
    }

    /// Rows of the im2col matrix (`c_in · kh · kw`).
    pub fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Images per chunk.
    pub fn chunk(&self) -> usize {
        TARGET_COLUMNS.div_ceil(self.hw_out()).clamp(1, self.n.max(1))
    }

    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }
}

thread_local! {
    static COL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static TMP: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The range of output positions `o` (along one axis of `out` positions) whose input position
/// `o·stride + k − pad` falls inside `0..size`.
#[inline]
fn valid(out: usize, size: usize, k: usize, stride: usize, pad: usize) -> (usize, usize) {
    // o·s + k − p >= 0  ⇔  o >= ceil((p − k) / s)
    let lo = if pad > k { (pad - k).div_ceil(stride) } else { 0 };
    // o·s + k − p <= size − 1  ⇔  o <= (size − 1 + p − k) / s
    let hi = if size + pad > k { ((size - 1 + pad - k) / stride + 1).min(out) } else { 0 };
    (lo.min(hi), hi)
}

/// Fills `col` (`[k, b · hw_out]`) from images `n0..n0 + b` of `x`: row by row for stride 1,
/// through [`im2col_strided`] otherwise.
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn im2col(x: &[f32], g: &ConvGeometry, n0: usize, b: usize, col: &mut [f32]) {
    if g.stride != 1 {
        return im2col_strided(x, g, n0, b, col);
    }
    let (ho, wo, hw) = (g.h_out(), g.w_out(), g.hw_out());
    let cols = b * hw;
    for c in 0..g.c_in {
        for i in 0..g.kh {
            let (oh_lo, oh_hi) = valid(ho, g.h, i, g.stride, g.pad);
            for j in 0..g.kw {
                let (ow_lo, ow_hi) = valid(wo, g.w, j, g.stride, g.pad);
                let q = (c * g.kh + i) * g.kw + j;
                let row = &mut col[q * cols..(q + 1) * cols];
                for bi in 0..b {
                    let img = &x[((n0 + bi) * g.c_in + c) * g.h * g.w..][..g.h * g.w];
                    let dst_img = &mut row[bi * hw..(bi + 1) * hw];
                    for oh in 0..ho {
                        let dst = &mut dst_img[oh * wo..(oh + 1) * wo];
                        if oh < oh_lo || oh >= oh_hi {
                            dst.fill(0.0);
                            continue;
                        }
                        let ih = oh * g.stride + i - g.pad;
                        let src = &img[ih * g.w..(ih + 1) * g.w];
                        dst[..ow_lo].fill(0.0);
                        dst[ow_hi..].fill(0.0);
                        if ow_hi > ow_lo {
                            let iw0 = ow_lo + j - g.pad;
                            dst[ow_lo..ow_hi].copy_from_slice(&src[iw0..iw0 + (ow_hi - ow_lo)]);
                        }
                    }
                }
            }
        }
    }
}

/// For the strided paths: the width of an input plane with its zero border, the offset in that
/// plane of tap (0, 0) for each output pixel (tap (i, j) adds `i·width + j`), and a zeroed plane.
fn padded_plane(g: &ConvGeometry) -> (usize, Vec<usize>, Vec<f32>) {
    let (wo, pw) = (g.w_out(), g.w + 2 * g.pad);
    let base = (0..g.hw_out()).map(|p| (p / wo) * g.stride * pw + (p % wo) * g.stride).collect();
    (pw, base, vec![0.0f32; (g.h + 2 * g.pad) * pw])
}

/// [`im2col`] for strided convolutions (every downsampling layer): each input plane is copied
/// once into a zero-bordered buffer, then each tap's row is read through one table of offsets,
/// one loop per plane rather than one per output row. Row by row, the rows of 16, 8 and 4 values
/// of the convnet's strided layers were mostly loop overhead (a bounds-checked scalar loop per
/// row): the three layers' forward took 88 ms for 512 images, 72–75 ms this way, their weight
/// gradients 94 and 79–82 ms (BENCHMARKS.md "Methods").
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn im2col_strided(x: &[f32], g: &ConvGeometry, n0: usize, b: usize, col: &mut [f32]) {
    let (hw, cols) = (g.hw_out(), b * g.hw_out());
    let (pw, base, mut padded) = padded_plane(g);
    for bi in 0..b {
        for c in 0..g.c_in {
            let img = &x[((n0 + bi) * g.c_in + c) * g.h * g.w..][..g.h * g.w];
            for (r, src) in img.chunks_exact(g.w).enumerate() {
                padded[(r + g.pad) * pw + g.pad..][..g.w].copy_from_slice(src);
            }
            for i in 0..g.kh {
                for j in 0..g.kw {
                    let q = (c * g.kh + i) * g.kw + j;
                    let tap = &padded[i * pw + j..];
                    // The offsets increase, and the last is inside the plane: (h_out − 1)·stride
                    // + kh − 1 < ph, likewise across.
                    assert!(base[hw - 1] < tap.len());
                    for (d, &o) in col[q * cols + bi * hw..][..hw].iter_mut().zip(&base) {
                        // SAFETY: o ≤ base[hw − 1] < tap.len() (asserted above).
                        *d = unsafe { *tap.get_unchecked(o) };
                    }
                }
            }
        }
    }
}

/// Adds `dcol` (`[k, b · hw_out]`) back onto images `0..b` of `dx` (which starts at image `n0`):
/// row by row for stride 1, through [`col2im_strided`] otherwise.
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn col2im(dcol: &[f32], g: &ConvGeometry, b: usize, dx: &mut [f32]) {
    if g.stride != 1 {
        return col2im_strided(dcol, g, b, dx);
    }
    let (ho, wo, hw) = (g.h_out(), g.w_out(), g.hw_out());
    let cols = b * hw;
    for c in 0..g.c_in {
        for i in 0..g.kh {
            let (oh_lo, oh_hi) = valid(ho, g.h, i, g.stride, g.pad);
            for j in 0..g.kw {
                let (ow_lo, ow_hi) = valid(wo, g.w, j, g.stride, g.pad);
                let q = (c * g.kh + i) * g.kw + j;
                let row = &dcol[q * cols..(q + 1) * cols];
                for bi in 0..b {
                    let img = &mut dx[(bi * g.c_in + c) * g.h * g.w..][..g.h * g.w];
                    let src_img = &row[bi * hw..(bi + 1) * hw];
                    for oh in oh_lo..oh_hi {
                        let ih = oh * g.stride + i - g.pad;
                        let dst = &mut img[ih * g.w..(ih + 1) * g.w];
                        let src = &src_img[oh * wo..(oh + 1) * wo];
                        if ow_hi > ow_lo {
                            let iw0 = ow_lo + j - g.pad;
                            for (d, s) in dst[iw0..iw0 + (ow_hi - ow_lo)].iter_mut().zip(&src[ow_lo..ow_hi]) {
                                *d += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// [`col2im`] for strided convolutions, the mirror of [`im2col_strided`]: each tap's row is
/// added into a zero-bordered plane through the table of offsets, and the plane's interior onto
/// `dx`.
#[multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn col2im_strided(dcol: &[f32], g: &ConvGeometry, b: usize, dx: &mut [f32]) {
    let (hw, cols) = (g.hw_out(), b * g.hw_out());
    let (pw, base, mut padded) = padded_plane(g);
    for bi in 0..b {
        for c in 0..g.c_in {
            padded.fill(0.0);
            for i in 0..g.kh {
                for j in 0..g.kw {
                    let q = (c * g.kh + i) * g.kw + j;
                    let tap = &mut padded[i * pw + j..];
                    assert!(base[hw - 1] < tap.len());
                    for (&o, &v) in base.iter().zip(&dcol[q * cols + bi * hw..][..hw]) {
                        // SAFETY: o ≤ base[hw − 1] < tap.len() (asserted above).
                        unsafe { *tap.get_unchecked_mut(o) += v };
                    }
                }
            }
            let img = &mut dx[(bi * g.c_in + c) * g.h * g.w..][..g.h * g.w];
            for (r, dst) in img.chunks_exact_mut(g.w).enumerate() {
                let src = &padded[(r + g.pad) * pw + g.pad..][..g.w];
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            }
        }
    }
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]` with explicit strides (row, column) for each operand.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (isize, isize),
    rhs: &[f32],
    rhs_strides: (isize, isize),
) {
    debug_assert!(dst.len() >= m * n);
    // SAFETY: every index the product touches lies inside the slices (checked by the callers'
    // shapes: dst is m×n row-major, lhs and rhs span their strided m×k and k×n extents).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides.1,
            lhs_strides.0,
            rhs.as_ptr(),
            rhs_strides.1,
            rhs_strides.0,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

fn scratch<R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    key.with_borrow_mut(|v| {
        if v.len() < len {
            v.resize(len, 0.0);
        }
        f(&mut v[..len])
    })
}

/// Copies images `0..b` of `y` (`[b, c_out, hw]`) into `t` laid out `[c_out, b · hw]`.
fn gather(y: &[f32], b: usize, c_out: usize, hw: usize, t: &mut [f32]) {
    for o in 0..c_out {
        for bi in 0..b {
            t[o * b * hw + bi * hw..][..hw].copy_from_slice(&y[(bi * c_out + o) * hw..][..hw]);
        }
    }
}

/// The inverse of [`gather`]; writes every element of `y`.
fn scatter(t: &[f32], b: usize, c_out: usize, hw: usize, y: &mut [MaybeUninit<f32>]) {
    for o in 0..c_out {
        for bi in 0..b {
            y[(bi * c_out + o) * hw..][..hw].write_copy_of_slice(&t[o * b * hw + bi * hw..][..hw]);
        }
    }
}

/// `y = conv(x, weight) (+ bias)`; `x` is `[n, c_in, h, w]`, `weight` `[c_out, c_in, kh, kw]`,
/// the result `[n, c_out, h_out, w_out]`.
pub fn forward(x: &[f32], weight: &[f32], bias: Option<&[f32]>, g: &ConvGeometry) -> Vec<f32> {
    let (hw, k, cb) = (g.hw_out(), g.k(), g.chunk());
    let mut y = filled(g.n * g.c_out * hw, |y| {
        y.par_chunks_mut(cb * g.c_out * hw).enumerate().for_each(|(ci, ys)| {
            let n0 = ci * cb;
            let b = ys.len() / (g.c_out * hw);
            scratch(&TMP, g.c_out * b * hw, |t| {
                if g.is_pointwise() && b == 1 {
                    matmul(
                        g.c_out,
                        hw,
                        k,
                        t,
                        false,
                        weight,
                        (k as isize, 1),
                        &x[n0 * g.c_in * hw..][..g.c_in * hw],
                        (hw as isize, 1),
                    );
                } else {
                    scratch(&COL, k * b * hw, |col| {
                        im2col(x, g, n0, b, col);
                        matmul(g.c_out, b * hw, k, t, false, weight, (k as isize, 1), col, ((b * hw) as isize, 1));
                    });
                }
                scatter(t, b, g.c_out, hw, ys);
            });
        });
    });
    if let Some(bias) = bias {
        y.par_chunks_mut(hw).enumerate().for_each(|(i, plane)| {
            let v = bias[i % g.c_out];
            plane.iter_mut().for_each(|p| *p += v);
        });
    }
    y
}

/// `dx` for `dy` (`[n, c_out, h_out, w_out]`) through the convolution with `weight`.
pub fn input_grad(weight: &[f32], dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (hw, k, cb) = (g.hw_out(), g.k(), g.chunk());
    let mut dx = vec![0.0f32; g.n * g.c_in * g.h * g.w];
    dx.par_chunks_mut(cb * g.c_in * g.h * g.w).enumerate().for_each(|(ci, dxs)| {
        let n0 = ci * cb;
        let b = dxs.len() / (g.c_in * g.h * g.w);
        scratch(&TMP, g.c_out * b * hw, |t| {
            gather(&dy[n0 * g.c_out * hw..][..b * g.c_out * hw], b, g.c_out, hw, t);
            scratch(&COL, k * b * hw, |dcol| {
                // dcol[q, j] = Σ_o W[o, q] · dY[o, j]: the weight read transposed.
                matmul(k, b * hw, g.c_out, dcol, false, weight, (1, k as isize), t, ((b * hw) as isize, 1));
                col2im(dcol, g, b, dxs);
            });
        });
    });
    dx
}

/// `dW` for `dy` through the convolution of `x`.
///
/// Per chunk, `dW[o, q] = Σ_j dY[o, j] · col[q, j]`. When the im2col matrix has more rows than
/// there are output channels and the images are large, the product is formed transposed
/// (`dWᵀ = col · dYᵀ`, transposed back once at the end): gemm packs it far better there
/// (`selfsup bench ops`, ResNet-18 b128: 64→64 at 32 px 160 → 94 ms, 128→128 at 16 px 115 → 83 ms,
/// the step's weight gradients 1,727 → 1,378 ms), while small images keep the direct form.
pub fn weight_grad(x: &[f32], dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (hw, k, cb) = (g.hw_out(), g.k(), g.chunk());
    let transposed = k > g.c_out && hw >= 256;
    let chunks = g.n.div_ceil(cb);
    // Partial gradients per chunk, added in chunk order: the same result whatever the thread
    // count (resumed runs must reproduce uninterrupted ones bit for bit).
    let partials: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|ci| {
            let n0 = ci * cb;
            let b = cb.min(g.n - n0);
            let cols = b * hw;
            let mut acc = vec![0.0f32; g.c_out * k];
            scratch(&TMP, g.c_out * cols, |t| {
                gather(&dy[n0 * g.c_out * hw..][..g.c_out * cols], b, g.c_out, hw, t);
                scratch(&COL, k * cols, |col| {
                    im2col(x, g, n0, b, col);
                    if transposed {
                        // dWᵀ[q, o] = Σ_j col[q, j] · dY[o, j]: dY read transposed.
                        matmul(k, g.c_out, cols, &mut acc, false, col, (cols as isize, 1), t, (1, cols as isize));
                    } else {
                        // dW[o, q] = Σ_j dY[o, j] · col[q, j]: col read transposed.
                        matmul(g.c_out, k, cols, &mut acc, false, t, (cols as isize, 1), col, (1, cols as isize));
                    }
                });
            });
            acc
        })
        .collect();
    let mut sum = vec![0.0f32; g.c_out * k];
    for p in partials {
        sum.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    if !transposed {
        return sum;
    }
    let mut dw = vec![0.0f32; g.c_out * k];
    for (q, row) in sum.chunks_exact(g.c_out).enumerate() {
        for (o, &v) in row.iter().enumerate() {
            dw[o * k + q] = v;
        }
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform test values in `[-0.5, 0.5)`.
    fn data(len: usize, seed: u64) -> Vec<f32> {
        super::super::test_values(len, seed, -0.5, 0.5)
    }

    /// Naive f64 convolution: `y[n, o, oh, ow] = Σ x[n, c, oh·s + i − p, ow·s + j − p] · w[o, c, i, j]`.
    fn naive(x: &[f32], w: &[f32], g: &ConvGeometry) -> Vec<f64> {
        let (ho, wo) = (g.h_out(), g.w_out());
        let mut y = vec![0.0; g.n * g.c_out * ho * wo];
        for n in 0..g.n {
            for o in 0..g.c_out {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let mut acc = 0.0;
                        for c in 0..g.c_in {
                            for i in 0..g.kh {
                                for j in 0..g.kw {
                                    let ih = (oh * g.stride + i) as isize - g.pad as isize;
                                    let iw = (ow * g.stride + j) as isize - g.pad as isize;
                                    if ih >= 0 && iw >= 0 && (ih as usize) < g.h && (iw as usize) < g.w {
                                        acc += f64::from(x[((n * g.c_in + c) * g.h + ih as usize) * g.w + iw as usize])
                                            * f64::from(w[((o * g.c_in + c) * g.kh + i) * g.kw + j]);
                                    }
                                }
                            }
                        }
                        y[((n * g.c_out + o) * ho + oh) * wo + ow] = acc;
                    }
                }
            }
        }
        y
    }

    fn geometries() -> Vec<ConvGeometry> {
        let g = |n, c_in, h, w, c_out, k, stride, pad| ConvGeometry { n, c_in, h, w, c_out, kh: k, kw: k, stride, pad };
        vec![
            g(3, 3, 9, 7, 5, 3, 1, 1),
            g(2, 5, 8, 8, 6, 3, 2, 1),
            g(1, 7, 5, 6, 9, 3, 2, 1),
            g(40, 3, 4, 4, 10, 3, 2, 1),
            g(2, 4, 6, 6, 3, 1, 1, 0),
            g(3, 4, 7, 7, 3, 1, 2, 0),
            g(2, 3, 11, 10, 4, 7, 2, 3),
            g(2, 2, 5, 5, 3, 3, 1, 0),
            // Large images, more im2col rows than output channels: the transposed weight gradient.
            g(3, 2, 16, 17, 3, 3, 1, 1),
            // Stride 3 (the generic strided loops), and taps that reach no input column.
            g(2, 3, 10, 9, 4, 3, 3, 1),
            g(2, 2, 3, 2, 3, 5, 3, 2),
        ]
    }

    fn close(a: &[f32], b: &[f64], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-3);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((f64::from(*x) - y).abs() <= 1e-5 * scale, "{what} at {i}: {x} vs {y}");
        }
    }

    #[test]
    fn forward_matches_naive() {
        for g in geometries() {
            let x = data(g.n * g.c_in * g.h * g.w, 1);
            let w = data(g.c_out * g.k(), 2);
            let bias = data(g.c_out, 3);
            let want = naive(&x, &w, &g);
            close(&forward(&x, &w, None, &g), &want, &format!("{g:?}"));
            let with_bias: Vec<f64> =
                want.iter().enumerate().map(|(i, v)| v + f64::from(bias[(i / g.hw_out()) % g.c_out])).collect();
            close(&forward(&x, &w, Some(&bias), &g), &with_bias, &format!("{g:?} bias"));
        }
    }

    /// The gradients are checked against the adjoint identities of the naive forward:
    /// ⟨conv(x, w), dy⟩ = ⟨x, dx⟩ = ⟨w, dw⟩ for every x, w (the convolution is bilinear), using
    /// unit perturbations for exactness on a few coordinates and the full inner products.
    #[test]
    fn gradients_are_the_adjoints_of_the_naive_forward() {
        for g in geometries() {
            let x = data(g.n * g.c_in * g.h * g.w, 4);
            let w = data(g.c_out * g.k(), 5);
            let dy = data(g.n * g.c_out * g.hw_out(), 6);
            let dot = |a: &[f64], b: &[f32]| a.iter().zip(b).map(|(p, &q)| p * f64::from(q)).sum::<f64>();
            let dx = input_grad(&w, &dy, &g);
            let dw = weight_grad(&x, &dy, &g);
            // Every coordinate of dx: d⟨conv(x, w), dy⟩/dx_i = ⟨conv(e_i, w), dy⟩.
            let mut e = vec![0.0f32; x.len()];
            let want_dx: Vec<f64> = (0..x.len())
                .map(|i| {
                    e[i] = 1.0;
                    let v = dot(&naive(&e, &w, &g), &dy);
                    e[i] = 0.0;
                    v
                })
                .collect();
            close(&dx, &want_dx, &format!("dx {g:?}"));
            let mut e = vec![0.0f32; w.len()];
            let want_dw: Vec<f64> = (0..w.len())
                .map(|i| {
                    e[i] = 1.0;
                    let v = dot(&naive(&x, &e, &g), &dy);
                    e[i] = 0.0;
                    v
                })
                .collect();
            close(&dw, &want_dw, &format!("dw {g:?}"));
        }
    }

    #[test]
    fn valid_ranges() {
        // 3 outputs, size 5, kernel tap 0, stride 2, pad 1: positions −1, 1, 3 → outputs 1..3.
        assert_eq!(valid(3, 5, 0, 2, 1), (1, 3));
        // Tap 2: positions 1, 3, 5 → the last is past the edge.
        assert_eq!(valid(3, 5, 2, 2, 1), (0, 2));
        assert_eq!(valid(4, 4, 1, 1, 1), (0, 4));
        assert_eq!(valid(4, 4, 2, 1, 1), (0, 3));
    }
}
