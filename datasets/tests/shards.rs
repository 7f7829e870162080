//! WebDataset shards as a dataset: packed from a folder they give the folder's images and labels
//! (cached and streaming, bit for bit), found as a folder, a file or a brace pattern; damaged
//! shards, non-image members, samples without an image and bad labels are counted skips naming
//! the shard and member. The shards are written here by `pack::write_shard` or by hand with the
//! `tar` crate.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};
use selfsup_datasets::pack::{PackItem, plan_shards, write_shard};
use selfsup_datasets::{LoadOptions, SourceKind, open};

fn quiet() -> LoadOptions {
    LoadOptions { verbose: false, ..LoadOptions::default() }
}

fn streaming() -> LoadOptions {
    LoadOptions { cache_limit: 0, ..quiet() }
}

fn encoded(seed: u32, format: ImageFormat) -> Vec<u8> {
    let img = DynamicImage::ImageRgb8(ImageBuffer::from_fn(12 + seed % 5, 9, |x, y| {
        Rgb([(x * 20 + seed) as u8, (y * 25) as u8, (seed * 40) as u8])
    }));
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, format).unwrap();
    buf.into_inner()
}

/// A labelled folder `root/classN/i.png|jpg` of `n` images over 3 classes; returns its items
/// in a fixed mixed order.
fn folder(root: &Path, n: u32) -> Vec<PackItem> {
    (0..n)
        .map(|i| {
            let (format, ext) = if i % 2 == 0 { (ImageFormat::Png, "png") } else { (ImageFormat::Jpeg, "JPEG") };
            let path = root.join(format!("class{}", i % 3)).join(format!("{i:02}.{ext}"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, encoded(i, format)).unwrap();
            let len = std::fs::metadata(&path).unwrap().len();
            PackItem { source: path, label: Some(i % 3), len }
        })
        .collect()
}

/// Packs `items` into `out` in shards of at most `size` bytes; returns the shard paths.
fn pack(items: &[PackItem], out: &Path, size: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(out).unwrap();
    plan_shards(items, size)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let path = out.join(format!("shard-{i:06}.tar"));
            let mut bytes = Vec::new();
            write_shard(&mut bytes, &items[r.clone()], r.start).unwrap();
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect()
}

/// Every image of a dataset by name, with its label and pixels.
fn contents(ds: &selfsup_datasets::Dataset) -> Vec<(Option<u32>, u32, u32, Vec<u8>)> {
    (0..ds.len())
        .map(|i| {
            let img = ds.image(i);
            (ds.label(i), img.width, img.height, img.pixels)
        })
        .collect()
}

#[test]
fn packed_shards_give_the_folders_images_and_labels_cached_and_streaming() {
    let d = tempfile::tempdir().unwrap();
    let items = folder(&d.path().join("images"), 14);
    let shards = pack(&items, &d.path().join("shards"), 3000);
    assert!(shards.len() >= 3, "several shards: {}", shards.len());
    std::fs::write(d.path().join("shards/classes.txt"), "cat\ndog\nbird\n").unwrap();
    let ds = open(&d.path().join("shards"), &quiet()).unwrap();
    assert_eq!(ds.kind(), SourceKind::WebDataset);
    assert_eq!(ds.classes(), ["cat", "dog", "bird"]);
    assert!(ds.skipped().is_empty(), "{:?}", ds.skipped());
    // In packing order: sample k is items[k], decoded exactly as the folder decodes the file.
    let folder_ds = open(&d.path().join("images"), &quiet()).unwrap();
    let by_path: BTreeMap<PathBuf, usize> =
        (0..folder_ds.len()).map(|i| (folder_ds.path(i).unwrap().to_path_buf(), i)).collect();
    let want: Vec<_> = items
        .iter()
        .map(|it| {
            let img = folder_ds.image(by_path[&it.source]);
            (it.label, img.width, img.height, img.pixels)
        })
        .collect();
    assert_eq!(contents(&ds), want);
    let streamed = open(&d.path().join("shards"), &streaming()).unwrap();
    assert!(streamed.is_streaming());
    assert_eq!(contents(&streamed), want, "streaming from the shards is bit for bit the cache");
    // Names and shards: `shard.tar:key.ext`, shard indices in file order, non-decreasing.
    assert!(ds.name(0).ends_with("shard-000000.tar:000000000.png"), "{}", ds.name(0));
    assert!(ds.name(1).ends_with(":000000001.jpg"), "{}", ds.name(1));
    let shard_ids: Vec<u32> = (0..ds.len()).map(|i| ds.shard(i).unwrap()).collect();
    assert!(shard_ids.windows(2).all(|w| w[0] <= w[1]) && shard_ids.last() == Some(&(shards.len() as u32 - 1)));
    assert_eq!(folder_ds.shard(0), None);
    assert!(ds.path(0).is_none());

    // The same set as a brace pattern, as one .tar file, and with a limit.
    let pattern = d.path().join(format!("shards/shard-{{000000..{:06}}}.tar", shards.len() - 1));
    assert_eq!(contents(&open(&pattern, &quiet()).unwrap()), want);
    let one = open(&shards[0], &quiet()).unwrap();
    assert_eq!(contents(&one), want[..one.len()]);
    let limited = open(&d.path().join("shards"), &LoadOptions { limit: Some(6), ..quiet() }).unwrap();
    assert_eq!(limited.len(), 6);

    // Without classes.txt the classes are the label numbers.
    std::fs::remove_file(d.path().join("shards/classes.txt")).unwrap();
    assert_eq!(open(&d.path().join("shards"), &quiet()).unwrap().classes(), ["0", "1", "2"]);
}

#[test]
fn a_pattern_naming_a_missing_shard_or_a_malformed_one_is_a_one_line_error() {
    let d = tempfile::tempdir().unwrap();
    let items = folder(&d.path().join("images"), 4);
    pack(&items, &d.path().join("shards"), u64::MAX);
    let e = open(&d.path().join("shards/shard-{000000..000002}.tar"), &quiet()).unwrap_err().to_string();
    assert!(e.contains("shard-000001.tar") && e.contains("no such shard file") && !e.contains('\n'), "{e}");
    let e = open(&d.path().join("shards/shard-{000000..oops}.tar"), &quiet()).unwrap_err().to_string();
    assert!(e.contains("{000000..oops}") && e.contains("a range is"), "{e}");
}

/// Appends a member by hand.
fn append(tar: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, name, data).unwrap();
}

