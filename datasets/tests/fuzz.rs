//! Fuzzed readers of the datasets crate: mutated real files (bit flips, truncations, header
//! fields at extremes, huge declared sizes, inserted, deleted and duplicated runs) fed through
//! the public API to every reader: JPEG, PNG, WebP, TIFF, GIF and BMP decoding (directly and
//! through `open` on a folder, cached and streaming), CIFAR-10/100 binaries, and IDX files,
//! plain and gzipped, plus gzip bombs. Each input must load, or end as a counted skip or a
//! clear error; none may panic, hang or allocate past the bound derived from the configured
//! limits. The machinery (mutations, allocator, watchdog, runner) is in `fuzz_support`.
//!
//! `SELFSUP_FUZZ_CASES=N` runs N cases per reader instead of the default (a few thousand in a
//! release build, a tenth of that in a debug one); each reader prints how many it ran.

mod fuzz_support;

use std::io::{Cursor, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use fuzz_support::{Mutation, Outcome, Reader, apply_all, fuzz, measure, mib, mutations, serial};
use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};
use proptest::prelude::*;
use proptest::sample::Index;
use selfsup_datasets::decode::{decode_bytes, decode_bytes_planned};
use selfsup_datasets::{Dataset, DecodeOptions, LoadOptions, RgbImage8, SourceKind, open};

fn quiet() -> LoadOptions {
    LoadOptions { verbose: false, ..LoadOptions::default() }
}

/// A clear error: one non-empty line naming the file or folder it is about (here, all files
/// live in the folder `about`, so naming the file names it too).
fn clear_error(message: &str, about: &Path) -> Result<Outcome, String> {
    if message.trim().is_empty() || message.contains('\n') || !message.contains(&about.display().to_string()) {
        return Err(format!("unclear error (expected one line naming {}): {message:?}", about.display()));
    }
    Ok(Outcome::Refused)
}

// ------------------------------------------------------------------------------------------
// Images

/// The pixel limit while fuzzing: 1 MiP instead of the default 179 MP, so that the allocation
/// bound below is tight enough to mean something. (A 16×12 seed whose size fields now say
/// 0x7fff × 0x7fff must be refused by the limit, not decoded.)
const MAX_PIXELS: u64 = 1 << 20;

/// Peak allocation allowed for one image case. Each allowed pixel exists in a few copies at
/// most: the decoder's buffer (up to RGBA f32, 16 bytes a pixel, which is also the `max_alloc`
/// that `decode_bytes` hands the image crate), a rotated copy for the EXIF orientation, the
/// 3-byte RGB conversion, the resize's f32 intermediate and its output: under 64 bytes a
/// pixel. 32 MiB more covers the decoders' tables, the input and the dataset machinery.
const IMAGE_ALLOC_BOUND: usize = MAX_PIXELS as usize * 64 + (32 << 20);

const IMAGE_CASES: u32 = 5_000;

fn decode_options(shrink: bool) -> DecodeOptions {
    DecodeOptions { load_size: shrink.then_some(8), max_pixels: MAX_PIXELS }
}

/// A 16×12 RGB image of hashed noise (so that compressed formats have real work to do).
fn seed_image(salt: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(ImageBuffer::from_fn(16, 12, |x, y| {
        let v = (x * 37 + y * 101 + salt * 13).wrapping_mul(2_654_435_761) >> 24;
        Rgb([v as u8, (v >> 1) as u8 ^ x as u8, (y * 16) as u8])
    }))
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, format).unwrap();
    buf.into_inner()
}

/// Seeds of one format in RGB, gray, RGBA and (for PNG) 16-bit flavours.
fn flavours(format: ImageFormat, gray: bool, alpha: bool, deep: bool) -> Vec<Vec<u8>> {
    let mut seeds = vec![encode(&seed_image(1), format)];
    if gray {
        seeds.push(encode(&DynamicImage::ImageLuma8(seed_image(2).to_luma8()), format));
    }
    if alpha {
        seeds.push(encode(&DynamicImage::ImageRgba8(seed_image(3).to_rgba8()), format));
    }
    if deep {
        seeds.push(encode(&DynamicImage::ImageRgb16(seed_image(4).to_rgb16()), format));
    }
    seeds
}

