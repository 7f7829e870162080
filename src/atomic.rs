//! Atomic file writes: write to a temporary file in the destination's folder, flush it to
//! disk, then rename it over the destination, so a crash never leaves a half-written file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The temporary path used while writing `dest`.
fn temp_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `dest` atomically through `write`, which receives the temporary path to write.
pub fn write_with(dest: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(dest);
    let result = write(&tmp).and_then(|()| {
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, dest).with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `dest` atomically.
pub fn write_bytes(dest: &Path, bytes: &[u8]) -> Result<()> {
    write_with(dest, |tmp| std::fs::write(tmp, bytes).with_context(|| format!("writing {}", tmp.display())))
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
}