#[test]
fn damaged_shards_and_odd_samples_are_counted_skips_naming_shard_and_member() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("shards");
    std::fs::create_dir_all(&dir).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "a/0001.jpg", &encoded(1, ImageFormat::Jpeg));
    append(&mut tar, "a/0001.cls", b"1\n");
    append(&mut tar, "a/0001.json", b"{}"); // extra members are ignored
    append(&mut tar, "a/0002.txt", b"a caption and no image");
    append(&mut tar, "a/0003.jpg", b"this is not a JPEG");
    append(&mut tar, "a/0003.cls", b"0");
    append(&mut tar, "a/0004.png", &encoded(4, ImageFormat::Png));
    append(&mut tar, "a/0004.cls", b"cat");
    append(&mut tar, "a/._0005.png", b"macOS resource fork");
    append(&mut tar, "a/0006.webp", &encoded(6, ImageFormat::WebP));
    append(&mut tar, "a/0006.cls", b"0");
    std::fs::write(dir.join("good.tar"), tar.into_inner().unwrap()).unwrap();
    // A second shard cut in the middle of its second image.
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "b/0001.png", &encoded(7, ImageFormat::Png));
    append(&mut tar, "b/0001.cls", b"1");
    append(&mut tar, "b/0002.png", &encoded(8, ImageFormat::Png));
    append(&mut tar, "b/0002.cls", b"0");
    let mut bytes = tar.into_inner().unwrap();
    let cut = 512 + 512 * (encoded(7, ImageFormat::Png).len().div_ceil(512)) + 1024 + 700;
    bytes.truncate(cut);
    std::fs::write(dir.join("truncated.tar"), bytes).unwrap();
    std::fs::write(dir.join("empty.tar"), b"").unwrap();

    for opts in [quiet(), streaming()] {
        let ds = open(&dir, &opts).unwrap();
        let names: Vec<String> = (0..ds.len()).map(|i| ds.name(i).rsplit('/').next().unwrap().to_string()).collect();
        assert_eq!(names, ["0001.jpg", "0006.webp", "0001.png"], "{:?}", ds.skipped());
        assert_eq!((0..ds.len()).map(|i| ds.label(i).unwrap()).collect::<Vec<_>>(), [1, 0, 1]);
        let skipped: Vec<(String, &str)> =
            ds.skipped().iter().map(|s| (s.path.display().to_string(), s.reason.as_str())).collect();
        let has = |member: &str, reason: &str| {
            skipped.iter().any(|(p, r)| p.ends_with(member) && r.contains(reason))
                || panic!("no skip of {member} for {reason:?} in {skipped:?}")
        };
        assert!(has("good.tar:a/0002", "without an image member (it has: txt)"));
        assert!(has("good.tar:a/0003.jpg", "")); // not decodable
        assert!(has("good.tar:a/0004.png", "holds \"cat\", not a class number"));
        assert!(has("truncated.tar:b/0002.png", "shard cut short"));
        assert!(has("empty.tar", "without a member or tar's end-of-archive blocks"));
        assert_eq!(skipped.len(), 5, "{skipped:?}");
        assert!(skipped.iter().all(|(_, r)| !r.contains('\n')));
    }
}

