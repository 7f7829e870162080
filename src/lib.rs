//! # selfsup
//!
//! Self-supervised pretraining of vision encoders (SimCLR). This crate holds what needs burn —
//! the models, losses, training and evaluation — plus the command line; the data side lives in
//! the burn-free crates `selfsup-datasets` (image sources) and `selfsup-augment` (two-view
//! augmentation). See ARCHITECTURE.md for the map.

pub mod atomic;
pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod preview;
