//! Reader for the IDX format of MNIST and Fashion-MNIST (`.gz` compressed or not).
//!
//! An images file has magic `0x00000803` (unsigned bytes, 3 dimensions: count, rows, columns),
//! a labels file `0x00000801`. Gray pixels are replicated to RGB. The labels file is found by
//! replacing `images-idx3` with `labels-idx1` in the images file's name.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::cache::{ChunkBuilder, ImageCache};
use crate::cifar::Loaded;
use crate::error::DatasetError;

/// The training images file of a folder (`train-images-idx3-ubyte[.gz]`), or `path` itself when
/// it names an IDX images file.
pub fn detect(path: &Path) -> Option<PathBuf> {
    if path.is_dir() {
        return ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz", "train-images.idx3-ubyte"]
            .iter()
            .map(|n| path.join(n))
            .find(|p| p.is_file());
    }
    let name = path.file_name()?.to_str()?;
    name.contains("images-idx3")
        .then(|| path.to_path_buf())
        .or_else(|| name.contains("images.idx3").then(|| path.to_path_buf()))
}

/// Deflate expands data at most about 1032:1, so a gzip file of `n` bytes cannot hold more than
/// this many times `n` bytes; a header declaring more is refused before anything is inflated.
const MAX_GZIP_RATIO: u64 = 1100;

/// The file's bytes, inflated if it ends in `.gz`.
///
/// Fuzzing fix: a `.gz` file used to be inflated whole, so a tiny gzip bomb could fill memory.
/// Now the IDX header is inflated first, then at most the payload it declares; a declared size
/// that the compressed file cannot possibly hold is refused before inflating any of it.
fn read_all(path: &Path, want_dims: u8) -> Result<Vec<u8>, DatasetError> {
    let raw = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    if !path.extension().is_some_and(|e| e == "gz") {
        return Ok(raw);
    }
    let gzip = |e: std::io::Error| DatasetError::format(path, format!("gzip: {e}"));
    let mut stream = flate2::read::GzDecoder::new(&raw[..]);
    let mut out = Vec::new();
    let header_len = 4 + 4 * u64::from(want_dims);
    stream.by_ref().take(header_len).read_to_end(&mut out).map_err(gzip)?;
    let (_, _, payload) = read_header(path, &out, want_dims)?;
    let payload = payload as u64;
    if payload > (raw.len() as u64).saturating_mul(MAX_GZIP_RATIO) {
        return Err(DatasetError::format(
            path,
            format!("IDX header declares {payload} bytes of data, more than a {}-byte gzip file can hold", raw.len()),
        ));
    }
    // One byte more than declared, so that `parse` still reports an over-long payload.
    stream.take(payload + 1).read_to_end(&mut out).map_err(gzip)?;
    Ok(out)
}

/// Checks an IDX header: returns the dimensions, the header's length and the payload's
/// (computed with checked arithmetic: fuzzing fix, the product of three 32-bit dimensions
/// overflowed, a panic in debug builds and a wrong size in release).
fn read_header(path: &Path, bytes: &[u8], want_dims: u8) -> Result<(Vec<usize>, usize, usize), DatasetError> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(DatasetError::format(path, "not an IDX file (bad magic number)"));
    }
    if bytes[2] != 0x08 {
        return Err(DatasetError::format(
            path,
            format!("IDX element type 0x{:02x} is not supported (only unsigned bytes, 0x08)", bytes[2]),
        ));
    }
    if bytes[3] != want_dims {
        return Err(DatasetError::format(path, format!("IDX file has {} dimensions, expected {want_dims}", bytes[3])));
    }
    let header = 4 + 4 * usize::from(want_dims);
    if bytes.len() < header {
        return Err(DatasetError::format(path, "truncated IDX header"));
    }
    let dims: Vec<usize> = (0..usize::from(want_dims))
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let payload = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| {
        DatasetError::format(path, format!("IDX header declares dimensions {dims:?}, too large to address"))
    })?;
    Ok((dims, header, payload))
}

/// Parses an IDX file: returns the dimensions and the payload's offset.
fn parse(path: &Path, bytes: &[u8], want_dims: u8) -> Result<(Vec<usize>, usize), DatasetError> {
    let (dims, header, payload) = read_header(path, bytes, want_dims)?;
    if bytes.len() - header != payload {
        return Err(DatasetError::format(
            path,
            format!("IDX payload is {} bytes, header says {payload}", bytes.len() - header),
        ));
    }
    Ok((dims, header))
}

