//! # selfsup-datasets
//!
//! Where selfsup's images come from, with no dependency on burn. [`open`] takes a path and
//! returns a [`Dataset`]: 8-bit RGB images (and labels when the layout has them) served from a
//! compact in-memory cache, or decoded on the fly when they do not fit the memory budget.
//!
//! - [`scan`]: image folders (recursive, sorted, folders listed in parallel, ImageFolder class
//!   layout, hidden and non-image files ignored, symlinks followed without looping);
//! - [`decode`]: one file to RGB8 with decompression-bomb limits, EXIF orientation and optional
//!   resize at load, or at a reduced scale its views allow (JPEG through libjpeg-turbo,
//!   `jpeg.rs`, with DCT scaling);
//! - [`cache`]: the compact pixel store (≤ 1.05× the raw pixel bytes);
//! - [`cifar`] and [`idx`]: the CIFAR-10/100 binary and IDX (MNIST, Fashion-MNIST) formats;
//! - [`dataset`]: opening, parallel loading with a progress bar and counted skips, streaming;
//! - [`read_ahead`]: a reader thread reading a streaming epoch's files ahead of the decoding,
//!   within a bound;
//! - [`split`]: stratified seeded train/validation splits and `limit N` subsets;
//! - [`synthetic`]: a generated labelled set of shapes and textures for the demo;
//! - [`pack`]: writing WebDataset shards from an image folder (`selfsup pack`);
//! - [`webdataset`]: WebDataset tar shards (brace patterns, the header index, damaged shards
//!   skipped and counted).

pub mod cache;
pub mod cifar;
pub mod dataset;
pub mod decode;
pub mod error;
pub mod idx;
mod jpeg;
pub mod pack;
pub mod read_ahead;
pub mod scan;
pub mod split;
pub mod synthetic;
pub mod webdataset;

pub use dataset::{Dataset, LoadOptions, Skipped, SourceKind, open};
pub use decode::{DecodeOptions, RgbImage8};
pub use error::DatasetError;
pub use read_ahead::ReadAhead;
