//! The bridge between the two data crates: opening a [`Dataset`] from the run configuration, and
//! lending its images to the augmentation stage (an [`ImageSource`]).

use std::path::Path;

use anyhow::Result;
use selfsup_augment::{ImageRef, ImageSource};
use selfsup_datasets::{DecodeOptions, LoadOptions};

pub use selfsup_datasets::Dataset;

use crate::config::Config;

/// The loader options the configuration asks for.
pub fn load_options(cfg: &Config, verbose: bool) -> LoadOptions {
    LoadOptions {
        decode: DecodeOptions { load_size: cfg.data.load_size, max_pixels: cfg.data.max_pixels },
        cache_limit: cfg.data.cache_limit.0,
        limit: cfg.data.limit,
        seed: cfg.seed,
        verbose,
    }
}

/// Opens the dataset at `path` as the configuration says.
pub fn open_dataset(path: &Path, cfg: &Config, verbose: bool) -> Result<Dataset> {
    Ok(selfsup_datasets::open(path, &load_options(cfg, verbose))?)
}

/// A dataset seen as an augmentation source.
pub struct Images<'a>(pub &'a Dataset);

impl ImageSource for Images<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn with_image(&self, index: usize, f: &mut dyn FnMut(ImageRef<'_>)) {
        self.0.with_image(index, |w, h, px| f(ImageRef::new(w, h, px)));
    }
}
