//! The two image types the augmentation stage works with: a borrowed 8-bit RGB source image and
//! the `f32` working image the operations modify in place.
//!
//! The working image is planar (all of R, then G, then B): every operation then streams over
//! contiguous runs of one channel, which the compiler turns into SIMD code, and the final
//! normalization into CHW is a straight per-plane pass.

/// A borrowed 8-bit RGB image: `pixels` is `width * height * 3` bytes, interleaved, row-major.
#[derive(Clone, Copy, Debug)]
pub struct ImageRef<'a> {
    pub width: u32,
    pub height: u32,
    pub pixels: &'a [u8],
}

impl<'a> ImageRef<'a> {
    /// Wraps `pixels`; panics if the length is not `width * height * 3` (a programming error).
    pub fn new(width: u32, height: u32, pixels: &'a [u8]) -> Self {
        assert_eq!(pixels.len(), width as usize * height as usize * 3, "RGB buffer size");
        Self { width, height, pixels }
    }
}

/// The working image: planar RGB `f32` in `[0, 1]` (`data` is the R plane, then G, then B,
/// each row-major).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RgbF32 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl RgbF32 {
    /// A black image of the given size.
    pub fn new(width: usize, height: usize) -> Self {
        Self { width, height, data: vec![0.0; width * height * 3] }
    }

    /// From interleaved `[r, g, b, r, g, b, …]` values.
    pub fn from_interleaved(width: usize, height: usize, values: &[f32]) -> Self {
        assert_eq!(values.len(), width * height * 3);
        let mut img = Self::new(width, height);
        let plane = width * height;
        for (i, px) in values.chunks_exact(3).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                img.data[c * plane + i] = v;
            }
        }
        img
    }

    /// Converts an 8-bit image (values / 255).
    pub fn from_u8(img: ImageRef<'_>) -> Self {
        let values: Vec<f32> = img.pixels.iter().map(|&v| f32::from(v) / 255.0).collect();
        Self::from_interleaved(img.width as usize, img.height as usize, &values)
    }

    /// Resizes in place (contents unspecified afterwards), reusing the allocation.
    pub fn reshape(&mut self, width: usize, height: usize) {
        self.width = width;
        self.height = height;
        self.data.resize(width * height * 3, 0.0);
    }

    /// Pixels per plane.
    pub fn plane_len(&self) -> usize {
        self.width * self.height
    }

    /// The three planes, mutably.
    pub fn planes_mut(&mut self) -> [&mut [f32]; 3] {
        let n = self.plane_len();
        let (r, rest) = self.data.split_at_mut(n);
        let (g, b) = rest.split_at_mut(n);
        [r, g, b]
    }

    /// The three planes.
    pub fn planes(&self) -> [&[f32]; 3] {
        let n = self.plane_len();
        [&self.data[..n], &self.data[n..2 * n], &self.data[2 * n..]]
    }

    /// Interleaved values, as [`from_interleaved`](Self::from_interleaved) takes them.
    pub fn to_interleaved(&self) -> Vec<f32> {
        let [r, g, b] = self.planes();
        r.iter().zip(g).zip(b).flat_map(|((&r, &g), &b)| [r, g, b]).collect()
    }

    /// Converts back to interleaved 8-bit RGB, rounding and clamping.
    pub fn to_u8(&self) -> Vec<u8> {
        self.to_interleaved().iter().map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect()
    }

    /// The pixel at `(x, y)` as `[r, g, b]`.
    pub fn pixel(&self, x: usize, y: usize) -> [f32; 3] {
        let i = y * self.width + x;
        let n = self.plane_len();
        [self.data[i], self.data[n + i], self.data[2 * n + i]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_round_trip_and_pixel_access() {
        let vals: Vec<f32> = (0..18).map(|v| v as f32 / 20.0).collect();
        let img = RgbF32::from_interleaved(3, 2, &vals);
        assert_eq!(img.to_interleaved(), vals);
        assert_eq!(img.pixel(1, 1), [12.0 / 20.0, 13.0 / 20.0, 14.0 / 20.0]);
        assert_eq!(img.data[6], 1.0 / 20.0, "G plane starts after the 6 R values");
        let px = [0u8, 128, 255, 7, 8, 9];
        assert_eq!(RgbF32::from_u8(ImageRef::new(2, 1, &px)).to_u8(), px);
    }
}
