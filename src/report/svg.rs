//! The drawing kit of the report: a chart with labelled linear or log axes
//! and its marks, written as inline SVG text. Every string from the input
//! goes through [`xml`] (the escaper the XML outputs use too); nothing here
//! fetches or scripts anything.

use std::fmt::Write;

use crate::service::escape::xml;

/// Colour-blind-safe palette (Okabe and Ito), in order of use.
pub const COLORS: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

/// Dash patterns, for a second distinction that survives black-and-white print.
pub const DASHES: [&str; 4] = ["", "6 3", "2 2", "8 3 2 3"];

/// One axis: its label (with the unit), range and scale.
#[derive(Debug, Clone)]
pub struct Axis {
    pub label: String,
    pub min: f64,
    pub max: f64,
    pub log: bool,
    /// Formats a tick value.
    pub unit: Unit,
}

/// How tick values are written.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// Microseconds, written as µs, ms or s.
    Micros,
    /// Plain numbers with k/M suffixes.
    Count,
    /// Seconds with up to one decimal.
    Seconds,
}

impl Axis {
    pub fn linear(label: &str, min: f64, max: f64, unit: Unit) -> Axis {
        let max = if max > min { max } else { min + 1.0 };
        Axis {
            label: label.into(),
            min,
            max,
            log: false,
            unit,
        }
    }

    /// A log axis over whole decades covering `min..max`.
    pub fn log(label: &str, min: f64, max: f64, unit: Unit) -> Axis {
        let lo = 10f64.powf(min.max(1.0).log10().floor());
        let mut hi = 10f64.powf(max.max(1.0).log10().ceil());
        if hi <= lo {
            hi = lo * 10.0;
        }
        Axis {
            label: label.into(),
            min: lo,
            max: hi,
            log: true,
            unit,
        }
    }

    /// Where `v` falls, from 0 (min) to 1 (max), clamped.
    pub fn frac(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.max(self.min).log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
        } else {
            (v - self.min) / (self.max - self.min)
        };
        f.clamp(0.0, 1.0)
    }

    /// Decimals a linear tick needs to tell its neighbours apart.
    fn decimals(&self) -> usize {
        match self.ticks().as_slice() {
            [a, b, ..] if !self.log => (-(b - a).log10().floor()).max(0.0) as usize + 1,
            _ => 0,
        }
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let mut t = Vec::new();
            let mut v = self.min;
            while v <= self.max * 1.000_001 {
                t.push(v);
                v *= 10.0;
            }
            return t;
        }
        let span = self.max - self.min;
        let raw = span / 6.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| span / s <= 7.0)
            .unwrap_or(10.0 * mag);
        // Counts tick at whole numbers once the span allows (retries 0–3,
        // not 0, 0.5, 1, ...).
        let step = match self.unit {
            Unit::Count if span >= 2.0 => step.max(1.0),
            _ => step,
        };
        let mut t = Vec::new();
        let mut v = (self.min / step).ceil() * step;
        while v <= self.max + step * 1e-9 {
            t.push(v);
            v += step;
        }
        t
    }

    pub fn format(&self, v: f64) -> String {
        match self.unit {
            Unit::Micros => micros(v),
            Unit::Count => count(v),
            Unit::Seconds => {
                let s = format!("{v:.*}", self.decimals());
                if s.contains('.') {
                    s.trim_end_matches('0').trim_end_matches('.').to_string()
                } else {
                    s
                }
            }
        }
    }
}