/// An EXIF block (APP1) with orientation 6, "rotate 90° clockwise", so that the JPEG seeds
/// also exercise the orientation step: "Exif\0\0", a big-endian TIFF header, one IFD entry.
const EXIF_ROTATE_90: &[u8] = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0";

/// Baseline RGB and gray JPEGs, a progressive one and one with an EXIF orientation.
fn jpeg_seeds() -> Vec<Vec<u8>> {
    let pixels = seed_image(5).to_rgb8().into_raw();
    let with_encoder = |progressive: bool, exif: bool| {
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, 85);
        encoder.set_progressive(progressive);
        if exif {
            encoder.add_app_segment(1, EXIF_ROTATE_90.to_vec()).unwrap();
        }
        encoder.encode(&pixels, 16, 12, jpeg_encoder::ColorType::Rgb).unwrap();
        out
    };
    let mut seeds = flavours(ImageFormat::Jpeg, true, false, false);
    seeds.push(with_encoder(true, false));
    seeds.push(with_encoder(false, true));
    seeds
}

/// The lossless RGB WebP `simple` (the RIFF header, then its VP8L chunk) rewritten in the
/// extended layout: a VP8X chunk, the VP8L chunk, and an EXIF chunk with orientation 6. Its
/// chunk sizes reach the metadata reader.
fn webp_extended_with_exif(simple: &[u8]) -> Vec<u8> {
    let chunk = |fourcc: &[u8], body: &[u8]| {
        let mut c = fourcc.to_vec();
        c.extend((body.len() as u32).to_le_bytes());
        c.extend_from_slice(body);
        if body.len() % 2 == 1 {
            c.push(0);
        }
        c
    };
    // Flags (EXIF present), 3 reserved bytes, then canvas width - 1 and height - 1 (24 bits each).
    let mut vp8x = vec![0x08, 0, 0, 0];
    vp8x.extend_from_slice(&15u32.to_le_bytes()[..3]);
    vp8x.extend_from_slice(&11u32.to_le_bytes()[..3]);
    let mut riff = b"WEBP".to_vec();
    riff.extend(chunk(b"VP8X", &vp8x));
    riff.extend_from_slice(&simple[12..]);
    riff.extend(chunk(b"EXIF", &EXIF_ROTATE_90[6..])); // the TIFF data, without "Exif\0\0"
    let mut out = b"RIFF".to_vec();
    out.extend((riff.len() as u32).to_le_bytes());
    out.extend(riff);
    out
}

/// Lossless RGB and RGBA WebPs (the image crate encodes no lossy ones), and the RGB one in the
/// extended layout with EXIF.
fn webp_seeds() -> Vec<Vec<u8>> {
    let mut seeds = flavours(ImageFormat::WebP, false, true, false);
    let extended = webp_extended_with_exif(&seeds[0]);
    seeds.push(extended);
    seeds
}

/// How an image case reaches the decoder.
#[derive(Clone, Copy, Debug)]
enum Route {
    /// `decode_bytes` on the mutated bytes.
    Decode,
    /// `open` on a folder with a good image and the mutated file, decoded into the cache.
    OpenCached,
    /// The same with a cache limit of 0: headers probed at open, pixels decoded on demand.
    OpenStreaming,
}

#[derive(Clone, Debug)]
struct ImageCase {
    seed: Index,
    mutations: Vec<Mutation>,
    /// Decode with `load_size` 8 (the resize path) instead of none.
    shrink: bool,
    route: Route,
}

/// One case in ten goes through `open` (a temporary folder costs more than a decode).
fn image_case() -> impl Strategy<Value = ImageCase> {
    let route = prop_oneof![18 => Just(Route::Decode), 1 => Just(Route::OpenCached), 1 => Just(Route::OpenStreaming)];
    (any::<Index>(), mutations(), any::<bool>(), route).prop_map(|(seed, mutations, shrink, route)| ImageCase {
        seed,
        mutations,
        shrink,
        route,
    })
}

