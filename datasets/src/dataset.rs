//! Opening a dataset: format detection, parallel loading into the cache with a progress bar,
//! counted skips of bad files, the memory budget and the streaming fallback.
//!
//! A path may be an image folder, WebDataset tar shards (a `.tar` file, a folder of them, or a
//! brace pattern: see [`crate::webdataset`]), a CIFAR-10/100 binary folder or file, or an IDX
//! folder or images file. Bad image files (corrupt, truncated, empty, mislabelled, unsupported, too large)
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
use crate::decode::{DecodeOptions, RgbImage8, decode_bytes, decode_bytes_planned, probe_file, probe_read};
use crate::error::DatasetError;
use crate::read_ahead::ReadAhead;
use crate::scan::{IMAGE_EXTENSIONS, scan_folder};
use crate::split::stratified_subset;
use crate::webdataset::{self, Member, MemberReader};
use crate::{cifar, idx};

/// Files decoded together into one cache chunk.
const CHUNK_FILES: usize = 256;

/// What kind of source a dataset was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    ImageFolder,
    WebDataset,
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

/// Where each slot's encoded image lies.
#[derive(Debug)]
pub(crate) enum Files {
    /// Binary formats: the pixels came with the file.
    None,
    Paths(Vec<PathBuf>),
    /// Members of WebDataset shards.
    Members {
        shards: Vec<PathBuf>,
        members: Vec<Member>,
    },
}

impl Files {
    fn len(&self) -> usize {
        match self {
            Files::None => 0,
            Files::Paths(p) => p.len(),
            Files::Members { members, .. } => members.len(),
        }
    }

    /// These slots, in this order.
    fn subset(self, keep: &[usize]) -> Files {
        match self {
            Files::None => Files::None,
            Files::Paths(p) => Files::Paths(keep.iter().map(|&i| p[i].clone()).collect()),
            Files::Members { shards, members } => {
                Files::Members { shards, members: keep.iter().map(|&i| members[i].clone()).collect() }
            }
        }
    }

    fn path(&self, slot: usize) -> Option<&Path> {
        match self {
            Files::Paths(p) => p.get(slot).map(PathBuf::as_path),
            _ => None,
        }
    }

    /// How messages name the slot: its path, or `shard.tar:member`.
    fn label(&self, slot: usize) -> PathBuf {
        match self {
            Files::None => PathBuf::new(),
            Files::Paths(p) => p[slot].clone(),
            Files::Members { shards, members } => {
                let m = &members[slot];
                webdataset::member_label(&shards[m.shard as usize], &m.name)
            }
        }
    }

    fn shard(&self, slot: usize) -> Option<u32> {
        match self {
            Files::Members { members, .. } => members.get(slot).map(|m| m.shard),
            _ => None,
        }
    }

    fn member(&self, slot: usize) -> std::io::Result<MemberReader> {
        match self {
            Files::Members { shards, members } => {
                let m = &members[slot];
                MemberReader::open(&shards[m.shard as usize], m)
            }
            _ => unreachable!(
                "only shard members are read through a member reader (binary formats are decoded when opened)"
            ),
        }
    }

    /// The slot's encoded bytes (the file, or the shard member).
    pub(crate) fn bytes(&self, slot: usize) -> Result<Vec<u8>, String> {
        match self {
            Files::Paths(p) => std::fs::read(&p[slot]),
            _ => self.member(slot).and_then(MemberReader::read_all),
        }
        .map_err(|e| e.to_string())
    }

    fn decode(&self, slot: usize, opts: &DecodeOptions) -> Result<RgbImage8, String> {
        decode_bytes(&self.bytes(slot)?, opts)
    }

    /// Decodes the slot from `bytes` when given (read ahead), else from its file.
    fn decode_planned(
        &self,
        slot: usize,
        bytes: Option<Vec<u8>>,
        opts: &DecodeOptions,
        plan: &mut dyn FnMut(u32, u32) -> f64,
    ) -> Result<(RgbImage8, [f64; 2]), String> {
        let bytes = match bytes {
            Some(b) => b,
            None => self.bytes(slot)?,
        };
        decode_bytes_planned(&bytes, opts, plan)
    }

