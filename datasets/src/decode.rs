//! Decoding one image file into 8-bit RGB.
//!
//! The format is guessed from the content, not the extension (a PNG named `.jpg` decodes; a
//! text file named `.jpg` is rejected). Grayscale is replicated to RGB, alpha dropped, 16-bit and
//! float reduced to 8-bit, CMYK JPEGs converted, EXIF orientation applied. Images larger than
//! `max_pixels` are refused before any pixel is allocated (decompression bombs). With
//! `load_size`, an image whose shorter side is larger is shrunk (antialiased) so that its shorter
//! side is `load_size`, which keeps a folder of 12-megapixel photos from filling memory.

use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use crate::jpeg;

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

/// A decoder's error as one line (some end theirs with a newline).
pub(crate) fn one_line(e: String) -> String {
    e.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads only the header: the image's size, or the reason it cannot be decoded (one line).
pub fn probe_file(path: &Path, opts: &DecodeOptions) -> Result<(u32, u32), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    probe_read(file, len, opts)
}

/// [`probe_file`] for any seekable source of `len` bytes (a file, or a member of a tar shard).
pub fn probe_read<R: Read + Seek>(source: R, len: u64, opts: &DecodeOptions) -> Result<(u32, u32), String> {
    probe(source, len, opts).map_err(one_line)
}