#[test]
fn a_labelled_set_needs_every_label_and_classes_txt_bounds_them() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("shards");
    std::fs::create_dir_all(&dir).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "0001.png", &encoded(1, ImageFormat::Png));
    append(&mut tar, "0001.cls", b"0");
    append(&mut tar, "0002.png", &encoded(2, ImageFormat::Png));
    append(&mut tar, "0002.cls", b"5");
    append(&mut tar, "0003.png", &encoded(3, ImageFormat::Png));
    append(&mut tar, "0003.cls", b"1");
    std::fs::write(dir.join("s.tar"), tar.into_inner().unwrap()).unwrap();
    std::fs::write(dir.join("classes.txt"), "zero\none\n").unwrap();
    let ds = open(&dir, &quiet()).unwrap();
    assert_eq!((ds.len(), ds.classes()), (2, &["zero".to_string(), "one".to_string()][..]));
    assert!(ds.skipped()[0].reason.contains("label 5 is not among the 2 classes of classes.txt"), "{:?}", ds.skipped());
    // One sample without a .cls: the set is unlabelled, nothing is skipped.
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "0004.png", &encoded(4, ImageFormat::Png));
    std::fs::write(dir.join("t.tar"), tar.into_inner().unwrap()).unwrap();
    let ds = open(&dir, &quiet()).unwrap();
    assert!(!ds.is_labeled() && ds.len() == 4 && ds.skipped().is_empty());
    let index = selfsup_datasets::webdataset::index_shards(vec![dir.join("s.tar"), dir.join("t.tar")], &|| ());
    assert_eq!(index.without_label, Some((1, 4)), "the mix is reported (open warns with it)");
}

#[test]
fn a_folder_with_tars_and_images_is_an_image_folder() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.png"), encoded(1, ImageFormat::Png)).unwrap();
    std::fs::write(d.path().join("backup.tar"), b"").unwrap();
    assert_eq!(open(d.path(), &quiet()).unwrap().kind(), SourceKind::ImageFolder);
}
