//! End-to-end: `selfsup pack` writes an image folder as WebDataset shards that Python's `tarfile`
//! reads back to the original bytes and labels, and that `pretrain`, `knn` and `embed` take as
//! `--data` (a folder of shards or a brace pattern), with damaged shards skipped and counted.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{SMOKE, pretrain_args, run, shapes_folder};

/// Packs `data` into `out` with `extra` flags; returns stdout and stderr.
fn pack(data: &Path, out: &Path, extra: &[&str]) -> (std::process::Output, String) {
    let mut args = vec!["pack", "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(extra);
    run(&args)
}

/// Every file's bytes under `root`, by file name, with its parent folder's name.
fn files(root: &Path) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for class in std::fs::read_dir(root).unwrap() {
        let class = class.unwrap().path();
        for f in std::fs::read_dir(&class).unwrap() {
            let f = f.unwrap().path();
            let class_name = class.file_name().unwrap().to_string_lossy().into_owned();
            out.push((class_name, f.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&f).unwrap()));
        }
    }
    out
}

#[test]
fn pack_writes_shards_that_python_reads_and_every_command_takes_as_data() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 2, 20, 16);
    std::fs::write(data.join("class1/broken.png"), b"\x89PNG\r\n\x1a\n not really").unwrap();
    let shards = d.path().join("shards");
    let (o, err) = pack(&data, &shards, &["--shard-size", "20KB", "--seed", "3"]);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("warning: skipped") && err.contains("broken.png"), "{err}");
    assert!(err.contains("packed 40 images into") && err.contains("skipped 1"), "{err}");
    let tars: Vec<String> = {
        let mut t: Vec<String> = std::fs::read_dir(&shards)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tar"))
            .collect();
        t.sort();
        t
    };
    assert!(tars.len() >= 2, "{tars:?}");
    assert!(tars.iter().all(|t| std::fs::metadata(shards.join(t)).unwrap().len() <= 20_000), "at most --shard-size");
    let pattern = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert_eq!(pattern, shards.join(format!("shard-{{000000..{:06}}}.tar", tars.len() - 1)).display().to_string());
    assert_eq!(std::fs::read_to_string(shards.join("classes.txt")).unwrap(), "class0\nclass1\n");

    // Python's tarfile: every image member is one of the source files, byte for byte, and its
    // .cls is the class of that file's folder; keys are unique and every sample has both.
    let extracted = d.path().join("extracted");
    let script = "import sys, tarfile, glob\n\
                  for t in sorted(glob.glob(sys.argv[1] + '/*.tar')):\n\
                  \x20   with tarfile.open(t) as f:\n\
                  \x20       f.extractall(sys.argv[2])\n";
    match Command::new("python3").args(["-c", script, shards.to_str().unwrap(), extracted.to_str().unwrap()]).output() {
        Ok(py) => {
            assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
            let sources: BTreeMap<Vec<u8>, String> =
                files(&data).into_iter().filter(|(_, n, _)| n != "broken.png").map(|(c, _, b)| (b, c)).collect();
            let mut seen = 0;
            for e in std::fs::read_dir(&extracted).unwrap() {
                let p = e.unwrap().path();
                if p.extension().unwrap() != "png" {
                    continue;
                }
                let class = sources
                    .get(&std::fs::read(&p).unwrap())
                    .unwrap_or_else(|| panic!("{} is no source file", p.display()));
                let cls = std::fs::read_to_string(p.with_extension("cls")).unwrap();
                assert_eq!(format!("class{cls}"), *class, "{}", p.display());
                seen += 1;
            }
            assert_eq!(seen, 40, "every image once");
        }
        // A machine with only a Rust toolchain: the rest of the test still runs. CI sets
        // SELFSUP_REQUIRE_PYTHON=1, so there it must not be skipped.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::env::var_os("SELFSUP_REQUIRE_PYTHON").is_none() => {
            eprintln!("python3 not found: the read-back with Python's tarfile is skipped (install python3 to run it)");
        }
        Err(e) => panic!("python3 (the test reads the shards back with Python's tarfile): {e}"),
    }

    // Packing into a folder that holds shards is refused.
    let (o, err) = pack(&data, &shards, &[]);
    assert!(!o.status.success() && err.contains("already holds shards"), "{err}");

    // pretrain from the brace pattern, streaming, with a small shuffle buffer.
    let out = d.path().join("run");
    let mut args = pretrain_args(Path::new(&pattern), &out, &["data.cache_limit=0", "data.shuffle_buffer=5"]);
    args.push("-q".into());
    let (o, err) = run(&args);
    assert!(o.status.success(), "{err}");
    let (o, err) = run(&[
        "knn",
        "--model",
        out.to_str().unwrap(),
        "--train",
        shards.to_str().unwrap(),
        "--test",
        data.to_str().unwrap(),
        "--k",
        "5",
        "--backend",
        "flex",
        "-q",
    ]);
    assert!(o.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("k =    5"));
    let npy = d.path().join("emb.npy");
    let (o, err) = common::embed(&out, &shards, &npy);
    assert!(o.status.success(), "{err}");
    let csv = std::fs::read_to_string(npy.with_extension("csv")).unwrap();
    assert!(csv.contains("shard-000000.tar:000000000.png"), "{csv}");

    // A shard cut short: its lost samples are counted skips naming it, the run goes on.
    let damaged = d.path().join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    for t in &tars {
        std::fs::copy(shards.join(t), damaged.join(t)).unwrap();
    }
    let last = damaged.join(tars.last().unwrap());
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(len / 2).unwrap();
    let out2 = d.path().join("run2");
    let (o, err) = run(&pretrain_args(&damaged, &out2, &["train.epochs=1"]));
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("{}:", last.display())) && err.contains("cut short"), "{err}");
    assert!(err.contains("skipped 1: see above"), "{err}");
}

#[test]
fn pack_refuses_bad_sizes_and_prefixes_in_one_line() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    shapes_folder(&data, 1, 2, 8);
    let out = d.path().join("out");
    for (flags, want) in [
        (&["--shard-size", "lots"][..], "\"lots\" is not a size"),
        (&["--shard-size", "1KB"][..], "smaller than one shard"),
        (&["--prefix", "a/b"][..], "--prefix \"a/b\""),
    ] {
        let (o, err) = pack(&data, &out, flags);
        assert!(!o.status.success() && err.contains(want), "{flags:?}: {err}");
    }
    let (o, err) = pack(&d.path().join("nope"), &out, &[]);
    assert!(!o.status.success() && err.contains("nope") && err.trim().lines().count() == 1, "{err}");
    let _ = SMOKE;
}
