//! Opening datasets the way a user's folders look: every supported format and colour type,
//! and every kind of bad file, generated here in a temporary folder.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, Rgba};
use selfsup_datasets::{DecodeOptions, LoadOptions, SourceKind, open};

fn quiet() -> LoadOptions {
    LoadOptions { verbose: false, ..LoadOptions::default() }
}

fn rgb(w: u32, h: u32, seed: u8) -> DynamicImage {
    DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| {
        Rgb([(x as u8).wrapping_mul(seed), (y as u8).wrapping_mul(3), seed])
    }))
}

fn save(img: &DynamicImage, path: &Path, fmt: ImageFormat) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, fmt).unwrap();
    std::fs::write(path, buf.into_inner()).unwrap();
}

/// A PNG whose header claims `w` × `h` pixels but holds no pixel data (a decompression bomb's
/// first bytes: a tiny file announcing a huge image).
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut body = kind.to_vec();
        body.extend(data);
        let mut crc = flate2::Crc::new();
        crc.update(&body);
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend(body);
        c.extend(crc.sum().to_be_bytes());
        c
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &ihdr));
    out.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    out.extend(chunk(b"IEND", &[]));
    out
}

#[test]
fn every_format_and_colour_type_loads_as_rgb() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    save(&rgb(20, 10, 5), &r.join("a.png"), ImageFormat::Png);
    save(&rgb(20, 10, 5), &r.join("b.JPG"), ImageFormat::Jpeg);
    save(&rgb(20, 10, 5), &r.join("c.bmp"), ImageFormat::Bmp);
    save(&rgb(20, 10, 5), &r.join("d.gif"), ImageFormat::Gif);
    save(&rgb(20, 10, 5), &r.join("e.webp"), ImageFormat::WebP);
    save(&rgb(20, 10, 5), &r.join("f.tiff"), ImageFormat::Tiff);
    let gray = DynamicImage::ImageLuma8(ImageBuffer::from_fn(4, 3, |x, _| Luma([x as u8 * 60])));
    save(&gray, &r.join("g_gray.png"), ImageFormat::Png);
    let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_fn(4, 3, |_, _| Rgba([10, 20, 30, 0])));
    save(&rgba, &r.join("h_alpha.png"), ImageFormat::Png);
    let deep = DynamicImage::ImageRgb16(ImageBuffer::from_fn(4, 3, |_, _| Rgb([65535u16, 32896, 0])));
    save(&deep, &r.join("i_16bit.png"), ImageFormat::Png);
    // A PNG with a .jpg name decodes by content.
    save(&rgb(6, 6, 1), &r.join("j_png_named.jpg"), ImageFormat::Png);
    // CMYK JPEG (pure cyan).
    let mut cmyk = Vec::new();
    jpeg_encoder::Encoder::new(&mut cmyk, 100)
        .encode(&[255u8, 0, 0, 0].repeat(64), 8, 8, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    std::fs::write(r.join("k_cmyk.jpg"), cmyk).unwrap();

    let ds = open(r, &quiet()).unwrap();
    assert_eq!(ds.kind(), SourceKind::ImageFolder);
    assert!(!ds.is_labeled());
    assert_eq!(ds.len(), 11, "skipped: {:?}", ds.skipped());
    assert!(ds.skipped().is_empty());
    let by_name = |n: &str| (0..ds.len()).find(|&i| ds.path(i).unwrap().ends_with(n)).unwrap();
    for (i, name) in ["a.png", "c.bmp", "f.tiff"].iter().enumerate() {
        let img = ds.image(by_name(name));
        assert_eq!((img.width, img.height), (20, 10), "{name} #{i}");
        assert_eq!(img.pixels, rgb(20, 10, 5).to_rgb8().into_raw(), "{name} is lossless");
    }
    let g = ds.image(by_name("g_gray.png"));
    assert_eq!(&g.pixels[..6], &[0, 0, 0, 60, 60, 60]);
    let a = ds.image(by_name("h_alpha.png"));
    assert_eq!(&a.pixels[..3], &[10, 20, 30]);
    let deep = ds.image(by_name("i_16bit.png"));
    assert_eq!(&deep.pixels[..3], &[255, 128, 0]);
    let c = ds.image(by_name("k_cmyk.jpg"));
    let [r0, g0, b0] = [c.pixels[0], c.pixels[1], c.pixels[2]];
    assert!(r0 < 40 && g0 > 215 && b0 > 215, "cyan came out as {:?}", [r0, g0, b0]);
}

