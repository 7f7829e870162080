//! WebDataset shards: tar files whose members sharing a key (the member path up to the first
//! dot of its file name, as the `webdataset` package splits it) form one sample.
//!
//! A dataset path is read as shards when it is a `.tar` file, a brace pattern
//! (`shards/train-{000000..000146}.tar`, `{a,b}` lists, several braces multiply), or a folder
//! whose top level holds `.tar` files and neither images nor sub-folders. A sample's image is its
//! first member with an image extension ([`IMAGE_EXTENSIONS`]); its label, the integer in its
//! `.cls` member. The set is labelled when every sample has a `.cls`; the class names come from
//! `classes.txt` beside the shards (one name per line, in label order; `selfsup pack` writes it),
//! or are the label numbers (up to [`MAX_UNNAMED_CLASSES`]). Other members (`.json`, `.txt`
//! captions, …) are ignored.
//!
//! Opening reads the tar headers only (seeking over the data) and keeps each image's place in its
//! shard, so a shard set is random-access like a folder: its length is known, an epoch's order is
//! a pure function of the seed (shards shuffled, then a shuffle buffer, see
//! `src/train/loader.rs`), and a run resumes mid-epoch exactly. Damage is skipped and counted,
//! never fatal: a shard truncated or corrupt from some member on keeps the samples before it, a
//! sample without an image or with a bad `.cls` is left out, each with a warning naming the
//! shard and the member.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::dataset::Skipped;
use crate::decode::one_line;
use crate::error::DatasetError;
use crate::scan::{IMAGE_EXTENSIONS, has_image_extension};

/// A tar file's unit: every header and every member's padded data is a whole number of these,
/// and the archive ends with two zero blocks.
pub const TAR_BLOCK: u64 = 512;

/// Without `classes.txt` the classes are named by their numbers, up to this many.
pub const MAX_UNNAMED_CLASSES: u32 = 100_000;

/// Where one sample's image lies: which shard, and which bytes of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub shard: u32,
    pub offset: u64,
    pub len: u64,
    /// The member's path inside the tar file (for messages).
    pub name: Box<str>,
}

/// One sample found in the shards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSample {
    pub image: Member,
    pub label: Option<u32>,
}

/// Everything the headers of a shard set say.
#[derive(Clone, Debug, Default)]
pub struct ShardIndex {
    pub shards: Vec<PathBuf>,
    /// In shard order, then member order.
    pub samples: Vec<ShardSample>,
    /// Class names in label order; empty when the set is unlabelled.
    pub classes: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// When some samples have a `.cls` and others not (so the set is read unlabelled): how many
    /// lack one, of how many.
    pub without_label: Option<(usize, usize)>,
}

/// The shard files `path` names, or `None` when it is not a shard set (see the module docs).
pub fn shard_paths(path: &Path) -> Result<Option<Vec<PathBuf>>, DatasetError> {
    let text = path.to_string_lossy();
    if text.contains('{') {
        let files = expand_braces(&text).map_err(|reason| DatasetError::format(path, reason))?;
        let files: Vec<PathBuf> = files.into_iter().map(PathBuf::from).collect();
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            return Err(DatasetError::format(
                missing,
                format!("no such shard file (from the pattern {text}, {} files)", files.len()),
            ));
        }
        return Ok(Some(files));
    }
    if path.is_file() {
        return Ok(is_tar(path).then(|| vec![path.to_path_buf()]));
    }
    if !path.is_dir() {
        return Ok(None);
    }
    let mut tars = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| DatasetError::io(path, e))? {
        let entry = entry.map_err(|e| DatasetError::io(path, e))?;
        let p = entry.path();
        if entry.file_name().to_str().is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        if p.is_dir() || has_image_extension(&p) {
            return Ok(None);
        }
        if is_tar(&p) {
            tars.push(p);
        }
    }
    tars.sort();
    Ok((!tars.is_empty()).then_some(tars))
}

fn is_tar(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("tar"))
}

/// Expands `{a,b}` lists and `{000..146}` numeric ranges (zero-padded as written), every brace
/// in turn, the way the `braceexpand` package that `webdataset` uses does for these forms.
pub fn expand_braces(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('{') else {
        return if pattern.contains('}') {
            Err(format!("unmatched '}}' in {pattern}"))
        } else {
            Ok(vec![pattern.into()])
        };
    };
    let close = pattern[open..].find('}').map(|c| open + c).ok_or_else(|| format!("unmatched '{{' in {pattern}"))?;
    let body = &pattern[open + 1..close];
    if body.contains('{') {
        return Err(format!("nested braces are not supported in {pattern}"));
    }
    let choices: Vec<String> = if let Some((a, b)) = body.split_once("..") {
        let bad = || format!("{{{body}}} in {pattern}: a range is {{FIRST..LAST}} of non-negative integers");
        let (lo, hi): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if lo > hi {
            return Err(format!("{{{body}}} in {pattern}: the range runs backwards"));
        }
        if hi - lo >= 10_000_000 {
            return Err(format!("{{{body}}} in {pattern}: more than 10,000,000 shards"));
        }
        let width = if a.starts_with('0') || b.starts_with('0') { a.len().max(b.len()) } else { 0 };
        (lo..=hi).map(|n| format!("{n:0width$}")).collect()
    } else {
        body.split(',').map(str::to_string).collect()
    };
    let rest = expand_braces(&pattern[close + 1..])?;
    let head = &pattern[..open];
    if head.contains('}') {
        return Err(format!("unmatched '}}' in {pattern}"));
    }
    Ok(choices.iter().flat_map(|c| rest.iter().map(move |r| format!("{head}{c}{r}"))).collect())
}

