//! The compact in-memory pixel store: 8-bit RGB images packed back to back in a few large
//! buffers ("chunks", one per block of files decoded together), each buffer sized exactly, plus
//! a 24-byte slot per image. For CIFAR-sized images (3,072 bytes) that is < 1 % over the raw
//! pixel bytes; the budget is ≤ 1.05×.

/// Where one image lives.
#[derive(Clone, Copy, Debug)]
struct Slot {
    chunk: u32,
    width: u32,
    height: u32,
    offset: u64,
}

/// Packed 8-bit RGB images, addressed by index.
#[derive(Debug, Default)]
pub struct ImageCache {
    chunks: Vec<Vec<u8>>,
    slots: Vec<Slot>,
}

/// Accumulates the images of one chunk.
#[derive(Debug, Default)]
pub struct ChunkBuilder {
    data: Vec<u8>,
    sizes: Vec<(u32, u32)>,
}

impl ChunkBuilder {
    pub fn push(&mut self, width: u32, height: u32, pixels: &[u8]) {
        debug_assert_eq!(pixels.len(), width as usize * height as usize * 3);
        self.data.extend_from_slice(pixels);
        self.sizes.push((width, height));
    }

    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// Pixel bytes held so far.
    pub fn bytes(&self) -> u64 {
        self.data.len() as u64
    }
}

impl ImageCache {
    /// Assembles chunks in order; each chunk's buffer is shrunk to its exact size.
    pub fn from_chunks(chunks: impl IntoIterator<Item = ChunkBuilder>) -> Self {
        let mut cache = Self::default();
        for mut chunk in chunks {
            chunk.data.shrink_to_fit();
            let c = cache.chunks.len() as u32;
            let mut offset = 0u64;
            for &(width, height) in &chunk.sizes {
                cache.slots.push(Slot { chunk: c, width, height, offset });
                offset += u64::from(width) * u64::from(height) * 3;
            }
            cache.chunks.push(chunk.data);
        }
        cache.slots.shrink_to_fit();
        cache
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Image `i` as `(width, height, pixels)`.
    pub fn get(&self, i: usize) -> (u32, u32, &[u8]) {
        let s = self.slots[i];
        let len = s.width as usize * s.height as usize * 3;
        let start = s.offset as usize;
        (s.width, s.height, &self.chunks[s.chunk as usize][start..start + len])
    }

    /// Sum of the images' raw RGB bytes.
    pub fn pixel_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.len() as u64).sum()
    }

    /// Heap bytes the cache holds (buffer capacities and slots).
    pub fn allocated_bytes(&self) -> u64 {
        let buffers: u64 = self.chunks.iter().map(|c| c.capacity() as u64).sum();
        buffers
            + (self.slots.capacity() * std::mem::size_of::<Slot>()
                + self.chunks.capacity() * std::mem::size_of::<Vec<u8>>()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_round_trip_across_chunks_and_memory_is_tight() {
        let mut chunks = Vec::new();
        let mut want = Vec::new();
        for c in 0..5u32 {
            let mut b = ChunkBuilder::default();
            for i in 0..200u32 {
                let (w, h) = (32 + (i % 3), 32 - (i % 2));
                let px: Vec<u8> = (0..w * h * 3).map(|k| ((k + i * 13 + c) % 256) as u8).collect();
                b.push(w, h, &px);
                want.push((w, h, px));
            }
            chunks.push(b);
        }
        let cache = ImageCache::from_chunks(chunks);
        assert_eq!(cache.len(), 1000);
        for (i, (w, h, px)) in want.iter().enumerate() {
            let (gw, gh, gp) = cache.get(i);
            assert_eq!((gw, gh), (*w, *h));
            assert_eq!(gp, &px[..]);
        }
        let raw: u64 = want.iter().map(|(_, _, p)| p.len() as u64).sum();
        assert_eq!(cache.pixel_bytes(), raw);
        assert!(cache.allocated_bytes() as f64 <= 1.05 * raw as f64, "{} vs {raw}", cache.allocated_bytes());
    }
}
