//! `selfsup bench scan`: time to list an image folder (the walk `pretrain` starts with), and
//! the memory its list takes per image.

use std::path::Path;

use anyhow::Result;
use selfsup_datasets::scan::{ScanEntry, scan_folder};

/// The measured figures of one scan.
#[derive(Debug)]
pub struct ScanBench {
    pub images: usize,
    pub seconds: f64,
    /// Heap and inline bytes of the list, per image: the entry plus its path's allocation.
    pub bytes_per_image: f64,
}

/// Scans `path` `rounds` times on `threads` threads.
pub fn run(path: &Path, threads: usize, rounds: usize) -> Result<Vec<ScanBench>> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    (0..rounds)
        .map(|_| {
            pool.install(|| {
                let t = std::time::Instant::now();
                let scan = scan_folder(path, false)?;
                let seconds = t.elapsed().as_secs_f64();
                let n = scan.entries.len();
                let bytes: usize =
                    scan.entries.iter().map(|e| std::mem::size_of::<ScanEntry>() + e.path.capacity()).sum();
                Ok(ScanBench { images: n, seconds, bytes_per_image: bytes as f64 / n.max(1) as f64 })
            })
        })
        .collect()
}
