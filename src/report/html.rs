//! `report.html`: one self-contained page per run (images embedded as base64, no scripts, no
//! network) with the configuration, the device and timing, the training curves, the collapse
//! statistics, the online k-NN and linear accuracy, the k-NN, retrieval and linear-probe results
//! against the baselines with the probes' confusion matrices side by side, an embedding map of
//! the trained network beside the random-init one, an augmentation preview and a
//! nearest-neighbour grid.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use selfsup_augment::Augmenter;
use selfsup_datasets::split::stratified_subset;

use super::confusion_table::{self, Matrix};
use super::embedding_map::{self, MapPanel};
use super::plots::{Panel, Series, line_panels};
use crate::backend::BackendChoice;
use crate::checkpoint::Checkpoint;
use crate::data::open_dataset;
use crate::eval::features::{Extractor, extract};
use crate::eval::load::{LoadedEncoder, load};
use crate::eval::record::EvalRecord;
use crate::neighbors::{grid, nearest};
use crate::train::metrics::{StepMetrics, read};
use crate::train::run_dir::RunDir;

/// `s` as HTML text (also safe inside a quoted attribute).
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn img_tag(path: &Path, alt: &str) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!(
        "<img alt=\"{}\" src=\"data:image/png;base64,{}\">",
        esc(alt),
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

fn series(name: &str, m: &[StepMetrics], f: impl Fn(&StepMetrics) -> Option<f64>) -> Series {
    Series { name: name.into(), points: m.iter().filter_map(|r| f(r).map(|v| (r.step as f64, v))).collect() }
}

/// Writes the charts of `metrics` into `dir`; returns the (title, path) of each.
fn charts(m: &[StepMetrics], dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let training = dir.join("training.png");
    line_panels(
        &training,
        "training",
        "step",
        &[
            Panel { y_label: "loss".into(), series: vec![series("loss", m, |r| Some(r.loss))] },
            Panel { y_label: "learning rate".into(), series: vec![series("lr", m, |r| Some(r.lr))] },
            Panel {
                y_label: "cosine similarity".into(),
                series: vec![
                    series("positive pairs", m, |r| Some(r.pos_sim)),
                    series("negative pairs", m, |r| Some(r.neg_sim)),
                ],
            },
        ],
    )?;
    out.push(("Loss, learning rate and pair similarities".to_string(), training));
    let mon: Vec<&StepMetrics> =
        m.iter().filter(|r| r.monitor.as_ref().is_some_and(|x| x.backbone.is_some())).collect();
    if !mon.is_empty() {
        let owned: Vec<StepMetrics> = mon.into_iter().cloned().collect();
        let stat = |name: &str, f: fn(&crate::eval::collapse::SpaceStats) -> f64| -> Vec<Series> {
            vec![
                series(&format!("backbone {name}"), &owned, |r| r.monitor.as_ref()?.backbone.as_ref().map(f)),
                series(&format!("projection {name}"), &owned, |r| r.monitor.as_ref()?.projection.as_ref().map(f)),
            ]
        };
        let collapse = dir.join("collapse.png");
        line_panels(
            &collapse,
            "representation (held-out images)",
            "step",
            &[
                Panel { y_label: "std × √d".into(), series: stat("std·√d", |s| s.std_ratio) },
                Panel { y_label: "effective rank".into(), series: stat("effective rank", |s| s.effective_rank) },
                Panel { y_label: "alignment".into(), series: stat("alignment", |s| s.alignment) },
                Panel { y_label: "uniformity".into(), series: stat("uniformity", |s| s.uniformity) },
            ],
        )?;
        out.push(("Collapse statistics on held-out images".to_string(), collapse));
    }
    let knn: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|r| r.monitor.as_ref()?.knn.as_ref().map(|k| ((r.epoch + 1) as f64, 100.0 * k.top1)))
        .collect();
    let linear: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|r| r.monitor.as_ref()?.linear.as_ref().map(|k| ((r.epoch + 1) as f64, 100.0 * k.top1)))
        .collect();
    if !knn.is_empty() || !linear.is_empty() {
        let p = dir.join("online-accuracy.png");
        let series = [("k-NN top-1", knn), ("linear top-1", linear)]
            .into_iter()
            .filter(|(_, points)| !points.is_empty())
            .map(|(name, points)| Series { name: name.into(), points })
            .collect();
        line_panels(&p, "online accuracy (held-out images)", "epoch", &[Panel { y_label: "top-1 %".into(), series }])?;
        out.push(("Online k-NN and linear-classifier accuracy per epoch".to_string(), p));
    }
    Ok(out)
}

/// The folder the run trained on (`data.txt`).
fn run_data(run: &RunDir) -> Result<PathBuf> {
    Ok(PathBuf::from(std::fs::read_to_string(run.data()).context("the run has no data.txt")?.trim()))
}

