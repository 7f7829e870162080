//! Image-folder scanning: a recursive walk in sorted (deterministic) order, its folders read in
//! parallel.
//!
//! If the root holds no images itself and its sub-folders do, each sub-folder is a class (sorted
//! names → label ids 0, 1, …), the usual ImageFolder layout; images deeper down belong to their
//! top-level sub-folder's class. A flat or mixed folder is unlabeled. Hidden files and folders
//! (names starting with `.`) and files without an image extension are ignored quietly; symbolic
//! links are followed, and a link back to an ancestor is skipped (no loop).
//!
//! Every folder is listed by its own rayon task and the results are joined in sorted order, so
//! the files come out exactly as a sequential sorted depth-first walk gives them; on a network
//! file system, where each listing is a round trip, the folders are listed concurrently. The file
//! type comes from the directory entry: only symbolic links cost a `stat`.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::error::DatasetError;

/// File extensions (lower case) of the formats the image crate decodes here.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "jpe", "jfif", "png", "bmp", "gif", "webp", "tif", "tiff"];

/// One image file found by the scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanEntry {
    pub path: PathBuf,
    pub label: Option<u32>,
}

/// The result of scanning a folder.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    pub entries: Vec<ScanEntry>,
    /// Class names in label order; empty for an unlabeled folder.
    pub classes: Vec<String>,
    /// Folders that could not be read (path and reason); their files are missing from `entries`.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Whether `path` has one of [`IMAGE_EXTENSIONS`], case-insensitively.
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with('.'))
}

/// What one folder's walk found, in sorted depth-first order.
#[derive(Default)]
struct Walked {
    files: Vec<PathBuf>,
    unreadable: Vec<(PathBuf, String)>,
}

/// A folder's identity, to recognise a symbolic link back to an ancestor.
#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn identity(_meta: &std::fs::Metadata) -> (u64, u64) {
    (0, 0) // no inode numbers: symbolic-link loops are then bounded by the OS's path limits
}

enum Kind {
    File,
    Dir((u64, u64)),
}

/// One folder's images and sub-folders (hidden names and other files left out), sorted by name.
fn list(dir: &Path, ancestors: &[(u64, u64)], unreadable: &mut Vec<(PathBuf, String)>) -> Vec<(PathBuf, Kind)> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) => {
            unreadable.push((dir.to_path_buf(), e.to_string()));
            return Vec::new();
        }
    };
    let mut entries: Vec<(OsString, Kind)> = Vec::new();
    for entry in read {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                unreadable.push((dir.to_path_buf(), e.to_string()));
                continue;
            }
        };
        let name = entry.file_name();
        if is_hidden(&name) {
            continue;
        }
        let Ok(mut ty) = entry.file_type() else { continue };
        let mut id = None;
        if ty.is_symlink() {
            match std::fs::metadata(entry.path()) {
                Ok(m) => {
                    ty = m.file_type();
                    id = Some(identity(&m));
                }
                Err(e) => {
                    unreadable.push((entry.path(), e.to_string()));
                    continue;
                }
            }
        }
        if ty.is_file() && has_image_extension(Path::new(&name)) {
            entries.push((name, Kind::File));
        } else if ty.is_dir() {
            let id = match id {
                Some(id) => id,
                None => match entry.metadata() {
                    Ok(m) => identity(&m),
                    Err(e) => {
                        unreadable.push((entry.path(), e.to_string()));
                        continue;
                    }
                },
            };
            // A link back to an ancestor: skipped quietly.
            if cfg!(unix) && ancestors.contains(&id) {
                continue;
            }
            entries.push((name, Kind::Dir(id)));
        }
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    entries.into_iter().map(|(name, kind)| (dir.join(name), kind)).collect()
}

/// Walks `dir` (whose ancestors, itself included, are `ancestors`) into `out`, its sub-folders
/// in parallel, counting files in `found`.
fn walk(dir: &Path, ancestors: &[(u64, u64)], found: &AtomicU64, pb: &ProgressBar, out: &mut Walked) {
    let (entries, subs) = list_and_walk(dir, ancestors, found, pb, &mut out.unreadable);
    merge(entries, subs, out);
}

