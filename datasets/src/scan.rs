//! Image-folder scanning: a recursive walk in sorted (deterministic) order.
//!
//! If the root holds no images itself and its sub-folders do, each sub-folder is a class (sorted
//! names → label ids 0, 1, …), the usual ImageFolder layout; images deeper down belong to their
//! top-level sub-folder's class. A flat or mixed folder is unlabeled. Hidden files and folders
//! (names starting with `.`) and files without an image extension are ignored quietly; symbolic
//! links are followed, and a link back to an ancestor is skipped (no loop).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

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

/// Scans `root` recursively. Errors only if `root` is missing or not a folder.
pub fn scan_folder(root: &Path) -> Result<Scan, DatasetError> {
    let meta = std::fs::metadata(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DatasetError::Missing { path: root.to_path_buf() },
        _ => DatasetError::io(root, e),
    })?;
    if !meta.is_dir() {
        return Err(DatasetError::format(root, "not a folder"));
    }
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    let walker = WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !is_hidden(e.file_name()));
    for entry in walker {
        match entry {
            Ok(e) if e.file_type().is_file() && has_image_extension(e.path()) => files.push(e.into_path()),
            Ok(_) => {}
            // A symlink to an ancestor: walkdir reports it instead of descending; skip quietly.
            Err(e) if e.loop_ancestor().is_some() => {}
            Err(e) => {
                let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| root.to_path_buf());
                unreadable.push((path, e.io_error().map_or_else(|| e.to_string(), ToString::to_string)));
            }
        }
    }
    // Labeled iff no image sits directly in the root.
    let class_of = |p: &Path| -> Option<String> {
        let rel = p.strip_prefix(root).ok()?;
        let mut comps = rel.components();
        let first = comps.next()?;
        comps.next()?; // the file itself must be below the class folder
        Some(first.as_os_str().to_string_lossy().into_owned())
    };
    let labeled = !files.is_empty() && files.iter().all(|p| class_of(p).is_some());
    if !labeled {
        let entries = files.into_iter().map(|path| ScanEntry { path, label: None }).collect();
        return Ok(Scan { entries, classes: Vec::new(), unreadable });
    }
    let classes: Vec<String> = files.iter().filter_map(|p| class_of(p)).collect::<BTreeSet<_>>().into_iter().collect();
    let entries = files
        .into_iter()
        .map(|path| {
            let class = class_of(&path).expect("checked above");
            let label = classes.binary_search(&class).expect("class collected above") as u32;
            ScanEntry { path, label: Some(label) }
        })
        .collect();
    Ok(Scan { entries, classes, unreadable })
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
        let s = scan_folder(r).unwrap();
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

    #[test]
    fn flat_or_mixed_folders_are_unlabeled() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("a.png"));
        touch(&d.path().join("sub/b.png"));
        let s = scan_folder(d.path()).unwrap();
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
        let s = scan_folder(&r).unwrap();
        assert_eq!(s.classes, vec!["a", "b"]);
        assert_eq!(s.entries.len(), 2, "{:?}", s.entries);
    }

    #[test]
    fn missing_root_and_file_root_are_errors_naming_the_path() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nope");
        let e = scan_folder(&missing).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("no such file"), "{e}");
        touch(&d.path().join("f.png"));
        let e = scan_folder(&d.path().join("f.png")).unwrap_err().to_string();
        assert!(e.contains("f.png") && e.contains("not a folder"), "{e}");
    }
}