/// Pictures that need the training data: the augmentation preview and nearest neighbours
/// through the run's encoder `enc`.
fn data_pictures(run: &RunDir, dir: &Path, enc: &LoadedEncoder) -> Result<Vec<(String, PathBuf)>> {
    let data = run_data(run)?;
    let mut cfg = enc.config.clone();
    cfg.data.limit = Some(2000);
    let ds = open_dataset(&data, &cfg, false).with_context(|| format!("opening the run's data {}", data.display()))?;
    let aug = Augmenter::new(cfg.augment.clone())?;
    let mut out = Vec::new();
    let picks = stratified_subset(&ds.labels(), 6, cfg.seed);
    let preview = dir.join("augmentations.png");
    let g = crate::preview::grid(&ds, &aug, aug.small_views().as_ref(), &picks, cfg.seed);
    crate::atomic::write_with(&preview, |tmp| g.save_with_format(tmp, image::ImageFormat::Png).map_err(Into::into))?;
    out.push(("Augmentations (original, view 1, view 2)".to_string(), preview));
    let f = extract(&crate::dist::Single, &Extractor::Encoder(&enc.encoder, enc.device()), &aug, &ds, None, 256, false);
    let rows: Vec<(image::RgbImage, Vec<usize>)> = picks
        .iter()
        .map(|&q| {
            let img = ds.with_image(q, |w, h, px| image::RgbImage::from_raw(w, h, px.to_vec()).expect("RGB buffer"));
            (img, nearest(&f.emb, f.emb.row(q), 8, Some(q)).into_iter().map(|p| p.0).collect())
        })
        .collect();
    let nn = dir.join("neighbors.png");
    let g = grid(&ds, &rows, crate::preview::cell_size(cfg.augment.size.min(96)).min(128));
    crate::atomic::write_with(&nn, |tmp| g.save_with_format(tmp, image::ImageFormat::Png).map_err(Into::into))?;
    out.push((format!("Nearest neighbours (framed query, then its 8 nearest among {} images)", ds.len()), nn));
    Ok(out)
}

/// Images in the embedding map at most (stratified by class).
const MAP_IMAGES: usize = 2000;

/// The embedding map: up to [`MAP_IMAGES`] images of the evaluated test folder (else the run's
/// data), stratified, through the trained network and through the random-init baseline, each
/// laid out by t-SNE, side by side; `None` for unlabelled data (nothing to colour by). Returns
/// the caption, the picture and a note (with each map's 10-NN class agreement).
fn embedding_map(
    run: &RunDir,
    dir: &Path,
    enc: &LoadedEncoder,
    backend: BackendChoice,
    records: &[EvalRecord],
) -> Result<Option<(String, PathBuf, String)>> {
    let folder = match records.iter().find(|r| r.features == "trained") {
        Some(r) => PathBuf::from(&r.test),
        None => run_data(run)?,
    };
    let mut cfg = enc.config.clone();
    cfg.data.limit = Some(MAP_IMAGES);
    let ds = open_dataset(&folder, &cfg, false).with_context(|| format!("opening {}", folder.display()))?;
    if !ds.is_labeled() || ds.len() < 5 {
        return Ok(None);
    }
    let aug = Augmenter::new(cfg.augment.clone())?;
    let random = crate::eval::load::random_init(&enc.config, backend)?;
    let labels: Vec<u32> = ds.labels().iter().map(|l| l.unwrap_or(0)).collect();
    let mut layouts = Vec::new();
    for net in [enc, &random] {
        let f =
            extract(&crate::dist::Single, &Extractor::Encoder(&net.encoder, net.device()), &aug, &ds, None, 256, false);
        layouts.push(embedding_map::tsne(&f.emb.values, f.n(), f.dim(), cfg.seed)?);
    }
    let agreement: Vec<f64> = layouts.iter().map(|l| embedding_map::neighbour_agreement(l, &labels, 10)).collect();
    let titles = ["trained".to_string(), "random init".to_string()];
    let panels: Vec<MapPanel> = layouts
        .iter()
        .zip(&titles)
        .map(|(points, title)| MapPanel { title: title.clone(), points, labels: &labels })
        .collect();
    let path = dir.join("embedding-map.png");
    embedding_map::draw(&path, &panels, ds.classes())?;
    let note = format!(
        "{} images of {}, stratified by class, laid out by t-SNE (backbone features, L2-normalized; seed {}). Images whose 10 nearest points in the map are mostly of their class: trained {:.1} %, random init {:.1} %.",
        ds.len(),
        folder.display(),
        cfg.seed,
        100.0 * agreement[0],
        100.0 * agreement[1]
    );
    Ok(Some(("Embedding map: the trained network beside random init".to_string(), path, note)))
}