/// `dir`'s own entries (its files counted in `found`), and the walks of its sub-folders, made in
/// parallel, in their order.
fn list_and_walk(
    dir: &Path,
    ancestors: &[(u64, u64)],
    found: &AtomicU64,
    pb: &ProgressBar,
    unreadable: &mut Vec<(PathBuf, String)>,
) -> (Vec<(PathBuf, Kind)>, Vec<Walked>) {
    let entries = list(dir, ancestors, unreadable);
    let files_here = entries.iter().filter(|e| matches!(e.1, Kind::File)).count() as u64;
    pb.set_position(found.fetch_add(files_here, Ordering::Relaxed) + files_here);
    let subs = entries
        .par_iter()
        .filter_map(|(path, kind)| match kind {
            Kind::File => None,
            Kind::Dir(id) => {
                let mut chain = ancestors.to_vec();
                chain.push(*id);
                let mut w = Walked::default();
                walk(path, &chain, found, pb, &mut w);
                Some(w)
            }
        })
        .collect();
    (entries, subs)
}

/// `entries`' files and their sub-folders' walks, in sorted depth-first order.
fn merge(entries: Vec<(PathBuf, Kind)>, subs: Vec<Walked>, out: &mut Walked) {
    let mut subs = subs.into_iter();
    for (path, kind) in entries {
        match kind {
            Kind::File => out.files.push(path),
            Kind::Dir(_) => {
                let w = subs.next().expect("one walk per folder");
                out.files.extend(w.files);
                out.unreadable.extend(w.unreadable);
            }
        }
    }
}