/// The invariants of a decoded image.
fn check_image(img: &RgbImage8, opts: &DecodeOptions) -> Result<(), String> {
    let (w, h) = (u64::from(img.width), u64::from(img.height));
    if w == 0 || h == 0 {
        return Err(format!("decoded a {w}x{h} image"));
    }
    if w * h > opts.max_pixels {
        return Err(format!("decoded {w}x{h} pixels, over max_pixels = {}", opts.max_pixels));
    }
    if img.pixels.len() as u64 != w * h * 3 {
        return Err(format!("a {w}x{h} image came with {} pixel bytes", img.pixels.len()));
    }
    if let Some(s) = opts.load_size
        && w.min(h) > u64::from(s)
    {
        return Err(format!("a {w}x{h} image was not shrunk to load_size = {s}"));
    }
    Ok(())
}

/// A skip reason fits the one warning line a skipped file gets.
fn clear_reason(reason: &str) -> Result<Outcome, String> {
    if reason.trim().is_empty() || reason.contains('\n') {
        return Err(format!("unclear reason (expected one non-empty line): {reason:?}"));
    }
    Ok(Outcome::Refused)
}

fn decode_one(bytes: &[u8], opts: &DecodeOptions) -> Result<Outcome, String> {
    // The reduced-scale decode (streaming's) of the same bytes: whole when it decodes.
    if let Ok((img, [fx, fy])) = decode_bytes_planned(bytes, opts, &mut |_, _| 8.0) {
        if !(fx > 0.0 && fx <= 1.0 && fy > 0.0 && fy <= 1.0) {
            return Err(format!("reduced decode reported factors {fx}, {fy}"));
        }
        // Not shrunk to load_size: its factors carry the load_size coordinates onto it.
        check_image(&img, &DecodeOptions { load_size: None, ..opts.clone() })?;
    }
    match decode_bytes(bytes, opts) {
        Ok(img) => check_image(&img, opts).map(|()| Outcome::Accepted),
        Err(reason) => clear_reason(&reason),
    }
}

/// Opens a folder holding a good PNG and the fuzzed file: the dataset must open with the good
/// image, the fuzzed one loaded or counted as skipped, and every image served must be whole.
fn open_beside_good_image(
    good: &[u8],
    fuzzed: &[u8],
    ext: &str,
    decode: DecodeOptions,
    streaming: bool,
) -> Result<Outcome, String> {
    let dir = tempfile::tempdir().unwrap();
    let fuzzed_name = format!("b_fuzzed.{ext}");
    std::fs::write(dir.path().join("a_good.png"), good).unwrap();
    std::fs::write(dir.path().join(&fuzzed_name), fuzzed).unwrap();
    let cache_limit = if streaming { 0 } else { 1 << 30 };
    let opts = LoadOptions { decode: decode.clone(), cache_limit, ..quiet() };
    let ds = open(dir.path(), &opts).map_err(|e| format!("open failed although a good image is there: {e}"))?;
    if ds.len() + ds.skipped().len() != 2 {
        return Err(format!("{} images loaded and {} skipped, of 2 files", ds.len(), ds.skipped().len()));
    }
    if !(0..ds.len()).any(|i| ds.path(i).is_some_and(|p| p.ends_with("a_good.png"))) {
        return Err("the good image is missing".into());
    }
    for s in ds.skipped() {
        if !s.path.ends_with(&fuzzed_name) {
            return Err(format!("skipped the wrong file: {s:?}"));
        }
        clear_reason(&s.reason)?;
    }
    for i in 0..ds.len() {
        check_image(&ds.image(i), &decode)?;
    }
    Ok(if ds.skipped().is_empty() { Outcome::Accepted } else { Outcome::Refused })
}

fn fuzz_image(format: &'static str, ext: &str, seeds: Vec<Vec<u8>>) {
    let serial = serial();
    for (i, seed) in seeds.iter().enumerate() {
        if let Err(e) = decode_bytes(seed, &decode_options(false)) {
            panic!("{format} seed {i} does not decode: {e}");
        }
    }
    let good = encode(&seed_image(0), ImageFormat::Png);
    let reader = Reader { name: format, default_cases: IMAGE_CASES, alloc_bound: IMAGE_ALLOC_BOUND };
    fuzz(&serial, &reader, image_case(), |case| {
        let bytes = apply_all(case.seed.get::<Vec<u8>>(&seeds), &case.mutations);
        let opts = decode_options(case.shrink);
        match case.route {
            Route::Decode => decode_one(&bytes, &opts),
            Route::OpenCached => open_beside_good_image(&good, &bytes, ext, opts, false),
            Route::OpenStreaming => open_beside_good_image(&good, &bytes, ext, opts, true),
        }
    });
}

