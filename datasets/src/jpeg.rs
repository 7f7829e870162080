//! JPEG decoding through libjpeg-turbo (the `turbojpeg` crate, which builds libjpeg-turbo from
//! source with its SIMD code): at full scale, or at 1/2, 1/4 or 1/8 of it in the DCT domain
//! (libjpeg-turbo's scaled inverse DCT), which skips most of the work when the views need fewer
//! pixels than the file holds.
//!
//! Measured here, one thread, photographs at quality 90 (BENCHMARKS.md "Data at scale"):
//! 500×375 decodes in 0.63 ms against 0.75 ms for zune-jpeg (the `image` crate's decoder, used
//! before); 4032×3024 in 55 ms at full scale (zune-jpeg 57 ms) and 26, 20 and 16 ms at 1/2, 1/4
//! and 1/8 (zune-jpeg has no scaled decode; `jpeg-decoder`'s took 38, 32 and 30 ms).
//!
//! Only 8-bit lossy JPEGs in YCbCr, RGB or grayscale come this way. CMYK and YCCK, lossless
//! and 12-bit files, and any file libjpeg-turbo reports an error or even a warning for (a
//! truncated scan, say) return `None`, and the caller decodes them through the `image` crate as
//! before, so what is accepted, and how, does not change.

use std::cell::RefCell;

use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};
use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor};

use crate::decode::RgbImage8;

/// Progressive scans allowed before a file is handed to the other decoder (libjpeg-turbo's
/// guard against files of thousands of tiny scans).
const SCAN_LIMIT: u32 = 500;

thread_local! {
    /// One decompressor per thread, reused from image to image.
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

/// What the file's headers say.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    /// Size as stored in the file, before EXIF orientation.
    pub stored: (u32, u32),
    pub orientation: Orientation,
}

impl Header {
    /// Size after EXIF orientation (what the user sees).
    pub fn oriented(&self) -> (u32, u32) {
        let (w, h) = self.stored;
        if swaps_sides(self.orientation) { (h, w) } else { (w, h) }
    }
}

fn swaps_sides(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    )
}

/// The headers of a JPEG this module decodes; `None` for anything else (not a JPEG, CMYK,
/// lossless, unreadable headers).
pub(crate) fn header(bytes: &[u8]) -> Option<Header> {
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return None;
    }
    let h = with_decompressor(|d| d.read_header(bytes).ok())?;
    if h.is_lossless || !matches!(h.colorspace, Colorspace::YCbCr | Colorspace::RGB | Colorspace::Gray) {
        return None;
    }
    let stored = (u32::try_from(h.width).ok()?, u32::try_from(h.height).ok()?);
    Some(Header { stored, orientation: orientation(bytes) })
}

/// The EXIF orientation, read the way the `image` crate reads it (zune-jpeg's header parser).
fn orientation(bytes: &[u8]) -> Orientation {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let options = DecoderOptions::default().set_strict_mode(false).set_max_width(usize::MAX).set_max_height(usize::MAX);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    if d.decode_headers().is_err() {
        return Orientation::NoTransforms;
    }
    d.exif().and_then(|exif| Orientation::from_exif_chunk(exif)).unwrap_or(Orientation::NoTransforms)
}

/// Decodes at `1 / reduction` of the stored size (`reduction` 1, 2, 4 or 8: each side becomes
/// `ceil(side / reduction)`), EXIF orientation applied; `None` where libjpeg-turbo reports
/// anything (see the module documentation).
pub(crate) fn decode(bytes: &[u8], header: &Header, reduction: u32) -> Option<RgbImage8> {
    let factor = ScalingFactor::new(1, reduction as usize);
    let (w, h) = (factor.scale(header.stored.0 as usize), factor.scale(header.stored.1 as usize));
    let mut pixels = vec![0u8; w * h * 3];
    let image = Image { pixels: pixels.as_mut_slice(), width: w, pitch: w * 3, height: h, format: PixelFormat::RGB };
    with_decompressor(|d| {
        d.set_scaling_factor(factor).ok()?;
        d.set_scan_limit(SCAN_LIMIT).ok()?;
        d.decompress(bytes, image).ok()
    })?;
    let (w, h) = (w as u32, h as u32);
    if header.orientation == Orientation::NoTransforms {
        return Some(RgbImage8 { width: w, height: h, pixels });
    }
    let mut img = DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, pixels)?);
    img.apply_orientation(header.orientation);
    let rgb = img.into_rgb8();
    let (width, height) = rgb.dimensions();
    Some(RgbImage8 { width, height, pixels: rgb.into_raw() })
}

fn with_decompressor<T>(f: impl FnOnce(&mut Decompressor) -> Option<T>) -> Option<T> {
    DECOMPRESSOR.with_borrow_mut(|slot| {
        if slot.is_none() {
            *slot = Some(Decompressor::new().ok()?);
        }
        f(slot.as_mut()?)
    })
}