/// Scans `root` recursively, with a counter on stderr when `verbose`. Errors only if `root` is
/// missing or not a folder.
pub fn scan_folder(root: &Path, verbose: bool) -> Result<Scan, DatasetError> {
    let meta = std::fs::metadata(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DatasetError::Missing { path: root.to_path_buf() },
        _ => DatasetError::io(root, e),
    })?;
    if !meta.is_dir() {
        return Err(DatasetError::format(root, "not a folder"));
    }
    let pb = if verbose {
        let pb = ProgressBar::new_spinner();
        pb.set_style(
            ProgressStyle::with_template("scanning {msg}: {human_pos} images {per_sec}").expect("static template"),
        );
        pb.set_message(root.display().to_string());
        pb.enable_steady_tick(std::time::Duration::from_millis(200));
        pb
    } else {
        ProgressBar::hidden()
    };
    let mut unreadable = Vec::new();
    let (entries, subs) = list_and_walk(root, &[identity(&meta)], &AtomicU64::new(0), &pb, &mut unreadable);
    pb.finish_and_clear();
    // Labeled iff no image sits directly in the root: then each top-level folder is a class.
    let labeled = entries.iter().all(|e| matches!(e.1, Kind::Dir(_))) && subs.iter().any(|w| !w.files.is_empty());
    if !labeled {
        let mut out = Walked { files: Vec::new(), unreadable };
        merge(entries, subs, &mut out);
        let entries = out.files.into_iter().map(|path| ScanEntry { path, label: None }).collect();
        return Ok(Scan { entries, classes: Vec::new(), unreadable: out.unreadable });
    }
    let names: Vec<String> =
        entries.iter().map(|(p, _)| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
    let classes: Vec<String> = names
        .iter()
        .zip(&subs)
        .filter(|(_, w)| !w.files.is_empty())
        .map(|(n, _)| n.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut out = Vec::with_capacity(subs.iter().map(|w| w.files.len()).sum());
    for (name, w) in names.iter().zip(subs) {
        unreadable.extend(w.unreadable);
        if w.files.is_empty() {
            continue;
        }
        let label = classes.binary_search(name).expect("class collected above") as u32;
        out.extend(w.files.into_iter().map(|path| ScanEntry { path, label: Some(label) }));
    }
    Ok(Scan { entries: out, classes, unreadable })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"x").unwrap();
    }

    #[test]
    fn class_folders_give_sorted_labels_and_deterministic_order() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for f in [
            "dog/b.png",
            "dog/a.JPG",
            "cat/z.jpeg",
            "cat/deep/er/y.webp",
            "bird/x.bmp",
            "bird/notes.txt",
            "cat/.hidden.png",
            ".git/c.png",
            "empty/readme.md",
        ] {
            touch(&r.join(f));
        }
        let s = scan_folder(r, false).unwrap();
        assert_eq!(s.classes, vec!["bird", "cat", "dog"]);
        let got: Vec<(String, Option<u32>)> = s
            .entries
            .iter()
            .map(|e| (e.path.strip_prefix(r).unwrap().to_string_lossy().into_owned(), e.label))
            .collect();
        assert_eq!(
            got,
            vec![
                ("bird/x.bmp".into(), Some(0)),
                ("cat/deep/er/y.webp".into(), Some(1)),
                ("cat/z.jpeg".into(), Some(1)),
                ("dog/a.JPG".into(), Some(2)),
                ("dog/b.png".into(), Some(2)),
            ]
        );
    }

    /// The sorted depth-first order a plain sequential walk gives, written out naively.
    fn sequential(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for n in names {
            let p = dir.join(&n);
            if is_hidden(&n) {
                continue;
            }
            if p.is_dir() {
                sequential(&p, out);
            } else if has_image_extension(&p) {
                out.push(p);
            }
        }
    }

    #[test]
    fn the_parallel_walk_gives_the_sequential_sorted_order_of_a_deep_mixed_tree() {
        let d = tempfile::tempdir().unwrap();
        let mut s: u64 = 7;
        let mut rnd = |n: u64| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) % n
        };
        for i in 0..400 {
            let depth = rnd(4);
            let mut p = d.path().to_path_buf();
            for _ in 0..depth {
                p.push(format!("d{}", rnd(3)));
            }
            let ext = ["png", "JPG", "txt", "webp"][rnd(4) as usize];
            touch(&p.join(format!("{}{i}.{ext}", ["a", "B", "z", "."][rnd(4) as usize])));
        }
        for root in [d.path().to_path_buf(), d.path().join("d0"), d.path().join("d1/d2")] {
            let mut want = Vec::new();
            sequential(&root, &mut want);
            assert!(want.len() >= 3, "{}: {want:?}", root.display());
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let got: Vec<PathBuf> =
                    pool.install(|| scan_folder(&root, false).unwrap()).entries.into_iter().map(|e| e.path).collect();
                assert_eq!(got, want, "{} on {threads} threads", root.display());
            }
        }
    }

    #[test]
    fn flat_or_mixed_folders_are_unlabeled() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("a.png"));
        touch(&d.path().join("sub/b.png"));
        let s = scan_folder(d.path(), false).unwrap();
        assert!(s.classes.is_empty());
        assert_eq!(s.entries.len(), 2);
        assert!(s.entries.iter().all(|e| e.label.is_none()));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_without_looping() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("root");
        touch(&r.join("a/1.png"));
        let other = d.path().join("elsewhere");
        touch(&other.join("2.png"));
        std::os::unix::fs::symlink(&other, r.join("b")).unwrap();
        std::os::unix::fs::symlink(&r, r.join("a/loop")).unwrap();
        let s = scan_folder(&r, false).unwrap();
        assert_eq!(s.classes, vec!["a", "b"]);
        assert_eq!(s.entries.len(), 2, "{:?}", s.entries);
    }

    #[test]
    fn missing_root_and_file_root_are_errors_naming_the_path() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nope");
        let e = scan_folder(&missing, false).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("no such file"), "{e}");
        touch(&d.path().join("f.png"));
        let e = scan_folder(&d.path().join("f.png"), false).unwrap_err().to_string();
        assert!(e.contains("f.png") && e.contains("not a folder"), "{e}");
    }
}