/// `shard.tar:member`, how messages name a member.
pub fn member_label(shard: &Path, member: &str) -> PathBuf {
    PathBuf::from(format!("{}:{member}", shard.display()))
}

/// Splits a member path into the sample key and the lower-case extension, as `webdataset` does:
/// the key is everything up to the first dot of the file name. `None` for names without a dot.
fn key_and_extension(name: &str) -> Option<(&str, String)> {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    let dot = name[slash..].find('.')? + slash;
    if dot == slash {
        return None; // a hidden file (`._0001.jpg` from macOS tar): no key
    }
    Some((&name[..dot], name[dot + 1..].to_ascii_lowercase()))
}

/// A member being grouped into its sample.
struct Pending {
    key: String,
    image: Option<Member>,
    label: Result<Option<u32>, String>,
    seen: BTreeSet<String>,
}

/// Reads the headers of every shard (in parallel) into one index. Never fails for a damaged
/// shard: what cannot be read is in `skipped`.
pub fn index_shards(shards: Vec<PathBuf>, on_shard: &(dyn Fn() + Sync)) -> ShardIndex {
    use rayon::prelude::*;
    let per_shard: Vec<(Vec<ShardSample>, Vec<Skipped>)> = shards
        .par_iter()
        .enumerate()
        .map(|(i, path)| {
            let out = index_one(i as u32, path);
            on_shard();
            out
        })
        .collect();
    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    for (s, k) in per_shard {
        samples.extend(s);
        skipped.extend(k);
    }
    let unlabelled = samples.iter().filter(|s| s.label.is_none()).count();
    let labelled = !samples.is_empty() && unlabelled == 0;
    let without_label = (unlabelled > 0 && unlabelled < samples.len()).then_some((unlabelled, samples.len()));
    let classes = if labelled {
        let (n, names) = match class_names(&shards[0]) {
            Some(names) => (names.len() as u32, Some(names)),
            None => (MAX_UNNAMED_CLASSES, None),
        };
        samples.retain(|s| {
            let label = s.label.unwrap_or(0);
            if label < n {
                return true;
            }
            let reason = match names {
                Some(_) => format!("label {label} is not among the {n} classes of classes.txt"),
                None => format!("label {label} is over {MAX_UNNAMED_CLASSES} classes with no classes.txt to name them"),
            };
            skipped.push(Skipped { path: member_label(&shards[s.image.shard as usize], &s.image.name), reason });
            false
        });
        names.unwrap_or_else(|| {
            let max = samples.iter().filter_map(|s| s.label).max().unwrap_or(0);
            (0..=max).map(|l| l.to_string()).collect()
        })
    } else {
        for s in &mut samples {
            s.label = None;
        }
        Vec::new()
    };
    ShardIndex { shards, samples, classes, skipped, without_label }
}

/// `classes.txt` beside the first shard, one class name per line.
fn class_names(first_shard: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(first_shard.parent()?.join("classes.txt")).ok()?;
    let names: Vec<String> = text.lines().map(str::to_string).collect();
    (!names.is_empty()).then_some(names)
}