/// Microseconds as a person reads them: 870 µs, 1.2 ms, 3 s.
pub fn micros(v: f64) -> String {
    let trim = |x: f64| {
        let s = format!("{x:.1}");
        s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
    };
    if v >= 1e6 {
        format!("{} s", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{} ms", trim(v / 1e3))
    } else {
        format!("{} µs", trim(v))
    }
}

/// A count with k/M suffixes.
pub fn count(v: f64) -> String {
    let trim = |x: f64| {
        let s = format!("{x:.1}");
        s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
    };
    if v.abs() >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v.abs() >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

/// A chart being drawn: plot area, axes, marks and legend.
pub struct Chart {
    id: String,
    title: String,
    pub x: Axis,
    pub y: Axis,
    width: f64,
    height: f64,
    body: String,
    legend: Vec<(String, String, String)>,
    note: Option<String>,
    /// Left margin: room for the y tick labels (or row labels).
    left: f64,
    /// No y tick labels (rows are labelled instead).
    pub hide_y: bool,
    /// No x ticks (categories are labelled instead, [`Chart::label_below`]).
    pub hide_x: bool,
}

const LEFT: f64 = 78.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 52.0;

impl Chart {
    /// A chart of `width` × `height` pixels; `id` names the plot for tests.
    pub fn new(id: &str, title: &str, x: Axis, y: Axis, width: f64, height: f64) -> Chart {
        Chart {
            id: id.into(),
            title: title.into(),
            x,
            y,
            width,
            height,
            body: String::new(),
            legend: Vec::new(),
            note: None,
            left: LEFT,
            hide_y: false,
            hide_x: false,
        }
    }

    /// The plot's name (`data-plot`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The chart as a standalone SVG document: the legend drawn under the
    /// axis label, inside the image.
    pub fn standalone(mut self) -> String {
        let entries = std::mem::take(&mut self.legend);
        self.note = None;
        let rows = entries.len();
        let extra = if rows == 0 {
            0.0
        } else {
            8.0 + 16.0 * rows as f64
        };
        let (w, h) = (self.width, self.height);
        let mut legend = String::new();
        for (i, (label, color, dash)) in entries.iter().enumerate() {
            let y = h + 10.0 + 16.0 * i as f64;
            let _ = write!(
                legend,
                r#"<g class="legend"><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"{}/><text x="{:.1}" y="{:.1}" font-size="12">{}</text></g>"#,
                self.left,
                y - 4.0,
                self.left + 26.0,
                y - 4.0,
                dash_attr(dash),
                self.left + 32.0,
                y,
                xml(label)
            );
        }
        let mut s = self.finish(false);
        // The page's figure, reshaped: the <svg> alone, taller, legend inside.
        let start = s.find("<svg").unwrap_or(0);
        let end = s.rfind("</svg>").map_or(s.len(), |i| i + "</svg>".len());
        s = s[start..end].to_string();
        debug_assert!(
            !s[4..].contains("<svg"),
            "one svg: legend and caption were taken out"
        );
        let old = format!(r#"viewBox="0 0 {w:.0} {h:.0}" width="{w:.0}" height="{h:.0}""#);
        let new = format!(
            r#"viewBox="0 0 {w:.0} {t:.0}" width="{w:.0}" height="{t:.0}""#,
            t = h + extra
        );
        s = s.replacen(&old, &new, 1);
        let body_end = s.rfind("</svg>").unwrap_or(s.len());
        s.insert_str(body_end, &legend);
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{s}\n")
    }

    /// Widens the left margin (for long row labels).
    pub fn set_left(&mut self, px: f64) {
        self.left = px;
    }

    fn plot_w(&self) -> f64 {
        self.width - self.left - RIGHT
    }

    fn plot_h(&self) -> f64 {
        self.height - TOP - BOTTOM
    }

    /// Pixel x of a data value.
    pub fn px(&self, v: f64) -> f64 {
        self.left + self.x.frac(v) * self.plot_w()
    }

    /// Pixel y of a data value.
    pub fn py(&self, v: f64) -> f64 {
        TOP + (1.0 - self.y.frac(v)) * self.plot_h()
    }

    /// A legend entry (colour, dash pattern).
    pub fn legend(&mut self, label: &str, color: &str, dash: &str) {
        self.legend.push((label.into(), color.into(), dash.into()));
    }

    /// A caption line under the chart.
    pub fn note(&mut self, text: &str) {
        self.note = Some(text.into());
    }

    /// A polyline through data points (points off a log axis's range are
    /// clamped to its edge).
    pub fn line(&mut self, pts: &[(f64, f64)], color: &str, dash: &str, title: &str) {
        if pts.is_empty() {
            return;
        }
        let mut d = String::new();
        for (i, &(x, y)) in pts.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                self.px(x),
                self.py(y)
            );
        }
        let _ = write!(
            self.body,
            r#"<path class="data" d="{d}" fill="none" stroke="{color}" stroke-width="1.8"{}><title>{}</title></path>"#,
            dash_attr(dash),
            xml(title)
        );
    }

    /// A vertical marker at data x `v` with a short label at the top.
    pub fn vline(&mut self, v: f64, color: &str, label: &str, row: usize) {
        let x = self.px(v);
        let (y0, y1) = (TOP, TOP + self.plot_h());
        let _ = write!(
            self.body,
            r#"<g class="marker"><line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{y1:.1}" stroke="{color}" stroke-dasharray="3 2" stroke-width="1"/><text x="{:.1}" y="{:.1}" font-size="10" fill="{color}">{}</text></g>"#,
            x + 2.0,
            y0 + 10.0 + 11.0 * row as f64,
            xml(label)
        );
    }

    /// A filled rectangle between data coordinates, with a hover title.
    pub fn rect(&mut self, x0: f64, x1: f64, y0: f64, y1: f64, color: &str, title: &str) {
        let (a, b) = (self.px(x0), self.px(x1));
        let (c, d) = (self.py(y0), self.py(y1));
        let _ = write!(
            self.body,
            r#"<rect class="data" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{}</title></rect>"#,
            a.min(b),
            c.min(d),
            (b - a).abs().max(1.0),
            (d - c).abs().max(1.0),
            xml(title)
        );
    }

    /// A dot at a data point.
    pub fn dot(&mut self, x: f64, y: f64, r: f64, color: &str, title: &str) {
        let _ = write!(
            self.body,
            r#"<circle class="data" cx="{:.1}" cy="{:.1}" r="{r}" fill="{color}"><title>{}</title></circle>"#,
            self.px(x),
            self.py(y),
            xml(title)
        );
    }

    /// A short vertical tick at a data point (an event on a waterfall row).
    pub fn tick(&mut self, x: f64, y: f64, half: f64, color: &str, title: &str) {
        let (px, py) = (self.px(x), self.py(y));
        let _ = write!(
            self.body,
            r#"<line class="data" x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"><title>{}</title></line>"#,
            py - half,
            py + half,
            xml(title)
        );
    }

    /// Text at a data point, anchored at its end (row labels).
    pub fn label_left(&mut self, y: f64, text: &str) {
        let _ = write!(
            self.body,
            r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="end">{}</text>"#,
            self.left - 4.0,
            self.py(y) + 3.0,
            xml(text)
        );
    }

    /// A category's name under the x axis, centred on data x `x`.
    pub fn label_below(&mut self, x: f64, text: &str) {
        let _ = write!(
            self.body,
            r#"<text class="tick" x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            self.px(x),
            TOP + self.plot_h() + 15.0,
            xml(text)
        );
    }

    /// A small value label just above the data point (`x`, `y`).
    pub fn label_above(&mut self, x: f64, y: f64, text: &str) {
        let _ = write!(
            self.body,
            r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"#,
            self.px(x),
            self.py(y) - 3.0,
            xml(text)
        );
    }

    /// The chart as a `<figure>`: SVG with axes, ticks, labels, legend.
    pub fn finish(self, hide_y_ticks: bool) -> String {
        let hide_y_ticks = hide_y_ticks || self.hide_y;
        let left = self.left;
        let (w, h) = (self.width, self.height);
        let (pw, ph) = (self.plot_w(), self.plot_h());
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<figure class="plot" data-plot="{id}"><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w:.0} {h:.0}" width="{w:.0}" height="{h:.0}" role="img" aria-label="{t}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/><text class="title" x="{:.1}" y="18" font-size="14" font-weight="bold" text-anchor="middle">{t}</text>"#,
            w / 2.0,
            id = xml(&self.id),
            t = xml(&self.title),
        );
        // Grid and ticks.
        s.push_str(r#"<g class="axis x">"#);
        let x_ticks = if self.hide_x {
            Vec::new()
        } else {
            self.x.ticks()
        };
        for v in x_ticks {
            let x = self.px(v);
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text class="tick" x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 15.0,
                xml(&self.x.format(v))
            );
        }
        s.push_str("</g>");
        s.push_str(r#"<g class="axis y">"#);
        if !hide_y_ticks {
            for v in self.y.ticks() {
                let y = self.py(v);
                let _ = write!(
                    s,
                    r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text class="tick" x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                    self.left + pw,
                    self.left - 6.0,
                    y + 4.0,
                    xml(&self.y.format(v))
                );
            }
        }
        s.push_str("</g>");
        let _ = write!(
            s,
            r#"<rect x="{left}" y="{TOP}" width="{pw:.1}" height="{ph:.1}" fill="none" stroke="black"/>"#
        );
        s.push_str(&self.body);
        let _ = write!(
            s,
            r#"<text class="axis-label x" x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
            self.left + pw / 2.0,
            h - 12.0,
            xml(&self.x.label)
        );
        let _ = write!(
            s,
            r#"<text class="axis-label y" transform="translate(16 {:.1}) rotate(-90)" font-size="12" text-anchor="middle">{}</text>"#,
            TOP + ph / 2.0,
            xml(&self.y.label)
        );
        s.push_str("</svg>");
        // The legend under the plot, as text that wraps and prints.
        if !self.legend.is_empty() {
            s.push_str(r#"<div class="legend">"#);
            for (label, color, dash) in &self.legend {
                let _ = write!(
                    s,
                    r#"<span class="key"><svg width="26" height="10"><line x1="1" y1="5" x2="25" y2="5" stroke="{color}" stroke-width="3"{}/></svg>{}</span> "#,
                    dash_attr(dash),
                    xml(label)
                );
            }
            s.push_str("</div>");
        }
        if let Some(note) = &self.note {
            let _ = write!(s, "<figcaption>{}</figcaption>", xml(note));
        }
        s.push_str("</figure>\n");
        s
    }
}

fn dash_attr(dash: &str) -> String {
    if dash.is_empty() {
        String::new()
    } else {
        format!(r#" stroke-dasharray="{dash}""#)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axis_covers_whole_decades() {
        let a = Axis::log("t", 37.0, 4200.0, Unit::Micros);
        assert_eq!((a.min, a.max), (10.0, 10_000.0));
        assert_eq!(a.ticks(), vec![10.0, 100.0, 1000.0, 10_000.0]);
        assert_eq!(a.frac(100.0), 1.0 / 3.0);
        assert_eq!(a.format(1000.0), "1 ms");
        assert_eq!(micros(1_500_000.0), "1.5 s");
    }

    #[test]
    fn linear_ticks_are_round_numbers() {
        let a = Axis::linear("n", 0.0, 9.3, Unit::Count);
        assert_eq!(a.ticks(), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        let retries = Axis::linear("retries", 0.0, 3.0, Unit::Count);
        assert_eq!(retries.ticks(), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(count(65_536.0), "65.5k");
    }

    #[test]
    fn a_chart_has_its_labelled_axes_and_escaped_text() {
        let mut c = Chart::new(
            "p",
            "<b>",
            Axis::linear("time (s)", 0.0, 1.0, Unit::Seconds),
            Axis::linear("probes", 0.0, 10.0, Unit::Count),
            400.0,
            200.0,
        );
        c.line(&[(0.0, 1.0), (1.0, 5.0)], COLORS[0], "", "<i>");
        let s = c.finish(false);
        assert!(s.contains(r#"class="axis-label x""#) && s.contains("time (s)"));
        assert!(s.contains(r#"class="axis-label y""#) && s.contains(">probes<"));
        assert!(s.contains("&lt;b&gt;") && s.contains("&lt;i&gt;"));
        assert!(!s.contains("<b>") && !s.contains("<i>"));
    }
}
