//! Atomic, durable file writes: write to a temporary file in the destination's folder, flush it
//! to disk, rename it over the destination and flush the folder, so a crash or a power cut
//! leaves either the old file or the new one, never half of one, and a completed write survives.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The temporary path used while writing `dest`.
fn temp_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Flushes a folder's entries (a rename or a new link in it) to disk. File systems that cannot
/// open folders for syncing are left alone: there is nothing more to do on them.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    match std::fs::File::open(dir) {
        Ok(f) => f.sync_all().or_else(|e| if e.kind() == std::io::ErrorKind::InvalidInput { Ok(()) } else { Err(e) }),
        Err(_) => Ok(()),
    }
    .with_context(|| format!("syncing folder {}", dir.display()))
}

/// Adds what a user can do about a write that failed for lack of space.
fn explain(e: std::io::Error, path: &Path) -> anyhow::Error {
    use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
    let hint = match e.kind() {
        StorageFull | QuotaExceeded | FileTooLarge => {
            " (no room for it: the disk is full, a quota or a file-size limit was reached)"
        }
        _ => "",
    };
    anyhow::Error::new(e).context(format!("writing {}{hint}", path.display()))
}

/// Writes `dest` atomically through `write`, which receives the temporary path to write;
/// `links` name further paths the finished file should also have (hard links, or copies where
/// the file system has none), made after it is on disk and before it replaces `dest`.
pub fn write_linked_with(dest: &Path, links: &[PathBuf], write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(dest);
    let result = write(&tmp).and_then(|()| {
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).with_context(|| format!("syncing {}", tmp.display()))?;
        for link in links {
            match std::fs::remove_file(link) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("replacing {}", link.display()));
                }
                _ => {}
            }
            if std::fs::hard_link(&tmp, link).is_err() {
                std::fs::copy(&tmp, link).map_err(|e| explain(e, link))?;
                std::fs::File::open(link)
                    .and_then(|f| f.sync_all())
                    .with_context(|| format!("syncing {}", link.display()))?;
            }
            sync_dir(link.parent().unwrap_or(Path::new("")))?;
        }
        std::fs::rename(&tmp, dest).with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
        sync_dir(dest.parent().unwrap_or(Path::new("")))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `dest` atomically through `write`, which receives the temporary path to write.
pub fn write_with(dest: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    write_linked_with(dest, &[], write)
}

/// Writes `bytes` to `dest` atomically (and to `links`, see [`write_linked_with`]).
pub fn write_bytes_linked(dest: &Path, bytes: &[u8], links: &[PathBuf]) -> Result<()> {
    write_linked_with(dest, links, |tmp| std::fs::write(tmp, bytes).map_err(|e| explain(e, tmp)))
}

/// Writes `bytes` to `dest` atomically.
pub fn write_bytes(dest: &Path, bytes: &[u8]) -> Result<()> {
    write_bytes_linked(dest, bytes, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_nothing_on_failure() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("out.bin");
        write_bytes(&dest, b"first").unwrap();
        write_bytes(&dest, b"second").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"second");
        let err = write_with(&dest, |tmp| {
            std::fs::write(tmp, b"partial")?;
            anyhow::bail!("disk full")
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&dest).unwrap(), b"second", "old file intact");
        let leftovers: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn linked_copies_hold_the_same_bytes_and_are_replaced() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("latest.bin");
        let keep = d.path().join("kept.bin");
        write_bytes_linked(&dest, b"one", std::slice::from_ref(&keep)).unwrap();
        write_bytes_linked(&dest, b"two", std::slice::from_ref(&keep)).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"two");
        assert_eq!(std::fs::read(&keep).unwrap(), b"two");
    }
}
