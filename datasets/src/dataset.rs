//! Opening a dataset: format detection, parallel loading into the cache with a progress bar,
//! counted skips of bad files, the memory budget and the streaming fallback.
//!
//! A path may be an image folder, a CIFAR-10/100 binary folder or file, or an IDX folder or
//! images file. Bad image files (corrupt, truncated, empty, mislabelled, unsupported, too large)
//! are skipped with one warning line each and a final count; a missing path, or a dataset with
//! no usable image, is an error naming the path. When the decoded pixels would exceed
//! `cache_limit`, the images are not kept: they are decoded on the fly by whichever worker thread
//! asks for them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::cache::{ChunkBuilder, ImageCache};
use crate::decode::{DecodeOptions, RgbImage8, decode_file, probe_file};
use crate::error::DatasetError;
use crate::scan::{IMAGE_EXTENSIONS, ScanEntry, scan_folder};
use crate::split::stratified_subset;
use crate::{cifar, idx};

/// Files decoded together into one cache chunk.
const CHUNK_FILES: usize = 256;

/// What kind of source a dataset was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    ImageFolder,
    Cifar10,
    Cifar100,
    Idx,
}

/// How to load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub decode: DecodeOptions,
    /// Keep decoded pixels in memory only up to this many bytes; beyond, decode on the fly.
    pub cache_limit: u64,
    /// Keep only a stratified subset of this many images.
    pub limit: Option<usize>,
    /// Seed of the `limit` subset.
    pub seed: u64,
    /// Show a progress bar and print skip warnings and the final count on stderr.
    pub verbose: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { decode: DecodeOptions::default(), cache_limit: 8 << 30, limit: None, seed: 0, verbose: true }
    }
}

/// A file that was left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Clone, Copy, Debug)]
struct Item {
    /// Cache slot (cached storage) or file index (streaming).
    slot: u32,
    label: Option<u32>,
}

#[derive(Debug)]
enum Storage {
    Cached(ImageCache),
    Streaming { decode: DecodeOptions, warned: Mutex<HashSet<usize>>, verbose: bool },
}

/// Images with optional labels, served from memory or decoded on demand. Cheap to
/// [`select`](Dataset::select) from: subsets share the pixels.
#[derive(Clone, Debug)]
pub struct Dataset {
    root: PathBuf,
    kind: SourceKind,
    classes: Vec<String>,
    items: Vec<Item>,
    /// File path per slot (empty for binary formats).
    paths: Arc<Vec<PathBuf>>,
    storage: Arc<Storage>,
    skipped: Vec<Skipped>,
}

/// Opens `path` (see the module documentation for what it may be).
pub fn open(path: &Path, opts: &LoadOptions) -> Result<Dataset, DatasetError> {
    if !path.exists() {
        return Err(DatasetError::Missing { path: path.to_path_buf() });
    }
    let binary = if let Some((variant, files)) = cifar::detect(path) {
        let kind = match variant {
            cifar::Variant::Cifar10 => SourceKind::Cifar10,
            cifar::Variant::Cifar100 => SourceKind::Cifar100,
        };
        Some((kind, cifar::read(variant, &files)?))
    } else if let Some(images) = idx::detect(path) {
        Some((SourceKind::Idx, idx::read(&images)?))
    } else {
        None
    };
    let ds = match binary {
        Some((kind, loaded)) => {
            let items =
                loaded.labels.iter().enumerate().map(|(i, &l)| Item { slot: i as u32, label: Some(l) }).collect();
            let ds = Dataset {
                root: path.to_path_buf(),
                kind,
                classes: loaded.classes,
                items,
                paths: Arc::new(Vec::new()),
                storage: Arc::new(Storage::Cached(loaded.images)),
                skipped: Vec::new(),
            };
            match opts.limit {
                Some(n) => ds.select(&stratified_subset(&ds.labels(), n, opts.seed)),
                None => ds,
            }
        }
        None if path.is_dir() => open_folder(path, opts)?,
        None => {
            return Err(DatasetError::format(
                path,
                "not a dataset: expected an image folder, a CIFAR .bin file or an IDX images file",
            ));
        }
    };
    if ds.is_empty() {
        let detail = if ds.skipped.is_empty() {
            format!("no image files ({}) in it", IMAGE_EXTENSIONS.join(", "))
        } else {
            format!("all {} image files were skipped, see the warnings above", ds.skipped.len())
        };
        return Err(DatasetError::Empty { path: path.to_path_buf(), detail });
    }
    if opts.verbose {
        let streaming = if ds.is_streaming() { " (decoded on the fly: over the cache limit)" } else { "" };
        if ds.skipped.is_empty() {
            eprintln!("loaded {} images from {}{streaming}", thousands(ds.len()), path.display());
        } else {
            eprintln!(
                "loaded {} images from {}, skipped {}: see above{streaming}",
                thousands(ds.len()),
                path.display(),
                thousands(ds.skipped.len())
            );
        }
    }
    Ok(ds)
}

