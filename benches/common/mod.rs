//! Helpers shared by the end-to-end benches (`scenarios.rs`, `netsim.rs`):
//! environment knobs, writing results and reading them back. The figures
//! are drawn from the written CSV by the report module
//! (`fastport::report::figures`), never here.

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

/// The rows of a CSV file this harness wrote (a header line, then values;
/// a value may be quoted with `"`), each as (column, value) pairs.
#[allow(dead_code)] // not every bench reads its CSV back
pub fn csv_rows(text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let split = |line: &str| {
        let mut cells = Vec::new();
        let mut cell = String::new();
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => cells.push(std::mem::take(&mut cell)),
                c => cell.push(c),
            }
        }
        cells.push(cell);
        cells
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let header = split(header);
    lines
        .map(|l| header.iter().cloned().zip(split(l)).collect())
        .collect()
}

/// A number from a CSV row (`None` when absent or empty).
#[allow(dead_code)]
pub fn num(row: &std::collections::BTreeMap<String, String>, column: &str) -> Option<f64> {
    row.get(column).and_then(|v| v.trim().parse().ok())
}

/// `FASTPORT_BENCH_REPLOT=DIR`: draw the figures again from the CSV files in
/// DIR (as a run wrote them, or docs/data/ for the recorded runs) instead of
/// running anything.
#[allow(dead_code)]
pub fn replot_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("FASTPORT_BENCH_REPLOT").map(std::path::PathBuf::from)
}
