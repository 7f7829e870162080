//! Reduced-scale decoding (libjpeg-turbo's DCT scaling) against the full decode: the sizes and
//! factors it reports, its pixels against the full decode shrunk by exact `r × r` means, EXIF
//! orientation, `load_size`, and the files that must keep the full decode.

use std::io::Cursor;

use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};
use selfsup_datasets::decode::{decode_bytes, decode_bytes_planned};
use selfsup_datasets::{DecodeOptions, LoadOptions, RgbImage8, open};

/// "Exif\0\0", a big-endian TIFF header and one IFD entry: orientation 6 (rotate 90°).
const EXIF_ROTATE_90: &[u8] = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0";

/// A smooth, photo-like picture (gradients and slow waves): what the DCT's low frequencies,
/// all a reduced decode keeps, describe well.
fn picture(w: u32, h: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (f64::from(x) / f64::from(w), f64::from(y) / f64::from(h));
            let wave = ((fx * 9.0).sin() * (fy * 7.0).cos() + 1.0) * 60.0;
            px.extend([(fx * 200.0 + 20.0) as u8, (wave + 40.0) as u8, ((1.0 - fy) * 180.0 + fx * 40.0) as u8]);
        }
    }
    px
}

fn jpeg(w: u32, h: u32, exif: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 95);
    if let Some(exif) = exif {
        encoder.add_app_segment(1, exif.to_vec()).unwrap();
    }
    encoder.encode(&picture(w, h), w as u16, h as u16, jpeg_encoder::ColorType::Rgb).unwrap();
    out
}

/// `img` shrunk by exact `r × r` means (sides rounded up, partial blocks averaged over what
/// they hold), in f64.
fn means(img: &RgbImage8, r: u32) -> Vec<f64> {
    let (w, h) = (img.width.div_ceil(r), img.height.div_ceil(r));
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let (mut sum, mut n) = (0.0, 0.0);
                for sy in y * r..((y + 1) * r).min(img.height) {
                    for sx in x * r..((x + 1) * r).min(img.width) {
                        sum += f64::from(img.pixels[((sy * img.width + sx) * 3 + c) as usize]);
                        n += 1.0;
                    }
                }
                out.push(sum / n);
            }
        }
    }
    out
}

/// Mean and largest absolute difference, in 8-bit levels.
fn difference(reduced: &RgbImage8, want: &[f64]) -> (f64, f64) {
    assert_eq!(reduced.pixels.len(), want.len());
    let d: Vec<f64> = reduced.pixels.iter().zip(want).map(|(&a, &b)| (f64::from(a) - b).abs()).collect();
    let (mean, worst) = (d.iter().sum::<f64>() / d.len() as f64, d.iter().cloned().fold(0.0, f64::max));
    (mean, worst)
}

fn planned(bytes: &[u8], opts: &DecodeOptions, allow: f64) -> ((u32, u32), RgbImage8, [f64; 2]) {
    let mut seen = None;
    let (img, factors) = decode_bytes_planned(bytes, opts, &mut |w, h| {
        seen = Some((w, h));
        allow
    })
    .unwrap();
    (seen.expect("the plan was asked"), img, factors)
}

/// Tolerances, in 8-bit levels, of a reduced decode against the full decode's exact means: the
/// scaled inverse DCT is not a box filter (it keeps the block's low frequencies), and the
/// chroma planes are upsampled differently. Measured on these pictures: mean 0.24 to 0.45,
/// largest 2.0 levels.
const MEAN_LEVELS: f64 = 1.0;
const WORST_LEVELS: f64 = 4.0;

#[test]
fn reduced_decodes_match_the_full_decode_shrunk_by_means() {
    let bytes = jpeg(803, 601, None);
    let opts = DecodeOptions::default();
    let full = decode_bytes(&bytes, &opts).unwrap();
    for (allow, r) in [(2.0, 2u32), (3.9, 2), (4.0, 4), (7.5, 4), (8.0, 8), (100.0, 8)] {
        let (seen, img, factors) = planned(&bytes, &opts, allow);
        assert_eq!(seen, (803, 601), "the plan sees the full size");
        assert_eq!((img.width, img.height), (803u32.div_ceil(r), 601u32.div_ceil(r)), "allow {allow}");
        assert_eq!(factors, [1.0 / f64::from(r); 2]);
        let (mean, worst) = difference(&img, &means(&full, r));
        assert!(mean <= MEAN_LEVELS && worst <= WORST_LEVELS, "1/{r}: mean {mean:.2}, largest {worst:.1} levels");
    }
    // Below 2 nothing is reduced: the very image decode_bytes gives.
    let (_, img, factors) = planned(&bytes, &opts, 1.99);
    assert_eq!((img, factors), (full, [1.0, 1.0]));
}