/// The EXIF seeds (the last JPEG and the last WebP) decode turned by their orientation 6:
/// 16×12 pixels come out 12×16, so the fuzzed metadata paths are live ones.
#[test]
fn exif_seeds_decode_rotated() {
    let _serial = serial();
    for (format, seeds) in [("jpeg", jpeg_seeds()), ("webp", webp_seeds())] {
        let exif = seeds.last().unwrap();
        let img = decode_bytes(exif, &decode_options(false)).unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!((img.width, img.height), (12, 16), "{format}");
    }
}

#[test]
fn jpeg_files() {
    fuzz_image("jpeg", "jpg", jpeg_seeds());
}

#[test]
fn png_files() {
    fuzz_image("png", "png", flavours(ImageFormat::Png, true, true, true));
}

#[test]
fn webp_files() {
    fuzz_image("webp", "webp", webp_seeds());
}

#[test]
fn tiff_files() {
    fuzz_image("tiff", "tiff", flavours(ImageFormat::Tiff, true, false, false));
}

#[test]
fn gif_files() {
    fuzz_image("gif", "gif", flavours(ImageFormat::Gif, false, true, false));
}

#[test]
fn bmp_files() {
    fuzz_image("bmp", "bmp", flavours(ImageFormat::Bmp, true, true, false));
}

// ------------------------------------------------------------------------------------------
// Binary formats

const BINARY_CASES: u32 = 5_000;

/// Peak allocation allowed for one CIFAR or IDX case. The files here are under 20 KiB; even
/// inflated at deflate's 1032:1 maximum that is 20 MiB, held a few times over at most (the
/// inflated bytes while they grow, the RGB cache): 128 MiB. A reader trusting a declared size
/// (up to 2^32 images of 2^32 × 2^32 pixels) would need gigabytes.
const BINARY_ALLOC_BOUND: usize = 128 << 20;

/// One CIFAR variant's layout.
struct Cifar {
    reader: &'static str,
    file: &'static str,
    names_file: &'static str,
    /// The label byte(s) of each seed record.
    labels: &'static [&'static [u8]],
    classes: usize,
    kind: SourceKind,
}

const CIFAR10: Cifar = Cifar {
    reader: "cifar-10",
    file: "data_batch_1.bin",
    names_file: "batches.meta.txt",
    labels: &[&[0], &[5], &[9]],
    classes: 10,
    kind: SourceKind::Cifar10,
};

const CIFAR100: Cifar = Cifar {
    reader: "cifar-100",
    file: "train.bin",
    names_file: "fine_label_names.txt",
    labels: &[&[1, 0], &[19, 50], &[7, 99]],
    classes: 100,
    kind: SourceKind::Cifar100,
};

