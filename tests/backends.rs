//! The same training steps from the same weights on the same batches give the same losses on
//! every backend this machine can reach, for every method (`method.kind`): flex and ndarray
//! always; wgpu when an adapter exists (CI installs Mesa's lavapipe and sets
//! SELFSUP_REQUIRE_WGPU=1, so there it must run). One test, so that wgpu compiles each shader
//! once for all the methods.

use burn::prelude::*;
use selfsup::config::Config;
use selfsup::method::{MethodKind, MethodState};
use selfsup::named_tensors::{self, NamedTensor};
use selfsup::optim::Optimizer;
use selfsup::train::step::{StepAt, StepViews, train_step};
use selfsup_augment::{Augmenter, ImageRef};

const SMOKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/smoke.toml");
const BATCH: usize = 4;
const STEPS: usize = 3;

/// The smoke configuration with `kind` and small heads (the same shapes for every method, so
/// that their kernels are shared).
fn config(kind: MethodKind) -> Config {
    let mut sets = vec![format!("method.kind={}", kind.name())];
    for (key, value) in [
        ("predictor", "method.predictor.hidden_dim=32"),
        ("queue_size", "method.queue_size=12"),
        ("prototypes", "method.prototypes=32"),
    ] {
        if kind.keys().contains(&key) {
            sets.push(value.to_string());
        }
    }
    if kind == MethodKind::Vicreg {
        sets.push("optim.lr=0.01".into());
    }
    if kind == MethodKind::Dino {
        // At the default 0.04 the teacher's softmax is so sharp that the logits' rounding
        // (wgpu's initial logits differ from flex's by 9·10⁻⁷) grows to 1.4·10⁻³ of the third
        // step's loss (measured; at 0.5 every step agrees within 10⁻⁶, and flex with and
        // without its kernels agree within 10⁻⁶ at 0.04 too).
        sets.push("method.teacher_temperature=0.1".into());
        sets.push("method.warmup_teacher_temperature=0.1".into());
    }
    Config::load(Some(std::path::Path::new(SMOKE)), &sets).unwrap()
}

/// `STEPS` batches of both views of `BATCH` synthetic images, as the loader lays them out.
fn batches(cfg: &Config) -> Vec<Vec<f32>> {
    let aug = Augmenter::new(cfg.augment.clone()).unwrap();
    let images: Vec<Vec<u8>> =
        (0..BATCH * STEPS).map(|k| (0..24 * 20 * 3).map(|i| ((i * (k + 3) + k * 41) % 251) as u8).collect()).collect();
    let refs: Vec<ImageRef> = images.iter().map(|p| ImageRef::new(24, 20, p)).collect();
    (0..STEPS)
        .map(|s| {
            let idx: Vec<usize> = (s * BATCH..(s + 1) * BATCH).collect();
            let mut views = vec![0.0; 2 * BATCH * aug.view_len()];
            let (a, b) = views.split_at_mut(BATCH * aug.view_len());
            aug.two_views_batch(&refs, &idx, 7, 0, a, b);
            views
        })
        .collect()
}

fn losses(device: Device, weights: &[NamedTensor], batches: &[Vec<f32>], cfg: &Config) -> Vec<f32> {
    let device = device.autodiff();
    let mut model = named_tensors::apply(cfg.encoder(&device), weights).unwrap();
    let mut state = MethodState::new(cfg, &model, &device);
    let mut opt = Optimizer::new(cfg.optim.clone());
    let s = cfg.augment.size as usize;
    batches
        .iter()
        .map(|views| {
            let x = Tensor::<4>::from_data(TensorData::new(views.clone(), [2 * BATCH, 3, s, s]), &device);
            let (trained, out) = train_step(
                model.clone(),
                &mut state,
                &mut opt,
                cfg,
                StepViews::pairs(x, BATCH),
                Some(&[0, 1, 0, 1]),
                StepAt::fixed(0.05),
                &selfsup::dist::single(),
                None,
            )
            .unwrap();
            model = trained;
            out.loss
        })
        .collect()
}

fn assert_close(name: &str, got: &[f32], want: &[f32]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-3 * w.abs().max(1.0), "{name} step {i}: {g} vs flex {w} ({got:?} vs {want:?})");
    }
}

#[test]
fn same_steps_same_losses_on_every_reachable_backend() {
    let adapters = selfsup::backend::wgpu_adapters();
    if adapters.is_empty() {
        assert!(
            std::env::var_os("SELFSUP_REQUIRE_WGPU").is_none(),
            "SELFSUP_REQUIRE_WGPU is set but wgpu finds no adapter"
        );
        eprintln!("wgpu: no adapter on this machine, skipped (install mesa-vulkan-drivers to test it)");
    } else {
        eprintln!("wgpu adapters: {adapters:?}");
    }
    for kind in MethodKind::ALL {
        let cfg = config(kind);
        let name = kind.name();
        let flex = Device::flex();
        flex.seed(3);
        let weights = named_tensors::collect(&cfg.encoder(&flex));
        let data = batches(&cfg);
        let reference = losses(Device::flex(), &weights, &data, &cfg);
        assert!(reference.iter().all(|l| l.is_finite()), "{name}: {reference:?}");
        // The steps really train: the losses are not all equal.
        assert!(reference.windows(2).any(|w| w[0] != w[1]), "{name}: {reference:?}");

        #[allow(deprecated)]
        let ndarray = Device::ndarray();
        assert_close(&format!("{name} ndarray"), &losses(ndarray, &weights, &data, &cfg), &reference);
        if !adapters.is_empty() {
            let wgpu = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
            assert_close(&format!("{name} wgpu"), &losses(wgpu, &weights, &data, &cfg), &reference);
        }
    }
}