fn probe<R: Read + Seek>(source: R, len: u64, opts: &DecodeOptions) -> Result<(u32, u32), String> {
    if len == 0 {
        return Err("empty file".into());
    }
    let mut reader = ImageReader::new(BufReader::new(source)).with_guessed_format().map_err(|e| e.to_string())?;
    let Some(format) = reader.format() else {
        return Err("not a recognised image format".into());
    };
    // The TIFF header reader allocates what the directory declares (see `tiff_entries_fit`):
    // check the whole (rare) TIFF file first.
    if format == ImageFormat::Tiff {
        let mut source = reader.into_inner();
        let mut bytes = Vec::new();
        source.seek(SeekFrom::Start(0)).and_then(|_| source.read_to_end(&mut bytes)).map_err(|e| e.to_string())?;
        tiff_chunks_fit(&bytes)?;
        source.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        reader = ImageReader::with_format(source, format);
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

/// Decodes an in-memory file; the error is one line.
pub fn decode_bytes(bytes: &[u8], opts: &DecodeOptions) -> Result<RgbImage8, String> {
    decode_in_memory(bytes, opts).map_err(one_line)
}

/// Refuses a TIFF whose strips or tiles are declared to lie beyond the end of the file.
///
/// Fuzzing fix: the tiff decoder reads a strip into a buffer that grows towards the strip's
/// declared byte count before it finds the file too short; one flipped bit in a 786-byte file
/// made it allocate 254 MiB, past the `max_alloc` limit it was given. No strip of a valid file
/// extends past the file's end, so none is lost.
fn tiff_chunks_fit(bytes: &[u8]) -> Result<(), String> {
    use tiff::tags::Tag;
    tiff_entries_fit(bytes)?;
    let mut d = tiff::decoder::Decoder::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    for (offsets, counts) in [(Tag::StripOffsets, Tag::StripByteCounts), (Tag::TileOffsets, Tag::TileByteCounts)] {
        let offsets = d.find_tag_unsigned_vec::<u64>(offsets).map_err(|e| e.to_string())?.unwrap_or_default();
        let counts = d.find_tag_unsigned_vec::<u64>(counts).map_err(|e| e.to_string())?.unwrap_or_default();
        for (o, c) in offsets.iter().zip(&counts) {
            if o.checked_add(*c).is_none_or(|end| end > bytes.len() as u64) {
                return Err(format!(
                    "TIFF data at bytes {o}..+{c} lies beyond the end of the {}-byte file",
                    bytes.len()
                ));
            }
        }
    }
    Ok(())
}

/// Refuses a TIFF with a directory entry whose declared values lie beyond the end of the file.
///
/// Fuzzing fix: tiff 0.11 reserves room for all of an entry's declared values (32 bytes each)
/// before reading them, so a count of 8 million in a 786-byte file allocated 254 MiB before the
/// read failed. This walks the directories (classic and BigTIFF) the way the TIFF 6.0 and
/// BigTIFF specifications lay them out, and checks each entry's extent against the file size.
fn tiff_entries_fit(bytes: &[u8]) -> Result<(), String> {
    let short = || "TIFF directory beyond the end of the file".to_string();
    let le = match bytes.get(..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return Ok(()), // not TIFF: the decoder says so
    };
    let uint = |at: usize, n: usize| -> Result<u64, String> {
        let b = bytes.get(at..at.checked_add(n).ok_or_else(short)?).ok_or_else(short)?;
        Ok(if le {
            b.iter().rev().fold(0, |v, &x| v << 8 | u64::from(x))
        } else {
            b.iter().fold(0, |v, &x| v << 8 | u64::from(x))
        })
    };
    // Classic: 2-byte entry count, 12-byte entries (4-byte count, 4 inline bytes), 4-byte
    // offsets; BigTIFF (version 43): 8-byte count, 20-byte entries, 8-byte offsets.
    let big = uint(2, 2)? == 43;
    let (count_len, entry_len, word) = if big { (8, 20, 8) } else { (2, 12, 4) };
    let mut next = uint(if big { 8 } else { 4 }, word)?;
    let mut seen = std::collections::HashSet::new();
    while next != 0 && seen.insert(next) && seen.len() <= 64 {
        let at = usize::try_from(next).map_err(|_| short())?;
        let entries = uint(at, count_len)?;
        for i in 0..entries {
            let e = usize::try_from(i)
                .ok()
                .and_then(|i| (at + count_len).checked_add(i.checked_mul(entry_len)?))
                .ok_or_else(short)?;
            let size = match uint(e + 2, 2)? {
                1 | 2 | 6 | 7 => 1,
                3 | 8 => 2,
                4 | 9 | 11 | 13 => 4,
                5 | 10 | 12 | 16 | 17 | 18 => 8,
                _ => continue, // unknown types are skipped by readers
            };
            let count = uint(e + 4, word)?;
            let extent = count.checked_mul(size).ok_or_else(short)?;
            if extent > word as u64 {
                let offset = uint(e + 4 + word, word)?;
                if offset.checked_add(extent).is_none_or(|end| end > bytes.len() as u64) {
                    return Err(format!(
                        "TIFF tag {} declares {count} values beyond the end of the {}-byte file",
                        uint(e, 2)?,
                        bytes.len()
                    ));
                }
            }
        }
        next = uint(at + count_len + usize::try_from(entries).map_err(|_| short())? * entry_len, word)?;
    }
    Ok(())
}

/// The reductions a reduced-scale decode may use, largest first (libjpeg-turbo's DCT scaling).
const REDUCTIONS: [u32; 3] = [8, 4, 2];

/// [`decode_bytes`] at the smallest scale the caller's views allow. `plan` gets the image's
/// size as [`decode_bytes`] would return it (the reference size, after orientation and the
/// `load_size` shrink) and returns how many times smaller than that the image may be; it may
/// be called more than once and must answer the same each time. A JPEG is then decoded at 1/2,
/// 1/4 or 1/8 scale in the DCT domain where that is allowed. Returns the image and the factors
/// `[fx, fy]` that carry reference coordinates onto its pixels (`[1, 1]`: the image is exactly
/// what [`decode_bytes`] returns).
pub fn decode_bytes_planned(
    bytes: &[u8],
    opts: &DecodeOptions,
    plan: &mut dyn FnMut(u32, u32) -> f64,
) -> Result<(RgbImage8, [f64; 2]), String> {
    if let Some(header) = jpeg::header(bytes) {
        let (w, h) = header.oriented();
        check_pixels(w, h, opts)?;
        let (tw, th) = target_size(w, h, opts.load_size);
        // The reduction allowed from the stored size: the plan's, times the load_size shrink.
        let allowed = plan(tw, th) * f64::from(w) / f64::from(tw);
        if let Some(r) = REDUCTIONS.into_iter().find(|&r| f64::from(r) <= allowed)
            && let Some(img) = jpeg::decode(bytes, &header, r)
        {
            // Reference → stored pixels (w / tw), stored → decoded (1 / r): libjpeg-turbo's
            // reduced pixel k covers stored pixels r·k .. r·(k + 1).
            let fx = f64::from(w) / (f64::from(tw) * f64::from(r));
            let fy = f64::from(h) / (f64::from(th) * f64::from(r));
            return Ok((img, [fx, fy]));
        }
        // The full-scale decode of the headers just read: the reference image itself.
        if let Some(img) = full_jpeg(bytes, &header, opts) {
            return Ok((img, [1.0, 1.0]));
        }
    }
    let img = decode_bytes(bytes, opts)?;
    plan(img.width, img.height);
    Ok((img, [1.0, 1.0]))
}

fn decode_in_memory(bytes: &[u8], opts: &DecodeOptions) -> Result<RgbImage8, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    if let Some(header) = jpeg::header(bytes) {
        let (w, h) = header.oriented();
        check_pixels(w, h, opts)?;
        if let Some(img) = full_jpeg(bytes, &header, opts) {
            return Ok(img);
        }
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let format = reader.format();
    if format.is_none() {
        return Err("not a recognised image format".into());
    }
    if format == Some(ImageFormat::Tiff) {
        tiff_chunks_fit(bytes)?;
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(opts.max_pixels.saturating_mul(16)); // RGBA f32 at worst
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions();
    check_pixels(w, h, opts)?;
    let orientation = match format {
        Some(ImageFormat::WebP) => webp_exif(bytes).and_then(Orientation::from_exif_chunk),
        _ => decoder.orientation().ok(),
    }
    .unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    img.apply_orientation(orientation);
    let rgb = img.to_rgb8();
    let (width, height) = rgb.dimensions();
    Ok(shrink_to_load_size(RgbImage8 { width, height, pixels: rgb.into_raw() }, opts.load_size))
}

/// A JPEG whose headers libjpeg-turbo read (and whose size was checked), decoded at full scale
/// and shrunk to `load_size`; `None` hands it to the `image` crate.
fn full_jpeg(bytes: &[u8], header: &jpeg::Header, opts: &DecodeOptions) -> Option<RgbImage8> {
    jpeg::decode(bytes, header, 1).map(|img| shrink_to_load_size(img, opts.load_size))
}

/// The `load_size` shrink (antialiased), when the image is larger.
fn shrink_to_load_size(img: RgbImage8, load_size: Option<u32>) -> RgbImage8 {
    let (tw, th) = target_size(img.width, img.height, load_size);
    if (tw, th) == (img.width, img.height) {
        return img;
    }
    let rgb = image::RgbImage::from_raw(img.width, img.height, img.pixels).expect("RGB buffer of its size");
    let rgb = image::imageops::resize(&rgb, tw, th, image::imageops::FilterType::Triangle);
    RgbImage8 { width: tw, height: th, pixels: rgb.into_raw() }
}

/// The EXIF chunk of an extended (VP8X) WebP file, sliced from the file.
///
/// Fuzzing fix: the image crate's WebP decoder reads this chunk, when asked for the
/// orientation, into a buffer of the size the chunk's header declares: up to 4 GiB for a file
/// of a few bytes, outside the `max_alloc` limit. A slice of the file cannot exceed the file.
fn webp_exif(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.get(12..16)? != b"VP8X" {
        return None;
    }
    let mut pos = 12; // after "RIFF", the RIFF size and "WEBP": one chunk after another
    while let Some(header) = bytes.get(pos..pos + 8) {
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let body = bytes.get(pos + 8..)?.get(..size)?;
        if &header[..4] == b"EXIF" {
            return Some(body);
        }
        pos += 8 + size + size % 2;
    }
    None
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