fn progress(opts: &LoadOptions, len: usize, msg: &'static str) -> ProgressBar {
    if !opts.verbose {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {human_pos}/{human_len} {per_sec} eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb
}

fn warn(pb: &ProgressBar, verbose: bool, s: &Skipped) {
    if verbose {
        pb.suspend(|| eprintln!("warning: skipped {}: {}", s.path.display(), s.reason));
    }
}

fn open_folder(root: &Path, opts: &LoadOptions) -> Result<Dataset, DatasetError> {
    let scan = scan_folder(root)?;
    let mut skipped: Vec<Skipped> = scan
        .unreadable
        .iter()
        .map(|(p, r)| Skipped { path: p.clone(), reason: format!("unreadable folder: {r}") })
        .collect();
    let mut entries = scan.entries;
    if let Some(n) = opts.limit {
        let labels: Vec<Option<u32>> = entries.iter().map(|e| e.label).collect();
        let keep = stratified_subset(&labels, n, opts.seed);
        entries = keep.into_iter().map(|i| entries[i].clone()).collect();
    }
    let pb = progress(opts, entries.len(), "decoding");
    for s in &skipped {
        warn(&pb, opts.verbose, s);
    }
    let total = AtomicU64::new(0);
    let over = AtomicBool::new(false);
    let chunks: Vec<(ChunkBuilder, Vec<ScanEntry>, Vec<Skipped>)> = entries
        .par_chunks(CHUNK_FILES)
        .map(|files| {
            let mut chunk = ChunkBuilder::default();
            let mut kept = Vec::new();
            let mut bad = Vec::new();
            for e in files {
                if over.load(Ordering::Relaxed) {
                    break;
                }
                match decode_file(&e.path, &opts.decode) {
                    Ok(img) => {
                        let bytes = img.pixels.len() as u64;
                        if total.fetch_add(bytes, Ordering::Relaxed) + bytes > opts.cache_limit {
                            over.store(true, Ordering::Relaxed);
                            break;
                        }
                        chunk.push(img.width, img.height, &img.pixels);
                        kept.push(e.clone());
                    }
                    Err(reason) => {
                        let s = Skipped { path: e.path.clone(), reason };
                        warn(&pb, opts.verbose, &s);
                        bad.push(s);
                    }
                }
                pb.inc(1);
            }
            (chunk, kept, bad)
        })
        .collect();
    pb.finish_and_clear();

    if over.load(Ordering::Relaxed) {
        drop(chunks);
        return open_streaming(root, entries, scan.classes, skipped, opts);
    }
    let mut kept_entries = Vec::new();
    let mut builders = Vec::new();
    for (chunk, kept, bad) in chunks {
        kept_entries.extend(kept);
        skipped.extend(bad);
        builders.push(chunk);
    }
    let storage = Storage::Cached(ImageCache::from_chunks(builders));
    Ok(folder_dataset(root, scan.classes, kept_entries, storage, skipped))
}

/// An image-folder dataset whose slot `i` is `kept[i]`.
fn folder_dataset(
    root: &Path,
    classes: Vec<String>,
    kept: Vec<ScanEntry>,
    storage: Storage,
    skipped: Vec<Skipped>,
) -> Dataset {
    let items = kept.iter().enumerate().map(|(i, e)| Item { slot: i as u32, label: e.label }).collect();
    Dataset {
        root: root.to_path_buf(),
        kind: SourceKind::ImageFolder,
        classes,
        items,
        paths: Arc::new(kept.into_iter().map(|e| e.path).collect()),
        storage: Arc::new(storage),
        skipped,
    }
}

/// Streaming: check every header now (cheap), decode pixels when asked.
fn open_streaming(
    root: &Path,
    entries: Vec<ScanEntry>,
    classes: Vec<String>,
    mut skipped: Vec<Skipped>,
    opts: &LoadOptions,
) -> Result<Dataset, DatasetError> {
    if opts.verbose {
        eprintln!(
            "images exceed the cache limit of {} bytes: they will be decoded on the fly",
            thousands(opts.cache_limit as usize)
        );
    }
    let pb = progress(opts, entries.len(), "checking");
    let checked: Vec<Result<(), String>> = entries
        .par_iter()
        .map(|e| {
            let r = probe_file(&e.path, &opts.decode).map(|_| ());
            if let Err(reason) = &r {
                warn(&pb, opts.verbose, &Skipped { path: e.path.clone(), reason: reason.clone() });
            }
            pb.inc(1);
            r
        })
        .collect();
    pb.finish_and_clear();
    let mut kept = Vec::new();
    for (e, r) in entries.into_iter().zip(checked) {
        match r {
            Ok(()) => kept.push(e),
            Err(reason) => skipped.push(Skipped { path: e.path, reason }),
        }
    }
    let storage =
        Storage::Streaming { decode: opts.decode.clone(), warned: Mutex::new(HashSet::new()), verbose: opts.verbose };
    Ok(folder_dataset(root, classes, kept, storage, skipped))
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The path it was opened from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// Class names in label order (empty when unlabeled).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Whether every image has a label.
    pub fn is_labeled(&self) -> bool {
        !self.classes.is_empty()
    }

    pub fn label(&self, i: usize) -> Option<u32> {
        self.items[i].label
    }

    pub fn labels(&self) -> Vec<Option<u32>> {
        self.items.iter().map(|it| it.label).collect()
    }

    /// The file image `i` came from (`None` for binary formats).
    pub fn path(&self, i: usize) -> Option<&Path> {
        self.paths.get(self.items[i].slot as usize).map(PathBuf::as_path)
    }

    /// A printable name for image `i`: its path, or `root#index` for binary formats.
    pub fn name(&self, i: usize) -> String {
        match self.path(i) {
            Some(p) => p.display().to_string(),
            None => format!("{}#{}", self.root.display(), self.items[i].slot),
        }
    }

    /// Files left out while opening.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Whether images are decoded on demand instead of served from memory.
    pub fn is_streaming(&self) -> bool {
        matches!(*self.storage, Storage::Streaming { .. })
    }

    /// Raw pixel bytes held in memory (0 when streaming).
    pub fn cached_bytes(&self) -> u64 {
        match &*self.storage {
            Storage::Cached(c) => c.pixel_bytes(),
            Storage::Streaming { .. } => 0,
        }
    }

    /// Heap bytes held by the pixel cache (0 when streaming).
    pub fn cache_allocated_bytes(&self) -> u64 {
        match &*self.storage {
            Storage::Cached(c) => c.allocated_bytes(),
            Storage::Streaming { .. } => 0,
        }
    }

    /// A dataset of the given items (in that order), sharing this one's pixels.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        Dataset { items: indices.iter().map(|&i| self.items[i]).collect(), ..self.clone() }
    }

    /// Calls `f(width, height, rgb_pixels)` with image `i`. When streaming, a file that fails
    /// to decode now (it passed the header check) is reported once and the next decodable
    /// image is served instead, so a run never stops on one bad file.
    pub fn with_image<R>(&self, i: usize, f: impl FnOnce(u32, u32, &[u8]) -> R) -> R {
        match &*self.storage {
            Storage::Cached(cache) => {
                let (w, h, px) = cache.get(self.items[i].slot as usize);
                f(w, h, px)
            }
            Storage::Streaming { decode, warned, verbose } => {
                for k in 0..self.len() {
                    let slot = self.items[(i + k) % self.len()].slot as usize;
                    match decode_file(&self.paths[slot], decode) {
                        Ok(img) => return f(img.width, img.height, &img.pixels),
                        Err(reason) => {
                            let first = warned.lock().map(|mut w| w.insert(slot)).unwrap_or(false);
                            if first && *verbose {
                                eprintln!(
                                    "warning: could not decode {} (using the next image instead): {reason}",
                                    self.paths[slot].display()
                                );
                            }
                        }
                    }
                }
                // Nothing decodes any more (files removed during the run): a gray pixel keeps
                // the run alive; every file has been reported above.
                f(1, 1, &[128, 128, 128])
            }
        }
    }

    /// An owned copy of image `i`.
    pub fn image(&self, i: usize) -> RgbImage8 {
        self.with_image(i, |width, height, px| RgbImage8 { width, height, pixels: px.to_vec() })
    }
}

/// `49998` → `"49,998"`.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(49_998), "49,998");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