#[test]
fn bad_files_are_skipped_counted_and_named_and_good_ones_kept() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    for i in 0..5 {
        save(&rgb(16, 16, i), &r.join(format!("cat/{i}.png")), ImageFormat::Png);
        save(&rgb(16, 16, i + 9), &r.join(format!("dog/{i}.jpg")), ImageFormat::Jpeg);
    }
    std::fs::write(r.join("cat/zero.jpg"), b"").unwrap();
    std::fs::write(r.join("cat/text.jpg"), b"this is not an image at all\n").unwrap();
    std::fs::write(
        r.join("dog/garbage.png"),
        (0..3000u32).map(|i| (i.wrapping_mul(2654435761u32) >> 24) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    let mut jpg = Cursor::new(Vec::new());
    rgb(64, 64, 3).write_to(&mut jpg, ImageFormat::Png).unwrap();
    let png = jpg.into_inner();
    std::fs::write(r.join("dog/truncated.png"), &png[..png.len() / 2]).unwrap();
    std::fs::write(r.join("dog/bomb.png"), png_header_only(100_000, 100_000)).unwrap();
    std::fs::write(r.join("dog/notes.txt"), b"ignored quietly").unwrap();
    std::fs::write(r.join("cat/.DS_Store"), b"ignored quietly").unwrap();

    let ds = open(r, &quiet()).unwrap();
    assert_eq!(ds.classes(), &["cat".to_string(), "dog".to_string()]);
    assert_eq!(ds.len(), 10);
    let mut skipped: Vec<String> =
        ds.skipped().iter().map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    skipped.sort();
    assert_eq!(skipped, vec!["bomb.png", "garbage.png", "text.jpg", "truncated.png", "zero.jpg"]);
    let reason = |n: &str| ds.skipped().iter().find(|s| s.path.ends_with(n)).unwrap().reason.clone();
    assert!(reason("zero.jpg").contains("empty"), "{}", reason("zero.jpg"));
    assert!(reason("text.jpg").contains("not a recognised image format"));
    assert!(reason("bomb.png").contains("decompression bomb"), "{}", reason("bomb.png"));
    assert_eq!(ds.labels().iter().filter(|l| **l == Some(0)).count(), 5);
}

#[test]
fn missing_root_and_empty_dataset_are_errors_naming_the_path() {
    let d = tempfile::tempdir().unwrap();
    let e = open(&d.path().join("no_such_dir"), &quiet()).unwrap_err().to_string();
    assert!(e.contains("no_such_dir") && e.contains("no such file"), "{e}");
    std::fs::write(d.path().join("readme.md"), b"x").unwrap();
    let e = open(d.path(), &quiet()).unwrap_err().to_string();
    assert!(e.contains(&d.path().display().to_string()) && e.contains("no usable image"), "{e}");
    std::fs::write(d.path().join("broken.png"), b"nope").unwrap();
    let e = open(d.path(), &quiet()).unwrap_err().to_string();
    assert!(e.contains("all 1 image files were skipped"), "{e}");
    let e = open(&d.path().join("readme.md"), &quiet()).unwrap_err().to_string();
    assert!(e.contains("readme.md") && e.contains("not a dataset"), "{e}");
}

#[test]
fn load_size_shrinks_large_images_and_small_ones_are_kept() {
    let d = tempfile::tempdir().unwrap();
    save(&rgb(400, 300, 1), &d.path().join("big.png"), ImageFormat::Png);
    save(&rgb(3, 2, 1), &d.path().join("tiny.png"), ImageFormat::Png);
    let opts = LoadOptions { decode: DecodeOptions { load_size: Some(64), ..DecodeOptions::default() }, ..quiet() };
    let ds = open(d.path(), &opts).unwrap();
    let sizes: Vec<(u32, u32)> = (0..2).map(|i| ds.with_image(i, |w, h, _| (w, h))).collect();
    assert_eq!(sizes, vec![(85, 64), (3, 2)]);
}

#[test]
fn over_the_cache_limit_images_are_decoded_on_the_fly_identically() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..20u8 {
        save(&rgb(12, 10, i), &d.path().join(format!("c{}/{i}.png", i % 2)), ImageFormat::Png);
    }
    std::fs::write(d.path().join("c0/bad.png"), b"junk").unwrap();
    let cached = open(d.path(), &quiet()).unwrap();
    assert!(!cached.is_streaming());
    assert_eq!(cached.cached_bytes(), 20 * 12 * 10 * 3);
    assert!(cached.cache_allocated_bytes() as f64 <= 1.05 * cached.cached_bytes() as f64 + 64.0 * 24.0);
    let streamed = open(d.path(), &LoadOptions { cache_limit: 1000, ..quiet() }).unwrap();
    assert!(streamed.is_streaming());
    assert_eq!(streamed.len(), 20);
    assert_eq!(streamed.skipped().len(), 1);
    assert_eq!(streamed.labels(), cached.labels());
    for i in 0..20 {
        assert_eq!(streamed.image(i), cached.image(i));
    }
    // A file that breaks after opening is replaced by the next image, not a panic.
    std::fs::write(streamed.path(3).unwrap(), b"now broken").unwrap();
    assert_eq!(streamed.image(3), cached.image(4));
}

