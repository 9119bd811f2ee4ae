//! Figures of benchmark tables, drawn with the report's own kit
//! ([`Chart`]): a quantity per group and series as bars (scanners on each
//! scenario), or one quantity against another as lines with a mark per
//! measured point (probes/s against concurrency, recall against retries).
//!
//! The benches write their tables as CSV and draw every plot in docs/ from
//! those files through this module or `fastport report`: one drawing path,
//! with the report's labelled axes, palette and escaping.

use super::svg::{Axis, COLORS, Chart, DASHES};

/// Width and height of a figure, in pixels.
const SIZE: (f64, f64) = (720.0, 380.0);

/// One line of a [`lines`] figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The legend's text.
    pub label: String,
    /// (x, y) points, drawn in this order.
    pub points: Vec<(f64, f64)>,
    /// A reference (a model, an ideal) rather than a measurement: grey,
    /// dashed, no marks.
    pub reference: bool,
}

impl Line {
    /// A measured series.
    pub fn measured(label: &str, points: Vec<(f64, f64)>) -> Line {
        Line {
            label: label.into(),
            points,
            reference: false,
        }
    }

    /// A reference series (model, ideal).
    pub fn reference(label: &str, points: Vec<(f64, f64)>) -> Line {
        Line {
            label: label.into(),
            points,
            reference: true,
        }
    }
}

/// `lines` on the axes `x` and `y`, as a standalone SVG document (legend
/// inside). Each measured point gets a dot whose hover title is its value.
pub fn lines(id: &str, title: &str, x: Axis, y: Axis, lines: &[Line]) -> String {
    let mut c = Chart::new(id, title, x, y, SIZE.0, SIZE.1);
    let mut measured = 0;
    for l in lines {
        let (color, dash) = if l.reference {
            ("#777777", DASHES[1])
        } else {
            measured += 1;
            let i = measured - 1;
            (
                COLORS[i % COLORS.len()],
                DASHES[(i / COLORS.len()) % DASHES.len()],
            )
        };
        c.line(&l.points, color, dash, &l.label);
        if !l.reference {
            for &(px, py) in &l.points {
                let tip = format!("{}: {} at {}", l.label, c.y.format(py), c.x.format(px));
                c.dot(px, py, 3.0, color, &tip);
            }
        }
        c.legend(&l.label, color, dash);
    }
    c.standalone()
}

/// One series of a [`bars`] figure: a value (or none: not run, failed)
/// per group.
#[derive(Debug, Clone, PartialEq)]
pub struct BarSeries {
    /// The legend's text.
    pub label: String,
    /// One entry per group, in the groups' order.
    pub values: Vec<Option<f64>>,
}

/// Grouped bars: for each of `groups` (along x, named under the axis), one
/// bar per series, its value written above it with `y`'s unit. On a log
/// `y` a bar rises from the axis's minimum. A standalone SVG document.
pub fn bars(id: &str, title: &str, groups: &[String], series: &[BarSeries], y: Axis) -> String {
    let n = groups.len().max(1) as f64;
    let x = Axis::linear("", 0.0, n, super::svg::Unit::Count);
    let width = SIZE.0.max(90.0 * n * (series.len() as f64 / 4.0).max(1.0));
    let mut c = Chart::new(id, title, x, y, width, SIZE.1);
    c.hide_x = true;
    let k = series.len().max(1) as f64;
    let bar = 0.8 / k;
    for (g, name) in groups.iter().enumerate() {
        c.label_below(g as f64 + 0.5, name);
    }
    let base = c.y.min;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for (g, v) in s.values.iter().enumerate() {
            let Some(v) = *v else { continue };
            let x0 = g as f64 + 0.1 + bar * i as f64;
            let tip = format!("{}, {}: {}", s.label, groups[g], c.y.format(v));
            c.rect(x0, x0 + bar * 0.9, base, v, color, &tip);
            c.label_above(x0 + bar * 0.45, v, &c.y.format(v));
        }
        c.legend(&s.label, color, "");
    }
    c.standalone()
}

#[cfg(test)]
mod tests {
    use super::super::svg::Unit;
    use super::*;

    #[test]
    fn lines_have_labelled_axes_marks_legend_and_escaped_names() {
        let svg = lines(
            "sweep",
            "probes/s <vs> concurrency",
            Axis::log("concurrency", 16.0, 16384.0, Unit::Count),
            Axis::linear("probes/s", 0.0, 130_000.0, Unit::Count),
            &[
                Line::measured("mio", vec![(16.0, 122_679.0), (16384.0, 118_610.0)]),
                Line::measured("<threads>", vec![(16.0, 93_155.0), (16384.0, 38_044.0)]),
                Line::reference("ideal", vec![(16.0, 130_000.0), (16384.0, 130_000.0)]),
            ],
        );
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains(r#"class="axis-label x""#) && svg.contains(">concurrency<"));
        assert!(svg.contains(r#"class="axis-label y""#) && svg.contains(">probes/s<"));
        assert_eq!(svg.matches("<path class=\"data\"").count(), 3);
        // A dot per measured point, none on the reference.
        assert_eq!(svg.matches("<circle class=\"data\"").count(), 4);
        assert_eq!(svg.matches("class=\"legend\"").count(), 3);
        assert!(svg.contains("&lt;threads&gt;") && !svg.contains("<threads>"));
        assert!(svg.contains("&lt;vs&gt;"));
    }

    #[test]
    fn bars_name_their_groups_and_skip_missing_values() {
        let groups = vec!["loopback-65k".to_string(), "wide-16".to_string()];
        let svg = bars(
            "probes",
            "probes/s",
            &groups,
            &[
                BarSeries {
                    label: "floor".into(),
                    values: vec![Some(116_464.0), Some(125_535.0)],
                },
                BarSeries {
                    label: "nmap".into(),
                    values: vec![None, Some(43_365.0)],
                },
            ],
            Axis::log("probes/s (log)", 1000.0, 200_000.0, Unit::Count),
        );
        assert_eq!(svg.matches("<rect class=\"data\"").count(), 3);
        assert!(svg.contains(">loopback-65k<") && svg.contains(">wide-16<"));
        assert!(svg.contains(">116.5k<"));
        assert!(svg.contains(r#"class="axis-label y""#));
    }
}