fn eval_table(records: &[EvalRecord]) -> String {
    if records.is_empty() {
        return "<p>No evaluations yet: run <code>selfsup knn</code> and <code>selfsup probe</code> with <code>--model</code> this run (and <code>--baseline random-init</code> / <code>pixels</code>).</p>".into();
    }
    let mut s = String::from(
        "<table><tr><th>features</th><th>evaluation</th><th>top-1</th><th>top-5</th><th>train / test images</th><th>details</th></tr>",
    );
    for r in records {
        for k in r.knn.iter().flatten() {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>k-NN (k = {}, t = {})</td><td>{:.2}%</td><td>{:.2}%</td><td>{} / {}</td><td>{}-d</td></tr>",
                esc(&r.features),
                k.k,
                k.temperature,
                100.0 * k.top1,
                100.0 * k.top5,
                r.train_images,
                r.test_images,
                r.feature_dim
            );
        }
        if let Some(x) = &r.retrieval {
            let recall = |k: usize| x.recall_at.iter().find(|a| a.k == k).map_or(0.0, |a| 100.0 * a.recall);
            let _ = write!(
                s,
                "<tr><td>{}</td><td>retrieval: P@1, R@5</td><td>{:.2}%</td><td>{:.2}%</td><td>{} / {}</td><td>MAP@R {:.2}%, R@10 {:.2}%{}</td></tr>",
                esc(&r.features),
                100.0 * x.precision_at_1,
                recall(5),
                r.train_images,
                r.test_images,
                100.0 * x.map_at_r,
                recall(10),
                if x.leave_one_out { ", each query left out of its own ranking" } else { "" }
            );
        }
        if let Some(p) = &r.probe {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>linear probe</td><td>{:.2}%</td><td>{:.2}%</td><td>{} / {}</td><td>weight decay {:e}</td></tr>",
                esc(&r.features),
                100.0 * p.top1,
                100.0 * p.top5,
                r.train_images,
                r.test_images,
                p.weight_decay
            );
        }
    }
    s.push_str("</table>");
    s
}

/// How far the run got: "finished: N epochs, S optimizer steps", or where it stands.
fn progress_text(at: crate::checkpoint::Position, epochs: Option<u64>) -> String {
    match epochs {
        Some(e) if at.epoch >= e => format!("finished: {e} epochs, {} optimizer steps", at.global_step),
        Some(e) => format!(
            "stopped in epoch {} of {e} after {} of its steps ({} optimizer steps); continue with pretrain --resume",
            at.epoch + 1,
            at.step_in_epoch,
            at.global_step
        ),
        None => format!("epoch {}, step {} of it, {} optimizer steps", at.epoch, at.step_in_epoch, at.global_step),
    }
}

