//! Choosing burn's backend at run time: `--backend auto|flex|ndarray|wgpu` (and `cuda` when
//! built with the `cuda` feature). Models and tensors carry no backend type; the [`Device`] made
//! here decides where everything runs.

use std::fmt;

use anyhow::{Result, bail};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// A backend the user can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// A real GPU through wgpu if one is found, else the fastest CPU backend (flex).
    Auto,
    /// burn's pure-Rust CPU backend (the fastest CPU backend, see BENCHMARKS.md).
    Flex,
    /// burn's ndarray CPU backend (deprecated upstream; selfsup's convolution and batch-norm kernels run on it as on flex).
    Ndarray,
    /// wgpu: Vulkan, Metal or DX12 GPUs (or a software Vulkan such as lavapipe).
    Wgpu,
    /// CUDA (only in builds with `--features cuda`).
    Cuda,
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Auto => "auto",
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        };
        f.write_str(s)
    }
}

/// A resolved backend: the device to compute on and a description for people and run folders.
#[derive(Clone, Debug)]
pub struct ChosenDevice {
    pub backend: BackendChoice,
    pub device: Device,
    pub description: String,
}

/// What wgpu reports about the adapters it can open: `(name, type, API)`.
pub fn wgpu_adapters() -> Vec<(String, String, String)> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    // Vulkan, Metal, DX12 and WebGPU: the APIs burn's wgpu backend computes on. (Probing GL
    // too only prints EGL noise on headless machines.)
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    adapters
        .iter()
        .map(|a| {
            let info = a.get_info();
            (info.name, format!("{:?}", info.device_type), format!("{:?}", info.backend))
        })
        .collect()
}

fn is_real_gpu(kind: &str) -> bool {
    kind == "DiscreteGpu" || kind == "IntegratedGpu"
}

/// The wgpu device of this process: under several ranks with several discrete GPUs, the GPU
/// of its local rank (rank `r` on a machine takes GPU `r mod count`); else wgpu's default.
fn wgpu_device(adapters: &[(String, String, String)]) -> (Device, String) {
    let discrete = adapters.iter().filter(|(_, k, _)| k == "DiscreteGpu").count();
    match crate::dist::local_rank() {
        Some(local) if crate::dist::world().size() > 1 && discrete > 1 => (
            Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(local % discrete)),
            format!(" [discrete GPU {} of {discrete}, for local rank {local}]", local % discrete),
        ),
        _ => (Device::wgpu(burn::tensor::DeviceKind::DefaultDevice), String::new()),
    }
}

/// Resolves `choice` to a device (without autodiff; training adds it).
pub fn choose(choice: BackendChoice) -> Result<ChosenDevice> {
    match choice {
        BackendChoice::Auto => {
            let adapters = wgpu_adapters();
            match adapters.iter().find(|(_, kind, _)| is_real_gpu(kind)) {
                Some((name, kind, api)) => {
                    let (device, which) = wgpu_device(&adapters);
                    Ok(ChosenDevice {
                        backend: BackendChoice::Wgpu,
                        device,
                        description: format!("wgpu on {name} ({kind}, {api}) [auto: GPU found]{which}"),
                    })
                }
                None => Ok(ChosenDevice {
                    backend: BackendChoice::Flex,
                    device: Device::flex(),
                    description: format!("flex (CPU, {} threads) [auto: no GPU adapter]", rayon::current_num_threads()),
                }),
            }
        }
        BackendChoice::Flex => Ok(ChosenDevice {
            backend: choice,
            device: Device::flex(),
            description: format!("flex (CPU, {} threads)", rayon::current_num_threads()),
        }),
        BackendChoice::Ndarray => Ok(ChosenDevice {
            backend: choice,
            #[allow(deprecated)] // still shipped, and named by the design; see README
            device: Device::ndarray(),
            description: "ndarray (CPU)".into(),
        }),
        BackendChoice::Wgpu => {
            let adapters = wgpu_adapters();
            let Some((name, kind, api)) = adapters.iter().find(|(_, k, _)| is_real_gpu(k)).or(adapters.first()) else {
                bail!(
                    "--backend wgpu: wgpu found no adapter (no Vulkan/Metal/DX12 driver?); on Debian or Ubuntu, `apt install mesa-vulkan-drivers` gives a software one"
                );
            };
            let (device, which) = wgpu_device(&adapters);
            Ok(ChosenDevice { backend: choice, device, description: format!("wgpu on {name} ({kind}, {api}){which}") })
        }
        BackendChoice::Cuda => cuda(),
    }
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<ChosenDevice> {
    // Under several ranks, rank r on a machine takes GPU r (one rank per GPU).
    let index = if crate::dist::world().size() > 1 { crate::dist::local_rank().unwrap_or(0) } else { 0 };
    Ok(ChosenDevice { backend: BackendChoice::Cuda, device: Device::cuda(index), description: format!("cuda:{index}") })
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<ChosenDevice> {
    bail!("--backend cuda: this selfsup was built without CUDA; rebuild with `cargo build --release --features cuda`")
}
