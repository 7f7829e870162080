//! Writing WebDataset shards (`selfsup pack`): which images go into which shard, and one shard's
//! tar bytes. The files are copied as they are (no re-encoding); a sample is `KEY.EXT` with, for
//! a labelled set, `KEY.cls` holding the label as decimal text, the layout [`crate::webdataset`]
//! and the `webdataset` package read. Headers are plain ustar with a zero time and owner, so the
//! same images and seed give the same bytes.

use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::PathBuf;

use crate::webdataset::TAR_BLOCK;

/// One image to pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackItem {
    pub source: PathBuf,
    pub label: Option<u32>,
    /// The file's size in bytes.
    pub len: u64,
}

/// The bytes a member of `len` bytes takes in a tar file: its header and its padded data.
fn member_bytes(len: u64) -> u64 {
    TAR_BLOCK + len.div_ceil(TAR_BLOCK) * TAR_BLOCK
}

/// The bytes `item` takes in a shard.
pub fn sample_bytes(item: &PackItem) -> u64 {
    member_bytes(item.len) + if item.label.is_some() { member_bytes(16) } else { 0 }
}

/// Consecutive runs of `items`, each shard at most `shard_size` bytes (its two end-of-archive
/// blocks included) unless a single sample is larger, which then has a shard of its own.
pub fn plan_shards(items: &[PackItem], shard_size: u64) -> Vec<Range<usize>> {
    let mut shards = Vec::new();
    let (mut start, mut bytes) = (0, 2 * TAR_BLOCK);
    for (i, item) in items.iter().enumerate() {
        let b = sample_bytes(item);
        if i > start && bytes + b > shard_size {
            shards.push(start..i);
            (start, bytes) = (i, 2 * TAR_BLOCK);
        }
        bytes += b;
    }
    if start < items.len() {
        shards.push(start..items.len());
    }
    shards
}

/// The sample key of the `index`-th packed image.
pub fn key(index: usize) -> String {
    format!("{index:09}")
}

/// The extension an image keeps in its shard: its own, lower-cased, with the JPEG spellings
/// made `jpg` (what `webdataset`'s decoders look for).
pub fn member_extension(source: &std::path::Path) -> String {
    let ext = source.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "jpeg" | "jpe" | "jfif" => "jpg".into(),
        "tif" => "tiff".into(),
        _ => ext,
    }
}

fn header(path: &str, len: u64) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(len);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// Writes one shard holding `items`, the first of which is packed image number `first`. A
/// source file whose size changed since it was listed is an error naming it (the shard plan
/// would no longer hold).
pub fn write_shard(out: impl Write, items: &[PackItem], first: usize) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    for (k, item) in items.iter().enumerate() {
        let key = key(first + k);
        let file = std::fs::File::open(&item.source)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", item.source.display())))?;
        let now = file.metadata()?.len();
        if now != item.len {
            return Err(io::Error::other(format!(
                "{}: changed while packing ({} bytes when listed, {now} now)",
                item.source.display(),
                item.len
            )));
        }
        let name = format!("{key}.{}", member_extension(&item.source));
        tar.append(&header(&name, item.len)?, file.take(item.len))?;
        if let Some(label) = item.label {
            let text = label.to_string();
            tar.append(&header(&format!("{key}.cls"), text.len() as u64)?, text.as_bytes())?;
        }
    }
    tar.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(len: u64, label: Option<u32>) -> PackItem {
        PackItem { source: PathBuf::new(), label, len }
    }

    #[test]
    fn member_sizes_follow_the_tar_block_layout() {
        assert_eq!(member_bytes(0), 512);
        assert_eq!(member_bytes(1), 1024);
        assert_eq!(member_bytes(512), 1024);
        assert_eq!(member_bytes(513), 1536);
        assert_eq!(sample_bytes(&item(1000, Some(3))), 512 + 1024 + 1024);
    }

    #[test]
    fn shards_fill_up_to_the_size_and_an_oversized_sample_stands_alone() {
        // Each sample takes 2,048 bytes: a 500-byte image (header and one block) and its label.
        let items: Vec<PackItem> = (0..10).map(|_| item(500, Some(0))).collect();
        // 1,024 end blocks + 4 samples = 9,216 ≤ 9,216; a fifth would not fit.
        assert_eq!(plan_shards(&items, 9216), vec![0..4, 4..8, 8..10]);
        assert_eq!(plan_shards(&items, 100), (0..10).map(|i| i..i + 1).collect::<Vec<_>>());
        assert_eq!(plan_shards(&items, u64::MAX), vec![0..10]);
        assert!(plan_shards(&[], 9216).is_empty());
    }
}