fn index_one(shard: u32, path: &Path) -> (Vec<ShardSample>, Vec<Skipped>) {
    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    let skip = |skipped: &mut Vec<Skipped>, member: &str, reason: String| {
        skipped.push(Skipped { path: member_label(path, member), reason });
    };
    let (file_len, file) = match File::open(path).and_then(|f| Ok((f.metadata()?.len(), f))) {
        Ok(opened) => opened,
        Err(e) => {
            skipped.push(Skipped { path: path.to_path_buf(), reason: one_line(format!("unreadable shard: {e}")) });
            return (samples, skipped);
        }
    };
    let finish = |p: Pending, samples: &mut Vec<ShardSample>, skipped: &mut Vec<Skipped>| match (p.image, p.label) {
        (Some(image), Ok(label)) => samples.push(ShardSample { image, label }),
        (Some(image), Err(reason)) => skip(skipped, &image.name, reason),
        (None, _) => {
            let has: Vec<&str> = p.seen.iter().map(String::as_str).collect();
            skip(skipped, &p.key, format!("sample without an image member (it has: {})", has.join(", ")));
        }
    };
    let mut archive = tar::Archive::new(BufReader::new(file));
    let entries = match archive.entries_with_seek() {
        Ok(e) => e,
        Err(e) => {
            skipped
                .push(Skipped { path: path.to_path_buf(), reason: one_line(format!("not a readable tar file: {e}")) });
            return (samples, skipped);
        }
    };
    let mut pending: Option<Pending> = None;
    let mut last = String::from("(the first member)");
    // Where the data of the last member read ends (tar pads each member to a whole block).
    let mut end = Some(0);
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                skip(
                    &mut skipped,
                    &format!("after {last}"),
                    one_line(format!("shard damaged or cut short from here on: {e}")),
                );
                end = None;
                break;
            }
        };
        // Control characters (a newline in a damaged name) are escaped: messages stay one line.
        let name: String = String::from_utf8_lossy(&entry.path_bytes())
            .chars()
            .flat_map(|c| if c.is_control() { c.escape_debug().collect::<Vec<_>>() } else { vec![c] })
            .collect();
        let (offset, len) = (entry.raw_file_position(), entry.size());
        if offset.checked_add(len).is_none_or(|end| end > file_len) {
            skip(
                &mut skipped,
                &name,
                format!("shard cut short: the member declares {len} bytes at {offset}, the file has {file_len}"),
            );
            end = None;
            break;
        }
        // Within the file (checked above), so the padded end cannot overflow.
        end = Some(offset + len.div_ceil(TAR_BLOCK) * TAR_BLOCK);
        if !entry.header().entry_type().is_file() {
            continue;
        }
        last.clone_from(&name);
        let Some((key, ext)) = key_and_extension(&name) else { continue };
        if pending.as_ref().is_none_or(|p| p.key != key) {
            if let Some(p) = pending.take() {
                finish(p, &mut samples, &mut skipped);
            }
            pending = Some(Pending { key: key.to_string(), image: None, label: Ok(None), seen: BTreeSet::new() });
        }
        let p = pending.as_mut().expect("set above");
        if ext == "cls" {
            p.label = read_label(&mut entry, len);
        } else if p.image.is_none() && IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            p.image = Some(Member { shard, offset, len, name: name.clone().into() });
        }
        p.seen.insert(ext);
    }
    if let Some(p) = pending.take() {
        finish(p, &mut samples, &mut skipped);
    }
    // A tar file ends with two zero blocks; the reader stops quietly at the end of the file
    // without them, so a shard cut at a member boundary would otherwise lose its tail unseen.
    if end.is_some_and(|e| e.saturating_add(2 * TAR_BLOCK) > file_len) {
        skipped.push(Skipped {
            path: path.to_path_buf(),
            reason: if samples.is_empty() && end == Some(0) {
                "shard cut short? it ends without a member or tar's end-of-archive blocks".to_string()
            } else {
                format!("shard cut short? it ends after {last} without tar's end-of-archive blocks")
            },
        });
    }
    (samples, skipped)
}

fn read_label(entry: &mut impl Read, len: u64) -> Result<Option<u32>, String> {
    if len > 32 {
        return Err(format!("a .cls member of {len} bytes is not a label"));
    }
    let mut text = String::new();
    entry.read_to_string(&mut text).map_err(|e| format!("unreadable .cls member: {e}"))?;
    text.trim()
        .parse::<u32>()
        .map(Some)
        .map_err(|_| format!("the .cls member holds {:?}, not a class number", text.trim()))
}

/// The bytes of one member, as a seekable reader of exactly its length.
pub struct MemberReader {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl MemberReader {
    pub fn open(shard: &Path, member: &Member) -> io::Result<MemberReader> {
        let mut file = File::open(shard)?;
        file.seek(SeekFrom::Start(member.offset))?;
        Ok(MemberReader { file, start: member.offset, len: member.len, pos: 0 })
    }

    /// The whole member.
    pub fn read_all(mut self) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0; self.len as usize];
        self.file.read_exact(&mut bytes).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::other("the shard is shorter than when opened")
            } else {
                e
            }
        })?;
        Ok(bytes)
    }
}

impl Read for MemberReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = (self.len - self.pos.min(self.len)) as usize;
        let want = buf.len().min(left);
        let n = self.file.read(&mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for MemberReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the member"))?;
        self.file.seek(SeekFrom::Start(self.start + target))?;
        self.pos = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_expand_lists_and_zero_padded_ranges_in_order() {
        assert_eq!(expand_braces("a/s-{000..002}.tar").unwrap(), ["a/s-000.tar", "a/s-001.tar", "a/s-002.tar"]);
        assert_eq!(expand_braces("{x,y}-{8..10}").unwrap(), ["x-8", "x-9", "x-10", "y-8", "y-9", "y-10"]);
        assert_eq!(expand_braces("plain.tar").unwrap(), ["plain.tar"]);
        for bad in ["s-{1..x}.tar", "s-{3..1}.tar", "s-{0..2.tar", "s-0}.tar", "{a{b}}"] {
            let e = expand_braces(bad).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn keys_end_at_the_first_dot_of_the_file_name() {
        assert_eq!(key_and_extension("dir.v1/0001.seg.PNG"), Some(("dir.v1/0001", "seg.png".to_string())));
        assert_eq!(key_and_extension("0001.jpg"), Some(("0001", "jpg".to_string())));
        assert_eq!(key_and_extension("dir/README"), None);
        assert_eq!(key_and_extension("dir/._0001.jpg"), None);
    }
}
