//! The icons' pixmaps (アイコン画像), drawn at start: a coloured disc per state with a white
//! mark, so the five states stay apart even where the icon theme lacks the named icons or
//! the host ignores names (tech-notes §5: ship pixmaps, not only theme names).
//!
//! ARGB32 in network byte order, as the StatusNotifierItem `IconPixmap` property wants.
//! Colour is never the only cue: each state also has its own mark.

use crate::view::Indicator;

/// The sizes drawn; hosts pick the nearest.
pub const SIZES: [u32; 3] = [16, 24, 32];

/// One drawn icon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixmap {
    /// Width and height in pixels.
    pub size: u32,
    /// `size * size` pixels, ARGB, big-endian.
    pub argb: Vec<u8>,
}

fn colour(i: Indicator) -> [u8; 3] {
    match i {
        Indicator::Online => [0x2e, 0x7d, 0x32],
        Indicator::Degraded => [0xf9, 0xa8, 0x25],
        Indicator::Offline => [0xc6, 0x28, 0x28],
        Indicator::Overdue => [0xef, 0x6c, 0x00],
        Indicator::Unreachable => [0x61, 0x61, 0x61],
    }
}

/// Whether the white mark covers the point (`x`, `y` from the centre, in units of the disc's
/// radius).
fn mark(i: Indicator, x: f32, y: f32) -> bool {
    match i {
        // A tick.
        Indicator::Online => {
            let near = |ax: f32, ay: f32, bx: f32, by: f32| {
                let (dx, dy) = (bx - ax, by - ay);
                let t = (((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
                let (px, py) = (ax + t * dx - x, ay + t * dy - y);
                px * px + py * py < 0.11 * 0.11
            };
            near(-0.45, 0.0, -0.12, 0.35) || near(-0.12, 0.35, 0.48, -0.35)
        }
        // A wave: answers come, but not all.
        Indicator::Degraded => {
            let wave = 0.2 * (x * std::f32::consts::PI * 1.5).sin();
            x.abs() < 0.6 && (y - wave).abs() < 0.12
        }
        // A bar: no entry.
        Indicator::Offline => x.abs() < 0.55 && y.abs() < 0.14,
        // An exclamation mark: a deadline passed.
        Indicator::Overdue => {
            (x.abs() < 0.12 && (-0.6..0.15).contains(&y))
                || (x * x + (y - 0.42) * (y - 0.42)) < 0.13 * 0.13
        }
        // A cross: no daemon.
        Indicator::Unreachable => {
            x.abs() < 0.5 && y.abs() < 0.5 && ((x - y).abs() < 0.16 || (x + y).abs() < 0.16)
        }
    }
}

/// Draws `indicator` at `size` pixels.
pub fn draw(indicator: Indicator, size: u32) -> Pixmap {
    let [r, g, b] = colour(indicator);
    let n = size as usize;
    let mut argb = Vec::with_capacity(n * n * 4);
    let half = size as f32 / 2.0;
    let radius = half - 0.5;
    for row in 0..size {
        for col in 0..size {
            let dx = col as f32 + 0.5 - half;
            let dy = row as f32 + 0.5 - half;
            let d = (dx * dx + dy * dy).sqrt();
            // One pixel of soft edge.
            let alpha = (radius - d + 0.5).clamp(0.0, 1.0);
            if alpha <= 0.0 {
                argb.extend_from_slice(&[0, 0, 0, 0]);
                continue;
            }
            let a = (alpha * 255.0).round() as u8;
            if mark(indicator, dx / radius, dy / radius) {
                argb.extend_from_slice(&[a, 0xff, 0xff, 0xff]);
            } else {
                argb.extend_from_slice(&[a, r, g, b]);
            }
        }
    }
    Pixmap { size, argb }
}

/// Every size of `indicator`.
pub fn all_sizes(indicator: Indicator) -> Vec<Pixmap> {
    SIZES.iter().map(|&s| draw(indicator, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(p: &Pixmap, x: u32, y: u32) -> [u8; 4] {
        let i = ((y * p.size + x) * 4) as usize;
        [p.argb[i], p.argb[i + 1], p.argb[i + 2], p.argb[i + 3]]
    }

    #[test]
    fn each_state_is_a_disc_of_its_own_with_a_mark() {
        let mut seen = std::collections::HashSet::new();
        for i in Indicator::ALL {
            for size in SIZES {
                let p = draw(i, size);
                assert_eq!(p.argb.len(), (size * size * 4) as usize);
                // It leaves the corners transparent and the disc opaque.
                assert_eq!(pixel(&p, 0, 0)[0], 0, "{i:?} {size}");
                assert_eq!(pixel(&p, size / 2, 1)[0], 255, "{i:?} {size}");
                // It has some white mark.
                assert!(
                    p.argb.chunks(4).any(|c| c == [255, 255, 255, 255]),
                    "{i:?} {size} has no mark"
                );
            }
            assert!(
                seen.insert(draw(i, 32).argb),
                "{i:?} looks like another state"
            );
        }
    }
}