#[test]
fn exif_orientation_is_applied_to_the_reduced_decode() {
    let bytes = jpeg(640, 480, Some(EXIF_ROTATE_90));
    let opts = DecodeOptions::default();
    let full = decode_bytes(&bytes, &opts).unwrap();
    assert_eq!((full.width, full.height), (480, 640));
    let (seen, img, factors) = planned(&bytes, &opts, 4.0);
    assert_eq!(seen, (480, 640), "the plan sees the oriented size");
    assert_eq!((img.width, img.height, factors), (120, 160, [0.25, 0.25]));
    let (mean, worst) = difference(&img, &means(&full, 4));
    assert!(mean <= MEAN_LEVELS && worst <= WORST_LEVELS, "mean {mean:.2}, largest {worst:.1} levels");
}

#[test]
fn load_size_counts_towards_the_reduction() {
    // 800×600 with load_size 300: the reference is 400×300; allowing 2 from it allows 4 from
    // the stored size, and the factors carry reference coordinates onto the 200×150 decode.
    let bytes = jpeg(800, 600, None);
    let opts = DecodeOptions { load_size: Some(300), ..DecodeOptions::default() };
    let reference = decode_bytes(&bytes, &opts).unwrap();
    assert_eq!((reference.width, reference.height), (400, 300));
    let (seen, img, factors) = planned(&bytes, &opts, 2.0);
    assert_eq!(seen, (400, 300));
    assert_eq!((img.width, img.height, factors), (200, 150, [0.5, 0.5]));
    let (mean, _) = difference(&img, &means(&reference, 2));
    assert!(mean <= MEAN_LEVELS, "mean {mean:.2} levels");
    // Not enough to reduce the stored image: the load_size image itself.
    let (_, img, factors) = planned(&bytes, &opts, 0.9);
    assert_eq!((img, factors), (reference, [1.0, 1.0]));
}

#[test]
fn files_libjpeg_turbo_does_not_take_keep_the_full_decode() {
    let opts = DecodeOptions::default();
    let mut cmyk = Vec::new();
    jpeg_encoder::Encoder::new(&mut cmyk, 100)
        .encode(&[255u8, 0, 0, 0].repeat(64 * 64), 64, 64, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    let mut png = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(ImageBuffer::from_fn(64, 48, |x, y| Rgb([x as u8, y as u8, 7])))
        .write_to(&mut png, ImageFormat::Png)
        .unwrap();
    for (name, bytes) in [("CMYK JPEG", cmyk), ("PNG", png.into_inner())] {
        let (_, img, factors) = planned(&bytes, &opts, 8.0);
        assert_eq!(factors, [1.0, 1.0], "{name}");
        assert_eq!(img, decode_bytes(&bytes, &opts).unwrap(), "{name}");
    }
    // A truncated JPEG (libjpeg-turbo warns: premature end of data) is not taken from
    // libjpeg-turbo: it gets exactly the full decode's answer.
    let bytes = jpeg(256, 256, None);
    let half = &bytes[..bytes.len() / 2];
    let planned = decode_bytes_planned(half, &opts, &mut |_, _| 8.0);
    assert_eq!(planned, decode_bytes(half, &opts).map(|img| (img, [1.0, 1.0])));
}

/// A dataset lends reduced images only when it streams: cached images are already decoded.
#[test]
fn only_streamed_images_are_reduced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.jpg"), jpeg(512, 384, None)).unwrap();
    let quiet = LoadOptions { verbose: false, ..LoadOptions::default() };
    let cached = open(dir.path(), &quiet).unwrap();
    let streamed = open(dir.path(), &LoadOptions { cache_limit: 0, ..quiet }).unwrap();
    assert!(streamed.is_streaming() && !cached.is_streaming());
    let lend = |ds: &selfsup_datasets::Dataset| ds.with_image_planned(0, &mut |_, _| 4.0, |w, h, _, f| (w, h, f));
    assert_eq!(lend(&cached), (512, 384, [1.0, 1.0]));
    assert_eq!(lend(&streamed), (128, 96, [0.25, 0.25]));
    // Asked for no reduction, streaming lends exactly the cached pixels.
    let full = streamed.with_image_planned(0, &mut |_, _| 1.0, |_, _, px, _| px.to_vec());
    assert_eq!(full, cached.image(0).pixels);
}