/// The labels file that goes with an images file.
pub fn labels_path(images: &Path) -> PathBuf {
    let name = images.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    images.with_file_name(name.replace("images-idx3", "labels-idx1").replace("images.idx3", "labels.idx1"))
}

/// Reads an images file and its labels file.
pub fn read(images: &Path) -> Result<Loaded, DatasetError> {
    let bytes = read_all(images, 3)?;
    let (dims, header) = parse(images, &bytes, 3)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    // Fuzzing fix: a 0-pixel image size made `chunks_exact(0)` below panic.
    if rows == 0 || cols == 0 {
        return Err(DatasetError::format(images, format!("IDX images of {cols}x{rows} pixels")));
    }
    let lpath = labels_path(images);
    if !lpath.is_file() {
        return Err(DatasetError::format(images, format!("labels file {} not found beside it", lpath.display())));
    }
    let lbytes = read_all(&lpath, 1)?;
    let (ldims, lheader) = parse(&lpath, &lbytes, 1)?;
    if ldims[0] != n {
        return Err(DatasetError::format(&lpath, format!("{} labels for {n} images", ldims[0])));
    }
    let labels: Vec<u32> = lbytes[lheader..].iter().map(|&l| u32::from(l)).collect();
    let mut chunk = ChunkBuilder::default();
    // Fuzzing fix: with 0 images the payload check does not bound rows × cols, which sized this
    // buffer (gigabytes asked for by a 16-byte file); with at least one, rows × cols ≤ payload.
    if n > 0 {
        let mut rgb = vec![0u8; rows * cols * 3];
        for img in bytes[header..].chunks_exact(rows * cols) {
            for (px, &g) in rgb.chunks_exact_mut(3).zip(img) {
                px.fill(g);
            }
            chunk.push(cols as u32, rows as u32, &rgb);
        }
    }
    let n_classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
    Ok(Loaded {
        images: ImageCache::from_chunks([chunk]),
        labels,
        classes: (0..n_classes).map(|i| i.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn write_idx(dir: &Path, prefix: &str, n: usize, gz: bool) {
        let mut img = vec![0, 0, 8, 3];
        for d in [n as u32, 3, 2] {
            img.extend(d.to_be_bytes());
        }
        img.extend((0..n * 6).map(|k| (k * 11 % 256) as u8));
        let mut lab = vec![0, 0, 8, 1];
        lab.extend((n as u32).to_be_bytes());
        lab.extend((0..n).map(|k| (k % 4) as u8));
        for (name, data) in [(format!("{prefix}-images-idx3-ubyte"), img), (format!("{prefix}-labels-idx1-ubyte"), lab)]
        {
            if gz {
                let f = std::fs::File::create(dir.join(format!("{name}.gz"))).unwrap();
                let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
                e.write_all(&data).unwrap();
                e.finish().unwrap();
            } else {
                std::fs::write(dir.join(name), data).unwrap();
            }
        }
    }

    #[test]
    fn reads_plain_and_gzipped_files_replicating_gray() {
        for gz in [false, true] {
            let d = tempfile::tempdir().unwrap();
            write_idx(d.path(), "train", 5, gz);
            let path = detect(d.path()).unwrap();
            let l = read(&path).unwrap();
            assert_eq!(l.labels, vec![0, 1, 2, 3, 0]);
            assert_eq!(l.classes.len(), 4);
            let (w, h, px) = l.images.get(2);
            assert_eq!((w, h), (2, 3));
            // Image 2's first gray value is byte 12 of the payload: 12 * 11 = 132.
            assert_eq!(&px[..3], &[132, 132, 132]);
        }
    }

    #[test]
    fn malformed_files_are_errors_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        write_idx(d.path(), "t10k", 2, false);
        let p = d.path().join("t10k-images-idx3-ubyte");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.pop();
        std::fs::write(&p, &bytes).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("t10k-images-idx3-ubyte") && e.contains("payload"), "{e}");
        std::fs::write(&p, b"hello world").unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("magic"));
        std::fs::remove_file(d.path().join("t10k-labels-idx1-ubyte")).unwrap();
        write_idx(d.path(), "x", 1, false);
        std::fs::remove_file(d.path().join("x-labels-idx1-ubyte")).unwrap();
        let e = read(&d.path().join("x-images-idx3-ubyte")).unwrap_err().to_string();
        assert!(e.contains("labels file"), "{e}");
    }
}