/// Records of the seed labels, each followed by 3,072 pixel bytes (red, green, blue planes).
fn cifar_seed(c: &Cifar) -> Vec<u8> {
    let mut out = Vec::new();
    for (r, label) in c.labels.iter().enumerate() {
        out.extend_from_slice(label);
        out.extend((0..3072).map(|k| ((k * 7 + r * 31) % 256) as u8));
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CifarFile {
    Data,
    Names,
}

#[derive(Clone, Debug)]
struct CifarCase {
    file: CifarFile,
    mutations: Vec<Mutation>,
    /// Open the data file itself instead of its folder.
    open_file: bool,
}

fn cifar_case() -> impl Strategy<Value = CifarCase> {
    let file = prop_oneof![4 => Just(CifarFile::Data), 1 => Just(CifarFile::Names)];
    (file, mutations(), any::<bool>()).prop_map(|(file, mutations, open_file)| CifarCase { file, mutations, open_file })
}

fn check_cifar(ds: &Dataset, c: &Cifar) -> Result<(), String> {
    if ds.kind() != c.kind || ds.is_empty() || ds.classes().len() != c.classes {
        return Err(format!("opened as {:?} with {} images and {} classes", ds.kind(), ds.len(), ds.classes().len()));
    }
    for i in 0..ds.len() {
        let label = ds.label(i).ok_or("an unlabelled CIFAR image")?;
        if label as usize >= c.classes {
            return Err(format!("label {label} of {} classes", c.classes));
        }
        let img = ds.image(i);
        if (img.width, img.height, img.pixels.len()) != (32, 32, 3072) {
            return Err(format!("a {}x{} image with {} bytes", img.width, img.height, img.pixels.len()));
        }
    }
    Ok(())
}

fn fuzz_cifar(c: &Cifar) {
    let serial = serial();
    let data = cifar_seed(c);
    let names: String = (0..c.classes).map(|i| format!("class{i}\n")).collect();
    let reader = Reader { name: c.reader, default_cases: BINARY_CASES, alloc_bound: BINARY_ALLOC_BOUND };
    fuzz(&serial, &reader, cifar_case(), |case| {
        let dir = tempfile::tempdir().unwrap();
        let (data, names) = match case.file {
            CifarFile::Data => (apply_all(&data, &case.mutations), names.as_bytes().to_vec()),
            CifarFile::Names => (data.clone(), apply_all(names.as_bytes(), &case.mutations)),
        };
        let file = dir.path().join(c.file);
        std::fs::write(&file, data).unwrap();
        std::fs::write(dir.path().join(c.names_file), names).unwrap();
        let path = if case.open_file { file } else { dir.path().to_path_buf() };
        match open(&path, &quiet()) {
            Ok(ds) => check_cifar(&ds, c).map(|()| Outcome::Accepted),
            Err(e) => clear_error(&e.to_string(), dir.path()),
        }
    });
}

#[test]
fn cifar10_binaries() {
    fuzz_cifar(&CIFAR10);
}

#[test]
fn cifar100_binaries() {
    fuzz_cifar(&CIFAR100);
}

const IDX_IMAGES: &str = "train-images-idx3-ubyte";
const IDX_LABELS: &str = "train-labels-idx1-ubyte";

/// An IDX header of unsigned bytes with these dimensions.
fn idx_header(dims: &[u32]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out
}

/// `n` gray images of `rows` × `cols` (MNIST's layout).
fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut out = idx_header(&[n, rows, cols]);
    out.extend((0..n * rows * cols).map(|k| (k * 11 % 256) as u8));
    out
}

fn idx_labels(n: u32) -> Vec<u8> {
    let mut out = idx_header(&[n]);
    out.extend((0..n).map(|k| (k % 4) as u8));
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IdxFile {
    Images,
    Labels,
}

/// Which bytes of a gzipped file the mutations hit: the IDX data before compression, or the
/// compressed stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    Idx,
    Gzip,
}

#[derive(Clone, Debug)]
struct IdxCase {
    gz: bool,
    file: IdxFile,
    layer: Layer,
    mutations: Vec<Mutation>,
    /// Open the images file itself instead of its folder.
    open_file: bool,
}

fn idx_case() -> impl Strategy<Value = IdxCase> {
    let file = prop_oneof![3 => Just(IdxFile::Images), 1 => Just(IdxFile::Labels)];
    let layer = prop_oneof![Just(Layer::Idx), Just(Layer::Gzip)];
    (any::<bool>(), file, layer, mutations(), any::<bool>())
        .prop_map(|(gz, file, layer, mutations, open_file)| IdxCase { gz, file, layer, mutations, open_file })
}

/// The images and labels files of a case, `(name, bytes)`, mutated as the case says.
fn idx_case_files(case: &IdxCase, images: &[u8], labels: &[u8]) -> Vec<(String, Vec<u8>)> {
    [(IdxFile::Images, IDX_IMAGES, images), (IdxFile::Labels, IDX_LABELS, labels)]
        .into_iter()
        .map(|(which, name, bytes)| {
            let hit = which == case.file;
            let mut bytes = bytes.to_vec();
            if hit && (!case.gz || case.layer == Layer::Idx) {
                bytes = apply_all(&bytes, &case.mutations);
            }
            if !case.gz {
                return (name.to_string(), bytes);
            }
            let mut packed = gzip(&bytes);
            if hit && case.layer == Layer::Gzip {
                packed = apply_all(&packed, &case.mutations);
            }
            (format!("{name}.gz"), packed)
        })
        .collect()
}

fn check_idx(ds: &Dataset) -> Result<(), String> {
    if ds.kind() != SourceKind::Idx || ds.is_empty() {
        return Err(format!("opened as {:?} with {} images", ds.kind(), ds.len()));
    }
    for i in 0..ds.len() {
        let label = ds.label(i).ok_or("an unlabelled IDX image")?;
        if label as usize >= ds.classes().len() {
            return Err(format!("label {label} of {} classes", ds.classes().len()));
        }
        let img = ds.image(i);
        if img.pixels.len() as u64 != u64::from(img.width) * u64::from(img.height) * 3 {
            return Err(format!("a {}x{} image with {} bytes", img.width, img.height, img.pixels.len()));
        }
        if img.pixels.chunks_exact(3).any(|p| p[0] != p[1] || p[1] != p[2]) {
            return Err("a gray IDX image came out in colour".into());
        }
    }
    Ok(())
}

#[test]
fn idx_files() {
    let serial = serial();
    // 4 images of 5 rows × 3 columns (not square, so that a transposition shows).
    let (images, labels) = (idx_images(4, 5, 3), idx_labels(4));
    let reader = Reader { name: "idx", default_cases: BINARY_CASES, alloc_bound: BINARY_ALLOC_BOUND };
    fuzz(&serial, &reader, idx_case(), |case| {
        let dir = tempfile::tempdir().unwrap();
        let files = idx_case_files(case, &images, &labels);
        for (name, bytes) in &files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let path = if case.open_file { dir.path().join(&files[0].0) } else { dir.path().to_path_buf() };
        match open(&path, &quiet()) {
            Ok(ds) => check_idx(&ds).map(|()| Outcome::Accepted),
            Err(e) => clear_error(&e.to_string(), dir.path()),
        }
    });
}

/// A gzipped IDX images file: a header declaring `dims`, then `zeros` zero bytes.
fn idx_bomb(dims: [u32; 3], zeros: usize) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(&idx_header(&dims)).unwrap();
    let block = vec![0u8; 1 << 20];
    for _ in 0..zeros / block.len() {
        e.write_all(&block).unwrap();
    }
    e.finish().unwrap()
}

