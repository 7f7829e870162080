//! Captions on the pictures selfsup writes (the preview grid, the neighbour grid): a line of
//! text on a dark strip along the bottom of a grid cell, drawn with imageproc in the DejaVu Sans
//! font compiled into the binary (so it renders on machines without fonts).

use ab_glyph::{FontRef, PxScale};
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_text_mut, text_size};
use imageproc::rect::Rect;

const STRIP: Rgb<u8> = Rgb([16, 16, 16]);
const TEXT: Rgb<u8> = Rgb([235, 235, 235]);

fn font() -> FontRef<'static> {
    FontRef::try_from_slice(dejavu::sans::regular()).expect("the compiled-in DejaVu Sans font parses")
}

/// Writes `text` on a strip along the bottom of the `cell` × `cell` square at (`x`, `y`) of
/// `out`, shortened with "…" to fit its width.
pub fn caption(out: &mut RgbImage, x: u32, y: u32, cell: u32, text: &str) {
    let font = font();
    let scale = PxScale::from((cell as f32 / 9.0).clamp(10.0, 16.0));
    let strip = (scale.y * 1.3).ceil() as u32;
    if cell <= strip || text.is_empty() {
        return;
    }
    let mut shown: String = text.to_string();
    while !shown.is_empty() && text_size(scale, &font, &shown).0 + 6 > cell {
        shown.pop();
        while shown.ends_with('…') {
            shown.pop();
        }
        shown.pop();
        shown.push('…');
    }
    let top = y + cell - strip;
    draw_filled_rect_mut(out, Rect::at(x as i32, top as i32).of_size(cell, strip), STRIP);
    draw_text_mut(out, TEXT, x as i32 + 3, top as i32 + (strip as i32 - scale.y as i32) / 2, scale, &font, &shown);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_drawn_inside_its_strip_only() {
        let bg = Rgb([90, 0, 0]);
        let mut img = RgbImage::from_pixel(300, 200, bg);
        caption(&mut img, 10, 20, 128, "a rather long class name that cannot fit in one cell");
        let strip = 128 - (14.22f32 * 1.3).ceil() as u32; // scale 128 / 9
        let mut lit = 0;
        for (x, y, p) in img.enumerate_pixels() {
            let inside = (10..138).contains(&x) && (20 + strip..148).contains(&y);
            if !inside {
                assert_eq!(*p, bg, "pixel {x},{y} outside the strip changed");
            } else if p.0[1] > 128 {
                lit += 1;
            }
        }
        assert!(lit > 100, "the text is drawn ({lit} light pixels)");
    }
}
