//! Reader for the CIFAR-10 and CIFAR-100 binary formats.
//!
//! CIFAR-10 records are 1 label byte + 3,072 pixel bytes (the 32×32 red plane, then green, then
//! blue); CIFAR-100 records have 2 label bytes (coarse, fine) and this reader uses the fine label.
//! Class names come from `batches.meta.txt` / `fine_label_names.txt` beside the files when
//! present.

use std::path::{Path, PathBuf};

use crate::cache::{ChunkBuilder, ImageCache};
use crate::error::DatasetError;

/// The two CIFAR variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Cifar10,
    Cifar100,
}

impl Variant {
    fn label_bytes(self) -> usize {
        match self {
            Self::Cifar10 => 1,
            Self::Cifar100 => 2,
        }
    }

    fn classes(self) -> usize {
        match self {
            Self::Cifar10 => 10,
            Self::Cifar100 => 100,
        }
    }

    fn names_file(self) -> &'static str {
        match self {
            Self::Cifar10 => "batches.meta.txt",
            Self::Cifar100 => "fine_label_names.txt",
        }
    }
}

const PIXELS: usize = 32 * 32 * 3;

/// Images, labels and class names read from binary files.
#[derive(Debug)]
pub struct Loaded {
    pub images: ImageCache,
    pub labels: Vec<u32>,
    pub classes: Vec<String>,
}

/// Guesses the variant and the files of the training split for a folder, or of a single file.
pub fn detect(path: &Path) -> Option<(Variant, Vec<PathBuf>)> {
    if path.is_dir() {
        let batches: Vec<PathBuf> =
            (1..=5).map(|i| path.join(format!("data_batch_{i}.bin"))).filter(|p| p.is_file()).collect();
        if !batches.is_empty() {
            return Some((Variant::Cifar10, batches));
        }
        let train = path.join("train.bin");
        if train.is_file() {
            return Some((Variant::Cifar100, vec![train]));
        }
        return None;
    }
    let name = path.file_name()?.to_str()?;
    if name.starts_with("data_batch_") && name.ends_with(".bin") || name == "test_batch.bin" {
        Some((Variant::Cifar10, vec![path.to_path_buf()]))
    } else if name == "train.bin" || name == "test.bin" {
        Some((Variant::Cifar100, vec![path.to_path_buf()]))
    } else {
        None
    }
}

/// Reads the records of `files` (in order).
pub fn read(variant: Variant, files: &[PathBuf]) -> Result<Loaded, DatasetError> {
    let record = variant.label_bytes() + PIXELS;
    let mut chunks = Vec::new();
    let mut labels = Vec::new();
    for file in files {
        let bytes = std::fs::read(file).map_err(|e| DatasetError::io(file, e))?;
        if bytes.is_empty() || bytes.len() % record != 0 {
            return Err(DatasetError::format(
                file,
                format!("{} bytes is not a whole number of {record}-byte CIFAR records", bytes.len()),
            ));
        }
        let mut chunk = ChunkBuilder::default();
        let mut rgb = vec![0u8; PIXELS];
        for rec in bytes.chunks_exact(record) {
            let label = rec[variant.label_bytes() - 1];
            if usize::from(label) >= variant.classes() {
                return Err(DatasetError::format(
                    file,
                    format!("label {label} out of range for {} classes", variant.classes()),
                ));
            }
            let planes = &rec[variant.label_bytes()..];
            for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
                px[0] = planes[i];
                px[1] = planes[1024 + i];
                px[2] = planes[2048 + i];
            }
            chunk.push(32, 32, &rgb);
            labels.push(u32::from(label));
        }
        chunks.push(chunk);
    }
    let dir = files.first().and_then(|f| f.parent()).unwrap_or(Path::new("."));
    let classes = read_names(&dir.join(variant.names_file()), variant.classes());
    Ok(Loaded { images: ImageCache::from_chunks(chunks), labels, classes })
}

/// Class names from a names file (one per line), or "0", "1", … if absent or malformed.
fn read_names(path: &Path, n: usize) -> Vec<String> {
    let names: Vec<String> = std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    if names.len() == n { names } else { (0..n).map(|i| i.to_string()).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label_bytes: &[u8], seed: u8) -> Vec<u8> {
        let mut r = label_bytes.to_vec();
        r.extend((0..PIXELS).map(|k| (k as u8).wrapping_mul(seed)));
        r
    }

    #[test]
    fn reads_planes_into_interleaved_rgb_with_labels_and_names() {
        let d = tempfile::tempdir().unwrap();
        let mut bytes = record(&[3], 1);
        bytes.extend(record(&[9], 7));
        std::fs::write(d.path().join("data_batch_1.bin"), &bytes).unwrap();
        let names: String = (0..10).map(|i| format!("class{i}\n")).collect();
        std::fs::write(d.path().join("batches.meta.txt"), names).unwrap();
        let (variant, files) = detect(d.path()).unwrap();
        assert_eq!(variant, Variant::Cifar10);
        let l = read(variant, &files).unwrap();
        assert_eq!(l.labels, vec![3, 9]);
        assert_eq!(l.classes[9], "class9");
        let (w, h, px) = l.images.get(1);
        assert_eq!((w, h), (32, 32));
        // Pixel 5: R from plane offset 5, G from 1024 + 5, B from 2048 + 5 (record byte k = k*7).
        let rec = record(&[9], 7);
        assert_eq!(&px[15..18], &[rec[1 + 5], rec[1 + 1024 + 5], rec[1 + 2048 + 5]]);
    }

    #[test]
    fn cifar100_uses_the_fine_label_and_bad_sizes_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("train.bin");
        std::fs::write(&f, record(&[4, 77], 3)).unwrap();
        let (variant, files) = detect(d.path()).unwrap();
        assert_eq!(variant, Variant::Cifar100);
        assert_eq!(read(variant, &files).unwrap().labels, vec![77]);
        std::fs::write(&f, vec![0u8; 100]).unwrap();
        let e = read(variant, &files).unwrap_err().to_string();
        assert!(e.contains("train.bin") && e.contains("CIFAR records"), "{e}");
    }
}