/// Gzip bombs: files of a few KiB inflating to megabytes of zeros, whose headers declare a
/// small, an impossible or an overflowing size. Each must be an error naming the file, reached
/// having inflated at most the declared payload (the reader used to inflate the whole stream).
#[test]
fn idx_gzip_bombs_are_refused_without_inflating_them() {
    let serial = serial();
    // The compressed file, the header and up to 7,840 declared bytes, with room to spare; far
    // below the megabytes each stream inflates to.
    const BOUND: usize = 2 << 20;
    for (what, dims, zeros) in [
        ("10 images of 28x28 declared, 8 MiB inflated", [10, 28, 28], 8 << 20),
        ("60,000 images of 28x28 declared (47 MB, more than the file can hold)", [60_000, 28, 28], 4 << 20),
        ("2^32-1 images of 28x28 declared (3.4 TB)", [u32::MAX, 28, 28], 1 << 20),
        ("2^32-1 images of (2^32-1)^2 pixels declared (overflows)", [u32::MAX; 3], 1 << 20),
    ] {
        let d = tempfile::tempdir().unwrap();
        let images = d.path().join(format!("{IDX_IMAGES}.gz"));
        std::fs::write(&images, idx_bomb(dims, zeros)).unwrap();
        std::fs::write(d.path().join(format!("{IDX_LABELS}.gz")), gzip(&idx_labels(10))).unwrap();
        let (result, peak) = measure(&serial, || open(d.path(), &quiet()).map(|ds| ds.len()));
        let e = result.expect_err(what).to_string();
        assert!(e.contains(&images.display().to_string()), "{what}: {e}");
        assert!(peak < BOUND, "{what}: allocated {} at peak ({e})", mib(peak));
    }
}

/// Headers declaring degenerate sizes: no images of 65535 × 65535 pixels (a 16-byte file that
/// used to size a 12 GB buffer), images of 0 pixels (which used to panic), and dimensions whose
/// product overflows (a panic in debug builds). Each must be an error, and cheap.
#[test]
fn idx_degenerate_headers_are_errors() {
    let serial = serial();
    const BOUND: usize = 2 << 20;
    for (what, images, labels) in [
        ("0 images of 65535x65535", idx_header(&[0, 0xffff, 0xffff]), idx_labels(0)),
        ("5 images of 0x28", idx_header(&[5, 0, 28]), idx_labels(5)),
        ("5 images of 28x0", idx_header(&[5, 28, 0]), idx_labels(5)),
        ("overflowing dimensions", idx_header(&[u32::MAX; 3]), idx_labels(0)),
    ] {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(IDX_IMAGES), images).unwrap();
        std::fs::write(d.path().join(IDX_LABELS), labels).unwrap();
        let (result, peak) = measure(&serial, || open(d.path(), &quiet()).map(|ds| ds.len()));
        let e = result.expect_err(what).to_string();
        assert!(e.contains(&d.path().display().to_string()) && !e.contains('\n'), "{what}: {e}");
        assert!(peak < BOUND, "{what}: allocated {} at peak ({e})", mib(peak));
    }
}

