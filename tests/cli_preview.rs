//! End-to-end: the real `selfsup` binary run the way a user would, on folders generated here.

use std::path::Path;
use std::process::Command;

fn selfsup() -> Command {
    Command::new(env!("CARGO_BIN_EXE_selfsup"))
}

fn write_folder(root: &Path) {
    for (c, class) in ["circles", "squares"].iter().enumerate() {
        for i in 0..4u32 {
            let img = image::RgbImage::from_fn(20 + i, 16, |x, y| {
                image::Rgb([(x * 9) as u8, (y * 13) as u8, (c * 200) as u8])
            });
            let p = root.join(class).join(format!("{i}.png"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            img.save(&p).unwrap();
        }
    }
    std::fs::write(root.join("squares/broken.jpg"), b"not a jpeg").unwrap();
}

/// `selfsup preview` of the folder `write_folder` made under `d` (its `data/`) into `out`,
/// with `extra` arguments.
fn preview(d: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    selfsup().arg("preview").arg("--data").arg(d.join("data")).arg("--out").arg(out).args(extra).output().unwrap()
}

#[test]
fn preview_writes_a_grid_and_reports_skips() {
    let d = tempfile::tempdir().unwrap();
    write_folder(&d.path().join("data"));
    let out = d.path().join("out/grid.png");
    let run = preview(d.path(), &out, &["--n", "3"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("broken.jpg") && stderr.contains("skipped 1"), "{stderr}");
    let grid = image::open(&out).unwrap();
    // 3 columns and 3 rows of 128 px cells (32 px views enlarged 4x) with 4 px gaps.
    assert_eq!((grid.width(), grid.height()), (3 * 128 + 4 * 4, 3 * 128 + 4 * 4));
}

/// Multi-crop: the row shows every view — 3 full-size, then 2 small ones (16 px enlarged to the
/// same 128 px cells) — and the small views are low-resolution: 8 × 8 blocks of equal pixels.
#[test]
fn preview_shows_every_view_of_multi_crop() {
    let d = tempfile::tempdir().unwrap();
    write_folder(&d.path().join("data"));
    let out = d.path().join("grid.png");
    let run =
        preview(d.path(), &out, &["-q", "--set", "augment.views=3", "--set", "augment.small_views=2", "--n", "2"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let grid = image::open(&out).unwrap().to_rgb8();
    assert_eq!((grid.width(), grid.height()), (6 * 128 + 7 * 4, 2 * 128 + 3 * 4));
    let x0 = 4 + 4 * (128 + 4); // the first small view
    // Above the caption band (the cell's bottom 19 px), each 8 × 8 block of the enlarged 16 px
    // view is one colour.
    for by in 0..13 {
        for bx in 0..16 {
            let p = grid.get_pixel(x0 + 8 * bx, 4 + 8 * by);
            for (dx, dy) in [(7, 0), (0, 7), (7, 7), (3, 4)] {
                assert_eq!(grid.get_pixel(x0 + 8 * bx + dx, 4 + 8 * by + dy), p, "block ({bx}, {by})");
            }
        }
    }
}

#[test]
fn preview_with_a_config_file_and_set_overrides() {
    let d = tempfile::tempdir().unwrap();
    write_folder(&d.path().join("data"));
    let cfg = d.path().join("aug.toml");
    std::fs::write(&cfg, "[augment]\npreset = \"imagenet\"\nsize = 48\n").unwrap();
    let out = d.path().join("grid.png");
    let cfg = cfg.to_str().unwrap();
    let run = preview(d.path(), &out, &["-q", "--config", cfg, "--set", "augment.grayscale.p=1.0", "--n", "2"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let grid = image::open(&out).unwrap().to_rgb8();
    // 48 px views enlarged 3x to 144 px cells; with grayscale p = 1 every view pixel is gray.
    assert_eq!(grid.width(), 3 * 144 + 4 * 4);
    let view = image::imageops::crop_imm(&grid, 4 + 144 + 4, 4, 144, 144).to_image();
    assert!(view.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn bad_input_gives_one_line_errors_naming_the_problem() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("g.png");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--data".into(), d.path().join("missing").display().to_string()], "missing"),
        (
            vec![
                "--data".into(),
                d.path().display().to_string(),
                "--set".into(),
                "augment.crop.scale=[0.0, 1.0]".into(),
            ],
            "augment.crop.scale",
        ),
        (
            vec!["--data".into(), d.path().display().to_string(), "--set".into(), "augment.flip.prob=1".into()],
            "augment.flip",
        ),
        (vec!["--data".into(), d.path().display().to_string()], "no usable image"),
    ];
    for (args, needle) in cases {
        let run = selfsup().arg("preview").args(&args).arg("--out").arg(&out).output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success());
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
