//! Helpers shared by the end-to-end benches (`scenarios.rs`, `netsim.rs`):
//! environment knobs, writing results, and the few pieces of SVG both
//! plotters draw with.

use std::path::Path;

/// An environment knob, or its default.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// A comma list, empty items dropped.
pub fn list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// Writes a result file and says so on stderr.
pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    eprintln!("bench: wrote {}", path.display());
}

/// Series colours, in order.
pub const COLORS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#b07aa1",
];

/// The opening of an SVG document of `w` × `h` on a white background.
pub fn svg_open(w: f64, h: f64) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>
"#
    )
}

/// A plot's frame: the x axis along the bottom of the `w` × `h` area whose
/// top left corner is (`left`, `top`), and the y axis up its left side.
pub fn axes(s: &mut String, left: f64, top: f64, w: f64, h: f64) {
    let bottom = top + h;
    let right = left + w;
    s.push_str(&format!(
        r#"<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="black"/>"#
    ));
    s.push('\n');
}

/// Text of `size` px centred on `x`, its baseline at `y`: tick labels and
/// axis titles.
pub fn text_middle(s: &mut String, x: f64, y: f64, size: u32, text: &str) {
    s.push_str(&format!(
        r#"<text x="{x:.1}" y="{y}" font-size="{size}" text-anchor="middle">{text}</text>"#
    ));
    s.push('\n');
}

/// Tick values for a linear axis from 0 to `max`: multiples of 1, 2 or 5
/// times a power of ten, four to eight of them.
#[allow(dead_code)] // the scenarios bench's line charts
pub fn linear_ticks(max: f64) -> Vec<f64> {
    if max <= 0.0 || !max.is_finite() {
        return vec![0.0];
    }
    let raw = max / 5.0;
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * pow)
        .find(|&s| max / s <= 8.0)
        .unwrap_or(10.0 * pow);
    (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|&v| v <= max * 1.0001)
        .collect()
}

/// A y axis's scale: a tick and its value at each of `ticks`, placed by
/// `y`, left of `left`; and the axis title, turned along it.
#[allow(dead_code)] // the scenarios bench's line charts
pub fn y_scale(
    s: &mut String,
    left: f64,
    top: f64,
    h: f64,
    ticks: &[f64],
    y: impl Fn(f64) -> f64,
    title: &str,
) {
    for &v in ticks {
        let ty = y(v);
        s.push_str(&format!(
            r#"<line x1="{:.1}" y1="{ty:.1}" x2="{left}" y2="{ty:.1}" stroke="black"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"#,
            left - 4.0,
            left - 6.0,
            ty + 3.5,
            human(v)
        ));
        s.push('\n');
    }
    let cy = top + h / 2.0;
    s.push_str(&format!(
        r#"<text x="14" y="{cy:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 14 {cy:.1})">{title}</text>"#
    ));
    s.push('\n');
}

/// 1234567 → `1.2M`, 12345 → `12k`.
pub fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v == v.trunc() || v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}