// ------------------------------------------------------------------------------------------
// WebDataset shards

const SHARD_CASES: u32 = 3_000;

/// A shard as `selfsup pack` writes it: a labelled JPEG, a labelled PNG, then a sample with only
/// a caption, then one more labelled JPEG.
fn shard_seed() -> Vec<u8> {
    use selfsup_datasets::pack::{PackItem, write_shard};
    let dir = tempfile::tempdir().unwrap();
    let mut items = Vec::new();
    for (i, (format, ext)) in
        [(ImageFormat::Jpeg, "jpg"), (ImageFormat::Png, "png"), (ImageFormat::Jpeg, "jpg")].iter().enumerate()
    {
        let path = dir.path().join(format!("{i}.{ext}"));
        std::fs::write(&path, encode(&seed_image(i as u32), *format)).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        items.push(PackItem { source: path, label: Some(i as u32), len });
    }
    let mut out = Vec::new();
    write_shard(&mut out, &items[..2], 0).unwrap();
    out.truncate(out.len() - 1024); // drop the end-of-archive blocks, to append by hand
    let mut tar = tar::Builder::new(out);
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_cksum();
    tar.append_data(&mut h, "000000002.txt", &b"hello"[..]).unwrap();
    let mut rest = Vec::new();
    write_shard(&mut rest, &items[2..], 3).unwrap();
    let mut out = tar.into_inner().unwrap();
    out.truncate(out.len() - 1024);
    out.extend(rest);
    out
}

/// A mutated shard beside a good one: the set must open (the good shard's samples are there),
/// every sample served must be whole with a label among the classes, and every skip must name
/// the fuzzed shard with a one-line reason.
#[test]
fn webdataset_shards() {
    let serial = serial();
    let seed = shard_seed();
    let good = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.tar"), &seed).unwrap();
        let ds = open(dir.path(), &quiet()).unwrap();
        assert_eq!((ds.kind(), ds.len(), ds.skipped().len()), (SourceKind::WebDataset, 3, 1), "{:?}", ds.skipped());
        seed.clone()
    };
    let reader = Reader { name: "webdataset", default_cases: SHARD_CASES, alloc_bound: IMAGE_ALLOC_BOUND };
    let strategy = (mutations(), any::<bool>());
    fuzz(&serial, &reader, strategy, |(mutations, streaming)| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a_good.tar"), &good).unwrap();
        std::fs::write(dir.path().join("b_fuzzed.tar"), apply_all(&seed, mutations)).unwrap();
        let opts =
            LoadOptions { decode: decode_options(false), cache_limit: if *streaming { 0 } else { 1 << 30 }, ..quiet() };
        let ds = open(dir.path(), &opts).map_err(|e| format!("open failed although a good shard is there: {e}"))?;
        let from_good = (0..ds.len()).filter(|&i| ds.name(i).contains("a_good.tar:")).count();
        if from_good != 3 {
            return Err(format!("{from_good} of the good shard's 3 samples are there"));
        }
        for s in ds.skipped() {
            let name = s.path.display().to_string();
            if !name.contains("b_fuzzed.tar") && !name.ends_with("a_good.tar:000000002") {
                return Err(format!("skipped something of the good shard: {s:?}"));
            }
            clear_reason(&s.reason)?;
        }
        for i in 0..ds.len() {
            if ds.is_labeled() && ds.label(i).is_none_or(|l| l as usize >= ds.classes().len()) {
                return Err(format!("label {:?} of {} classes", ds.label(i), ds.classes().len()));
            }
            check_image(&ds.image(i), &opts.decode)?;
        }
        Ok(if ds.len() == 6 { Outcome::Accepted } else { Outcome::Refused })
    });
}
