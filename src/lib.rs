//! # selfsup
//!
//! Self-supervised pretraining of vision encoders (SimCLR, MoCo, BYOL, SimSiam, Barlow Twins,
//! VICReg, NNCLR, DINO). This crate holds what needs burn — the models, losses, methods,
//! training and evaluation — plus the command line; the data side lives in the burn-free crates
//! `selfsup-datasets` (image sources) and `selfsup-augment` (two-view augmentation). See
//! ARCHITECTURE.md for the map.

pub mod atomic;
pub mod backend;
pub mod bench;
pub mod caption;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod cpu_kernels;
pub mod data;
pub mod dist;
pub mod eval;
pub mod interop;
pub mod loss;
pub mod method;
pub mod model;
pub mod named_tensors;
pub mod neighbors;
pub mod npy;
pub mod optim;
pub mod preview;
pub mod report;
pub mod safetensors_file;
pub mod train;