#[test]
fn limit_takes_a_stratified_subset() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..30u8 {
        let class = if i < 20 { "a" } else { "b" };
        save(&rgb(4, 4, i), &d.path().join(format!("{class}/{i:02}.png")), ImageFormat::Png);
    }
    let opts = LoadOptions { limit: Some(9), seed: 1, ..quiet() };
    let ds = open(d.path(), &opts).unwrap();
    assert_eq!(ds.len(), 9);
    assert_eq!(ds.labels().iter().filter(|l| **l == Some(0)).count(), 6);
    let again = open(d.path(), &opts).unwrap();
    assert_eq!((0..9).map(|i| ds.name(i)).collect::<Vec<_>>(), (0..9).map(|i| again.name(i)).collect::<Vec<_>>());
}

#[test]
fn truncated_jpeg_is_skipped() {
    let d = tempfile::tempdir().unwrap();
    let mut jpg = Cursor::new(Vec::new());
    rgb(64, 64, 3).write_to(&mut jpg, ImageFormat::Jpeg).unwrap();
    let bytes = jpg.into_inner();
    std::fs::write(d.path().join("half.jpg"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(d.path().join("ok.jpg"), &bytes).unwrap();
    let ds = open(d.path(), &quiet()).unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds.skipped().len(), 1, "{:?}", ds.skipped());
    assert!(ds.skipped()[0].path.ends_with("half.jpg"));
}

/// The reader of a streaming epoch's files: bounded in images and bytes, serves what it read
/// (the same pixels as reading on the spot), leaves to the worker what the worker asked for
/// first, and stops when dropped.
#[test]
fn read_ahead_is_bounded_and_serves_the_same_pixels() {
    use std::time::{Duration, Instant};
    let d = tempfile::tempdir().unwrap();
    for i in 0..40u8 {
        save(&rgb(16, 12, i), &d.path().join(format!("{i:02}.png")), ImageFormat::Png);
    }
    let ds = open(d.path(), &LoadOptions { cache_limit: 0, ..quiet() }).unwrap();
    let cached = open(d.path(), &quiet()).unwrap();
    assert!(cached.read_ahead(&[0, 1], 4, 1 << 20).is_none(), "nothing to read when cached");
    let order: Vec<usize> = (0..40).rev().collect();
    let reads = |ahead: &selfsup_datasets::ReadAhead, images: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while ahead.held().0 < images {
            assert!(Instant::now() < deadline, "the reader did not read {images} images in 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let wait_for = |ahead: &selfsup_datasets::ReadAhead, images: usize| {
        reads(ahead, images);
        std::thread::sleep(Duration::from_millis(50)); // time to overstep, were it unbounded
    };
    let ahead = ds.read_ahead(&order, 5, 1 << 20).unwrap();
    wait_for(&ahead, 5);
    assert_eq!(ahead.held().0, 5, "at most depth images");
    // A worker ahead of the reader (image 0 is read last) reads it itself; the reader skips it.
    let px = |ds: &selfsup_datasets::Dataset, i| {
        ds.with_image_read_ahead(i, &ahead, &mut |_, _| 1.0, |_, _, p, _| p.to_vec())
    };
    assert_eq!(px(&ds, 0), cached.image(0).pixels);
    for &i in &order[..39] {
        reads(&ahead, 1); // it reads in order, so what it holds starts with image i
        assert_eq!(px(&ds, i), cached.image(i).pixels, "image {i}");
    }
    assert_eq!(ahead.hits_and_misses(), (39, 1));
    assert_eq!(ahead.held(), (0, 0), "image 0 was not read again");
    drop(ahead);
    // The byte bound: one file's worth at most (plus the file that crossed it).
    let ahead = ds.read_ahead(&order, 100, 1).unwrap();
    wait_for(&ahead, 1);
    assert_eq!(ahead.held().0, 1);
    drop(ahead); // joins the reader while it waits
}