/// Writes `report.html` (and its charts under `plots/`) into the run folder; returns its path.
pub fn write_report(run_root: &Path, backend: BackendChoice, verbose: bool) -> Result<PathBuf> {
    let run = RunDir::new(run_root);
    let ck = Checkpoint::load(&crate::train::run_dir::checkpoint_path(run_root)?)?;
    let metrics = if run.metrics().exists() { read(&run.metrics())? } else { Vec::new() };
    let plots = run.root.join("plots");
    std::fs::create_dir_all(&plots)?;
    let charts = charts(&metrics, &plots)?;
    let records = EvalRecord::load_all(&run.eval())?;
    // The map and the data pictures need the run's encoder: loaded once for both.
    let (mut map, mut data_pics) = (None, Vec::new());
    match load(&run.root, backend, None) {
        Ok(enc) => {
            match embedding_map(&run, &plots, &enc, backend, &records) {
                Ok(m) => map = m,
                Err(e) if verbose => eprintln!("note: no embedding map in the report ({e:#})"),
                Err(_) => {}
            }
            match data_pictures(&run, &plots, &enc) {
                Ok(p) => data_pics = p,
                Err(e) if verbose => eprintln!("note: no augmentation preview or neighbours in the report ({e:#})"),
                Err(_) => {}
            }
        }
        Err(e) if verbose => {
            eprintln!("note: no embedding map, augmentation preview or neighbours in the report ({e:#})")
        }
        Err(_) => {}
    }
    let device = std::fs::read_to_string(run.device()).unwrap_or_default();
    let data = std::fs::read_to_string(run.data()).unwrap_or_default();
    let last = metrics.last();
    let elapsed = last.map_or(0.0, |m| m.elapsed_s);
    let knn_last = metrics.iter().rev().find_map(|m| m.monitor.as_ref()?.knn.clone());
    let mon_last = metrics.iter().rev().find_map(|m| m.monitor.as_ref().filter(|x| x.backbone.is_some()).cloned());

    let mut h = String::new();
    let title =
        format!("selfsup: {}", run.root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}\
         th{{background:#f3f3f3}}img{{max-width:100%;border:1px solid #ddd;margin:.5em 0}}pre{{background:#f7f7f7;padding:1em;overflow:auto}}\
         .warn{{color:#b00}}{cm}</style></head><body><h1>{t}</h1>",
        t = esc(&title),
        cm = confusion_table::STYLE
    );
    let _ = write!(h, "<h2>Summary</h2><table>");
    let row = |h: &mut String, k: &str, v: &str| {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    };
    row(&mut h, "data", data.trim());
    row(&mut h, "device", device.trim());
    if let Ok(cfg) = crate::eval::load::checkpoint_config(&ck) {
        let kind = cfg.method.kind;
        row(
            &mut h,
            "method",
            &format!(
                "{} (the monitor, neighbours and default evaluation use the {})",
                kind.name(),
                kind.default_weights().name()
            ),
        );
    }
    let epochs = crate::eval::load::checkpoint_config(&ck).map(|c| c.train.epochs).ok();
    row(&mut h, "progress", &progress_text(ck.position, epochs));
    row(&mut h, "training time", &format!("{:.1} min", elapsed / 60.0));
    if let Some(m) = last {
        row(&mut h, "last logged loss", &format!("{:.4} at step {} ({:.0} pairs/s)", m.loss, m.step, m.pairs_per_sec));
    }
    if let Some(k) = &knn_last {
        row(&mut h, "online k-NN (held out)", &format!("top-1 {:.2}% (k = {})", 100.0 * k.top1, k.k));
    }
    if let Some(l) = metrics.iter().rev().find_map(|m| m.monitor.as_ref()?.linear.clone()) {
        row(
            &mut h,
            "online linear classifier (held out)",
            &format!("top-1 {:.2}% on {} images", 100.0 * l.top1, l.images),
        );
    }
    if let Some(mon) = &mon_last {
        for (name, s) in [("backbone", &mon.backbone), ("projection", &mon.projection)] {
            if let Some(s) = s {
                row(
                    &mut h,
                    &format!("{name} ({}-d)", s.dim),
                    &format!(
                        "std·√d {:.3}, effective rank {:.1}, alignment {:.3}, uniformity {:.3}",
                        s.std_ratio, s.effective_rank, s.alignment, s.uniformity
                    ),
                );
            }
        }
    }
    h.push_str("</table>");
    if let Some(mon) = &mon_last
        && !mon.collapse.is_empty()
    {
        let _ = write!(
            h,
            "<p class=\"warn\">Collapse rules fired at the last check: {}</p>",
            esc(&mon.collapse.join("; "))
        );
    }
    let _ = write!(h, "<h2>What the encoder learned</h2>{}", eval_table(&records));
    // The probes' confusion matrices side by side: the baselines first, then the encoder.
    let rank = |f: &str| match f {
        "pixels" => 0,
        "random-init" => 1,
        _ => 2,
    };
    let mut probes: Vec<&EvalRecord> = records.iter().filter(|r| r.probe.is_some()).collect();
    probes.sort_by_key(|r| rank(&r.features));
    let titles: Vec<String> = probes.iter().map(|r| format!("linear probe: {}", r.features)).collect();
    let matrices: Vec<Matrix> = probes
        .iter()
        .zip(&titles)
        .filter_map(|(r, title)| {
            let p = r.probe.as_ref()?;
            Some(Matrix { title, classes: &r.classes, counts: &p.confusion })
        })
        .collect();
    if !matrices.is_empty() {
        let _ = write!(
            h,
            "<h3>Confusion matrices (percent of each true class)</h3>{}",
            confusion_table::small_multiples(&matrices)
        );
    }
    // The training charts, the map, then the data pictures.
    for (caption, path) in &charts {
        let _ = write!(h, "<h2>{}</h2>{}", esc(caption), img_tag(path, caption)?);
    }
    if let Some((caption, path, note)) = &map {
        let _ = write!(h, "<h2>{}</h2><p>{}</p>{}", esc(caption), esc(note), img_tag(path, caption)?);
    }
    for (caption, path) in &data_pics {
        let _ = write!(h, "<h2>{}</h2>{}", esc(caption), img_tag(path, caption)?);
    }
    let _ = write!(h, "<h2>Configuration</h2><pre>{}</pre>", esc(&ck.config));
    let _ = write!(
        h,
        "<p><small>Written by selfsup {} from {}.</small></p></body></html>",
        env!("CARGO_PKG_VERSION"),
        esc(&run.root.display().to_string())
    );
    let path = run.root.join("report.html");
    crate::atomic::write_bytes(&path, h.as_bytes())?;
    Ok(path)
}