    fn probe(&self, slot: usize, opts: &DecodeOptions) -> Result<(u32, u32), String> {
        match self {
            Files::Paths(p) => probe_file(&p[slot], opts),
            Files::Members { members, .. } => {
                probe_read(self.member(slot).map_err(|e| e.to_string())?, members[slot].len, opts)
            }
            Files::None => unreachable!("binary formats are decoded when opened"),
        }
    }
}

/// Images with optional labels, served from memory or decoded on demand. Cheap to
/// [`select`](Dataset::select) from: subsets share the pixels.
#[derive(Clone, Debug)]
pub struct Dataset {
    root: PathBuf,
    kind: SourceKind,
    classes: Vec<String>,
    items: Vec<Item>,
    /// Where each slot's file is (`Files::None` for binary formats).
    files: Arc<Files>,
    storage: Arc<Storage>,
    skipped: Vec<Skipped>,
}

/// Opens `path` (see the module documentation for what it may be).
pub fn open(path: &Path, opts: &LoadOptions) -> Result<Dataset, DatasetError> {
    let shards = webdataset::shard_paths(path)?;
    if shards.is_none() && !path.exists() {
        return Err(DatasetError::Missing { path: path.to_path_buf() });
    }
    let binary = if shards.is_some() {
        None
    } else if let Some((variant, files)) = cifar::detect(path) {
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
    let ds = match (binary, shards) {
        (Some((kind, loaded)), _) => {
            let items =
                loaded.labels.iter().enumerate().map(|(i, &l)| Item { slot: i as u32, label: Some(l) }).collect();
            let ds = Dataset {
                root: path.to_path_buf(),
                kind,
                classes: loaded.classes,
                items,
                files: Arc::new(Files::None),
                storage: Arc::new(Storage::Cached(loaded.images)),
                skipped: Vec::new(),
            };
            match opts.limit {
                Some(n) => ds.select(&stratified_subset(&ds.labels(), n, opts.seed)),
                None => ds,
            }
        }
        (None, Some(shards)) => open_shards(path, shards, opts)?,
        (None, None) if path.is_dir() => open_folder(path, opts)?,
        (None, None) => {
            return Err(DatasetError::format(
                path,
                "not a dataset: expected an image folder, WebDataset .tar shards, a CIFAR .bin file or an IDX images file",
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
    progress_bar(opts.verbose, len, msg)
}

/// The bar every stage over a known number of images shows on stderr (hidden unless `verbose`).
pub fn progress_bar(verbose: bool, len: usize, msg: &'static str) -> ProgressBar {
    if !verbose {
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

/// Images found but not yet decoded: where each is, its label, and what was left out so far.
struct Found {
    kind: SourceKind,
    classes: Vec<String>,
    files: Files,
    labels: Vec<Option<u32>>,
    skipped: Vec<Skipped>,
}

fn open_folder(root: &Path, opts: &LoadOptions) -> Result<Dataset, DatasetError> {
    let scan = scan_folder(root, opts.verbose)?;
    let skipped: Vec<Skipped> = scan
        .unreadable
        .iter()
        .map(|(p, r)| Skipped { path: p.clone(), reason: format!("unreadable folder: {r}") })
        .collect();
    let labels = scan.entries.iter().map(|e| e.label).collect();
    let files = Files::Paths(scan.entries.into_iter().map(|e| e.path).collect());
    load(root, Found { kind: SourceKind::ImageFolder, classes: scan.classes, files, labels, skipped }, opts)
}

fn open_shards(root: &Path, shards: Vec<PathBuf>, opts: &LoadOptions) -> Result<Dataset, DatasetError> {
    let pb = progress(opts, shards.len(), "reading shard headers");
    let index = webdataset::index_shards(shards, &|| pb.inc(1));
    pb.finish_and_clear();
    if let (Some((without, of)), true) = (index.without_label, opts.verbose) {
        eprintln!(
            "warning: {} of {} samples in {} have no .cls label: the shards are read as unlabelled",
            thousands(without),
            thousands(of),
            root.display()
        );
    }
    let labels = index.samples.iter().map(|s| s.label).collect();
    let members = index.samples.into_iter().map(|s| s.image).collect();
    let files = Files::Members { shards: index.shards, members };
    let found = Found { kind: SourceKind::WebDataset, classes: index.classes, files, labels, skipped: index.skipped };
    load(root, found, opts)
}

/// Decodes what was found into the cache, or, past the cache limit, checks every header and
/// leaves the decoding to the workers.
fn load(root: &Path, found: Found, opts: &LoadOptions) -> Result<Dataset, DatasetError> {
    let Found { kind, classes, mut files, mut labels, mut skipped } = found;
    if let Some(n) = opts.limit {
        let keep = stratified_subset(&labels, n, opts.seed);
        labels = keep.iter().map(|&i| labels[i]).collect();
        files = files.subset(&keep);
    }
    let pb = progress(opts, files.len(), "decoding");
    for s in &skipped {
        warn(&pb, opts.verbose, s);
    }
    let total = AtomicU64::new(0);
    let over = AtomicBool::new(false);
    let slots: Vec<usize> = (0..files.len()).collect();
    let chunks: Vec<(ChunkBuilder, Vec<usize>, Vec<Skipped>)> = slots
        .par_chunks(CHUNK_FILES)
        .map(|chunk_slots| {
            let mut chunk = ChunkBuilder::default();
            let mut kept = Vec::new();
            let mut bad = Vec::new();
            for &slot in chunk_slots {
                if over.load(Ordering::Relaxed) {
                    break;
                }
                match files.decode(slot, &opts.decode) {
                    Ok(img) => {
                        let bytes = img.pixels.len() as u64;
                        if total.fetch_add(bytes, Ordering::Relaxed) + bytes > opts.cache_limit {
                            over.store(true, Ordering::Relaxed);
                            break;
                        }
                        chunk.push(img.width, img.height, &img.pixels);
                        kept.push(slot);
                    }
                    Err(reason) => {
                        let s = Skipped { path: files.label(slot), reason };
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
        return open_streaming(root, Found { kind, classes, files, labels, skipped }, opts);
    }
    let mut kept = Vec::new();
    let mut builders = Vec::new();
    for (chunk, k, bad) in chunks {
        kept.extend(k);
        skipped.extend(bad);
        builders.push(chunk);
    }
    let storage = Storage::Cached(ImageCache::from_chunks(builders));
    Ok(dataset(root, Found { kind, classes, files, labels, skipped }, &kept, storage))
}

/// A dataset whose slot `i` is `found`'s `kept[i]`.
fn dataset(root: &Path, found: Found, kept: &[usize], storage: Storage) -> Dataset {
    let items = kept.iter().enumerate().map(|(i, &k)| Item { slot: i as u32, label: found.labels[k] }).collect();
    Dataset {
        root: root.to_path_buf(),
        kind: found.kind,
        classes: found.classes,
        items,
        files: Arc::new(found.files.subset(kept)),
        storage: Arc::new(storage),
        skipped: found.skipped,
    }
}

/// Streaming: check every header now (cheap), decode pixels when asked.
fn open_streaming(root: &Path, mut found: Found, opts: &LoadOptions) -> Result<Dataset, DatasetError> {
    if opts.verbose {
        eprintln!(
            "images exceed the cache limit of {} bytes: they will be decoded on the fly",
            thousands(opts.cache_limit as usize)
        );
    }
    let files = &found.files;
    let pb = progress(opts, files.len(), "checking");
    let checked: Vec<Result<(), String>> = (0..files.len())
        .into_par_iter()
        .map(|slot| {
            let r = files.probe(slot, &opts.decode).map(|_| ());
            if let Err(reason) = &r {
                warn(&pb, opts.verbose, &Skipped { path: files.label(slot), reason: reason.clone() });
            }
            pb.inc(1);
            r
        })
        .collect();
    pb.finish_and_clear();
    let mut kept = Vec::new();
    for (slot, r) in checked.into_iter().enumerate() {
        match r {
            Ok(()) => kept.push(slot),
            Err(reason) => found.skipped.push(Skipped { path: found.files.label(slot), reason }),
        }
    }
    let storage =
        Storage::Streaming { decode: opts.decode.clone(), warned: Mutex::new(HashSet::new()), verbose: opts.verbose };
    Ok(dataset(root, found, &kept, storage))
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

    /// The file image `i` came from (`None` for binary formats and shard members).
    pub fn path(&self, i: usize) -> Option<&Path> {
        self.files.path(self.items[i].slot as usize)
    }

    /// A printable name for image `i`: its path, `shard.tar:member`, or `root#index` for
    /// binary formats.
    pub fn name(&self, i: usize) -> String {
        match &*self.files {
            Files::None => format!("{}#{}", self.root.display(), self.items[i].slot),
            files => files.label(self.items[i].slot as usize).display().to_string(),
        }
    }

    /// The shard (its index among the shard files, in their order) image `i` lies in, for a
    /// WebDataset; `None` for every other source.
    pub fn shard(&self, i: usize) -> Option<u32> {
        self.files.shard(self.items[i].slot as usize)
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
        self.with_image_planned(i, &mut |_, _| 1.0, |w, h, px, _| f(w, h, px))
    }

    /// [`with_image`](Self::with_image) for a caller that can use a reduced-scale decode (the
    /// augmentation stage, whose crop boxes are drawn first): `plan` gets the image's size as
    /// `with_image` lends it and returns how many times smaller the image may be; `f` gets the
    /// image and the factors `[fx, fy]` that carry coordinates of that size onto its pixels.
    /// Cached images are lent as they are (`[1, 1]`); streamed JPEGs are decoded at 1/2, 1/4 or
    /// 1/8 scale where `plan` allows (see [`decode_bytes_planned`]).
    pub fn with_image_planned<R>(
        &self,
        i: usize,
        plan: &mut dyn FnMut(u32, u32) -> f64,
        f: impl FnOnce(u32, u32, &[u8], [f64; 2]) -> R,
    ) -> R {
        self.serve(i, None, plan, f)
    }

    /// [`with_image_planned`](Self::with_image_planned) taking image `i`'s bytes from `ahead`
    /// when its reader has them.
    pub fn with_image_read_ahead<R>(
        &self,
        i: usize,
        ahead: &ReadAhead,
        plan: &mut dyn FnMut(u32, u32) -> f64,
        f: impl FnOnce(u32, u32, &[u8], [f64; 2]) -> R,
    ) -> R {
        let bytes = if self.is_streaming() { ahead.take(i) } else { None };
        self.serve(i, bytes, plan, f)
    }

    /// Starts a reader thread reading the files of `order` (indices of this dataset, in the
    /// order the epoch visits them) ahead of the decoding, holding at most `depth` images and
    /// `max_bytes` bytes (see [`crate::read_ahead`]); `None` when the images are cached.
    pub fn read_ahead(&self, order: &[usize], depth: usize, max_bytes: usize) -> Option<ReadAhead> {
        if !self.is_streaming() {
            return None;
        }
        let order = order.iter().map(|&i| (i, self.items[i].slot as usize)).collect();
        Some(ReadAhead::start(Arc::clone(&self.files), order, depth, max_bytes))
    }

    fn serve<R>(
        &self,
        i: usize,
        mut bytes: Option<Vec<u8>>,
        plan: &mut dyn FnMut(u32, u32) -> f64,
        f: impl FnOnce(u32, u32, &[u8], [f64; 2]) -> R,
    ) -> R {
        match &*self.storage {
            Storage::Cached(cache) => {
                let (w, h, px) = cache.get(self.items[i].slot as usize);
                plan(w, h);
                f(w, h, px, [1.0, 1.0])
            }
            Storage::Streaming { decode, warned, verbose } => {
                for k in 0..self.len() {
                    let slot = self.items[(i + k) % self.len()].slot as usize;
                    match self.files.decode_planned(slot, bytes.take(), decode, plan) {
                        Ok((img, factors)) => return f(img.width, img.height, &img.pixels, factors),
                        Err(reason) => {
                            let first = warned.lock().map(|mut w| w.insert(slot)).unwrap_or(false);
                            if first && *verbose {
                                eprintln!(
                                    "warning: could not decode {} (using the next image instead): {reason}",
                                    self.files.label(slot).display()
                                );
                            }
                        }
                    }
                }
                // Nothing decodes any more (files removed during the run): a gray pixel keeps
                // the run alive; every file has been reported above.
                plan(1, 1);
                f(1, 1, &[128, 128, 128], [1.0, 1.0])
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
