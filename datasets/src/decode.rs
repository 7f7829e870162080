//! Decoding one image file into 8-bit RGB.
//!
//! The format is guessed from the content, not the extension (a PNG named `.jpg` decodes; a
//! text file named `.jpg` is rejected). Grayscale is replicated to RGB, alpha dropped, 16-bit and
//! float reduced to 8-bit, CMYK JPEGs converted, EXIF orientation applied. Images larger than
//! `max_pixels` are refused before any pixel is allocated (decompression bombs). With
//! `load_size`, an image whose shorter side is larger is shrunk (antialiased) so that its shorter
//! side is `load_size`, which keeps a folder of 12-megapixel photos from filling memory.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

/// How to decode.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeOptions {
    /// Shrink so that the shorter side is at most this many pixels (never enlarges).
    pub load_size: Option<u32>,
    /// Refuse images with more pixels than this.
    pub max_pixels: u64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { load_size: None, max_pixels: 178_956_970 } // Pillow's error threshold (2 × 89.5 MP)
    }
}

/// A decoded 8-bit RGB image (interleaved, row-major).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage8 {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// The size an image of `w` × `h` has after the `load_size` shrink.
pub fn target_size(w: u32, h: u32, load_size: Option<u32>) -> (u32, u32) {
    match load_size {
        Some(s) if w.min(h) > s => {
            let scale = f64::from(s) / f64::from(w.min(h));
            let nw = ((f64::from(w) * scale).round() as u32).max(1);
            let nh = ((f64::from(h) * scale).round() as u32).max(1);
            if w <= h { (s, nh) } else { (nw, s) }
        }
        _ => (w, h),
    }
}

/// Reads and decodes a file; the error is a short reason (the caller adds the path).
pub fn decode_file(path: &Path, opts: &DecodeOptions) -> Result<RgbImage8, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    decode_bytes(&bytes, opts)
}

/// Reads only the header: the image's size, or the reason it cannot be decoded.
pub fn probe_file(path: &Path, opts: &DecodeOptions) -> Result<(u32, u32), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len == 0 {
        return Err("empty file".into());
    }
    let reader = ImageReader::new(std::io::BufReader::new(file)).with_guessed_format().map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("not a recognised image format".into());
    }
    let (w, h) = reader.into_dimensions().map_err(|e| e.to_string())?;
    check_pixels(w, h, opts)?;
    Ok(target_size(w, h, opts.load_size))
}

fn check_pixels(w: u32, h: u32, opts: &DecodeOptions) -> Result<(), String> {
    if w == 0 || h == 0 {
        return Err(format!("image is {w}x{h} pixels"));
    }
    if u64::from(w) * u64::from(h) > opts.max_pixels {
        return Err(format!("image is {w}x{h} pixels, over the limit of {} (decompression bomb?)", opts.max_pixels));
    }
    Ok(())
}

/// Decodes an in-memory file.
pub fn decode_bytes(bytes: &[u8], opts: &DecodeOptions) -> Result<RgbImage8, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("not a recognised image format".into());
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(opts.max_pixels.saturating_mul(16)); // RGBA f32 at worst
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions();
    check_pixels(w, h, opts)?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    img.apply_orientation(orientation);
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let (tw, th) = target_size(w, h, opts.load_size);
    let rgb = if (tw, th) != (w, h) {
        image::imageops::resize(&rgb, tw, th, image::imageops::FilterType::Triangle)
    } else {
        rgb
    };
    Ok(RgbImage8 { width: tw, height: th, pixels: rgb.into_raw() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_size_shrinks_shorter_side_only_when_larger() {
        assert_eq!(target_size(4000, 3000, Some(256)), (341, 256));
        assert_eq!(target_size(3000, 4000, Some(256)), (256, 341));
        assert_eq!(target_size(200, 100, Some(256)), (200, 100));
        assert_eq!(target_size(200, 100, None), (200, 100));
    }
}
