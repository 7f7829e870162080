//! `selfsup bench augment`: augmentation throughput from decoded images in memory, in images
//! per second (each image yields all its views: `augment.views` full-size ones and multi-crop's
//! `augment.small_views` small ones, two full-size by default), on a chosen number of threads.
//! From a streaming dataset (`data.cache_limit=0`) every image is also read and decoded, its
//! files read ahead of the decoding as in training.

use anyhow::Result;
use selfsup_augment::{AugmentConfig, Augmenter, ImageRef};

use super::{median, time_rounds};
use crate::data::{Dataset, Images, ReadAheadImages};
use crate::train::loader::READ_AHEAD_BYTES;

/// Where the benchmark's images come from.
pub enum BenchImages<'a> {
    Dataset(&'a Dataset),
    /// Synthetic textured images of one size (`count` of them).
    Synthetic {
        width: u32,
        height: u32,
        count: usize,
    },
}

/// The measured figures.
#[derive(Debug)]
pub struct AugmentBench {
    pub threads: usize,
    pub images_per_round: usize,
    pub seconds: Vec<f64>,
}

impl AugmentBench {
    pub fn median_images_per_sec(&self) -> f64 {
        self.images_per_round as f64 / median(&self.seconds)
    }
}

fn synthetic(width: u32, height: u32, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|k| {
            let mut px = Vec::with_capacity((width * height * 3) as usize);
            for y in 0..height {
                for x in 0..width {
                    let v = x.wrapping_mul(31 + k as u32) ^ y.wrapping_mul(17);
                    px.extend_from_slice(&[(v & 255) as u8, ((v >> 3) & 255) as u8, ((x + y + k as u32) & 255) as u8]);
                }
            }
            px
        })
        .collect()
}

/// Augments `images_per_round` images (cycling through the source) per round, in batches of
/// `batch`, `rounds` times, on `threads` threads.
pub fn run(
    cfg: &AugmentConfig,
    source: &BenchImages<'_>,
    threads: usize,
    batch: usize,
    images_per_round: usize,
    rounds: usize,
) -> Result<AugmentBench> {
    let aug = Augmenter::new(cfg.clone())?;
    let small = aug.small_views();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let mut full_out = vec![0.0f32; batch * cfg.views as usize * aug.view_len()];
    let mut small_out = vec![0.0f32; batch * small.as_ref().map_or(0, |s| cfg.small_views as usize * s.view_len())];
    let owned;
    let refs: Vec<ImageRef<'_>>;
    let images: &dyn ImageSourceDyn = match source {
        BenchImages::Dataset(ds) => &Images(ds),
        BenchImages::Synthetic { width, height, count } => {
            owned = synthetic(*width, *height, *count);
            refs = owned.iter().map(|p| ImageRef::new(*width, *height, p)).collect();
            &refs
        }
    };
    let n = images.count();
    let dataset = match source {
        BenchImages::Dataset(ds) => Some(*ds),
        BenchImages::Synthetic { .. } => None,
    };
    let seconds = time_rounds(rounds + 1, |round| {
        // A streaming dataset's files are read ahead of the decoding, as in training.
        let order: Vec<usize> = (0..images_per_round).map(|i| i % n).collect();
        let ahead = dataset.and_then(|ds| ds.read_ahead(&order, 2 * batch, READ_AHEAD_BYTES));
        let with_ahead = ahead.as_ref().zip(dataset).map(|(ahead, ds)| ReadAheadImages { ds, ahead });
        let source: &dyn ImageSourceDyn = match &with_ahead {
            Some(s) => s,
            None => images,
        };
        pool.install(|| {
            let mut done = 0;
            while done < images_per_round {
                let b = batch.min(images_per_round - done);
                let samples = &order[done..done + b];
                let full_len = b * full_out.len() / batch;
                let small_len = b * small_out.len() / batch;
                let epoch = round as u64;
                source.batch(
                    &aug,
                    small.as_ref(),
                    samples,
                    epoch,
                    &mut full_out[..full_len],
                    &mut small_out[..small_len],
                );
                done += b;
            }
        })
    });
    // The first round warms caches and the thread pool; it is not counted.
    Ok(AugmentBench { threads, images_per_round, seconds: seconds[1..].to_vec() })
}

/// Object-safe wrapper so a dataset and a slice of images can be benchmarked alike.
trait ImageSourceDyn: Sync {
    fn count(&self) -> usize;
    fn batch(
        &self,
        aug: &Augmenter,
        small: Option<&Augmenter>,
        samples: &[usize],
        epoch: u64,
        full: &mut [f32],
        small_out: &mut [f32],
    );
}

impl<T: selfsup_augment::ImageSource + ?Sized> ImageSourceDyn for T {
    fn count(&self) -> usize {
        self.len()
    }
    fn batch(
        &self,
        aug: &Augmenter,
        small: Option<&Augmenter>,
        samples: &[usize],
        epoch: u64,
        full: &mut [f32],
        small_out: &mut [f32],
    ) {
        aug.training_views_batch(small, self, samples, 0, epoch, full, small_out);
    }
}
