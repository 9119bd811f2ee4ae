//! `fastport merge`: joins the results of shards (`--shard K/N` run on
//! several machines, each perhaps interrupted and resumed) into one scan's
//! result, exactly, or refuses.
//!
//! Inputs are the shards' JSON-lines files (`-oJ`) and `--stats` documents
//! ([`StatsDocument`]), told apart by their content. Every check runs
//! before a byte is written:
//!
//! - every result line is a well-formed result (a known state and reason
//!   that belong together, a port above 0, a latency in range), and no
//!   port is reported twice (the shards overlapped: different seeds or
//!   targets);
//! - the summaries are of one scan (seed, order, number of probes, targets
//!   hash), no shard twice, each complete: a shard that stopped before its
//!   last probe (interrupted and not resumed to the end) is refused;
//! - the result lines add up to what the summaries say their runs wrote
//!   to `-oJ` (all parts of a resumed run together): a file cut short (a
//!   full disk), missing, or from another run is refused.
//!
//! The output is written to a temporary file next to it and renamed at the
//! end, so a failed merge leaves nothing; an input that is also the output
//! (by device and inode, whatever the names) is refused.
//!
//! Summaries are added: counts, attempts, local errors, and the latency
//! histograms, which HdrHistogram serialises losslessly and adds exactly,
//! so the merged percentiles are those of the whole scan. Elapsed time is
//! the longest shard's (shards run side by side).

pub mod formats;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::classify::Reason;
use crate::order::Shard;
use crate::output::HostLine;
use crate::stats::{RunRecord, StatsDocument, Summary};

/// Why the inputs could not be merged; each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    #[error("cannot read \"{}\": {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write \"{}\": {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("\"{}\" line {line}: {why}", path.display())]
    BadLine {
        path: PathBuf,
        line: u64,
        why: String,
    },
    #[error("\"{}\": not a FastPort --stats summary: {why}", path.display())]
    BadStats { path: PathBuf, why: String },
    #[error("{addr} port {port} is reported twice (in \"{}\"): the shards overlap — were they run with the same seed and targets?", path.display())]
    Duplicate {
        addr: IpAddr,
        port: u16,
        path: PathBuf,
    },
    #[error("the summaries do not belong to one scan: {0}")]
    Mismatch(String),
    #[error("\"{}\" is both an input and the output: merging would destroy it before reading it", path.display())]
    InputIsOutput { path: PathBuf },
    #[error(
        "\"{}\": shard {shard} stopped after {results} of its {planned} probes: resume it to the end (fastport --resume FILE) and give the resumed run's --stats",
        path.display()
    )]
    Incomplete {
        path: PathBuf,
        shard: String,
        results: u64,
        planned: u64,
    },
    #[error(
        "the result files hold {read} lines but the summaries say {written} were written: a result file is missing, cut short, or of another run"
    )]
    LinesDoNotAddUp { read: u64, written: u64 },
    #[error(
        "\"{}\" does not count the -oJ lines its run wrote (no -oJ file in some part): the results cannot be checked against it",
        path.display()
    )]
    LinesUncounted { path: PathBuf },
    #[error("nothing to merge: give the shards' -oJ files and/or --stats files")]
    NoInputs,
}

/// One `-oJ` line, as read back.
#[derive(serde::Deserialize)]
struct Line {
    /// Read only to check that it is an address.
    #[allow(dead_code)]
    addr: IpAddr,
    port: u16,
    state: String,
    reason: String,
    rtt_us: Option<u32>,
}

impl Line {
    /// What makes the line wrong, if anything.
    fn check(&self) -> Result<(), String> {
        if self.port == 0 {
            return Err("port 0 is not a port".into());
        }
        let reason = Reason::from_str_name(&self.reason)
            .ok_or_else(|| format!("unknown reason \"{}\"", self.reason))?;
        if reason.state().as_str() != self.state {
            return Err(format!(
                "state \"{}\" does not go with reason \"{}\" (that is {})",
                self.state,
                self.reason,
                reason.state()
            ));
        }
        if !reason.answered() && self.rtt_us.is_some() {
            return Err(format!("reason \"{}\" cannot have a latency", self.reason));
        }
        Ok(())
    }
}

/// Reads every result line of `inputs`, checking each. Returns the number
/// of lines. Writes nothing. That no port appears twice is checked by
/// [`formats::check_overlaps`], which sorts the lines on disk rather than
/// holding every (address, port) in memory.
pub fn check_results(inputs: &[PathBuf]) -> Result<u64, MergeError> {
    let mut n = 0;
    for path in inputs {
        for_each_line(path, |i, line| {
            let bad = |why: String| MergeError::BadLine {
                path: path.clone(),
                line: i + 1,
                why,
            };
            if HostLine::parse(line).is_some() {
                return Ok(()); // a shard's own flag: the merge judges again
            }
            let parsed: Line = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            parsed.check().map_err(bad)?;
            n += 1;
            Ok(())
        })?;
    }
    Ok(n)
}

/// Calls `f` with each non-empty line of `path` and its 0-based number.
fn for_each_line(
    path: &Path,
    mut f: impl FnMut(u64, &str) -> Result<(), MergeError>,
) -> Result<(), MergeError> {
    let read = |source| MergeError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read)?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(read)?;
        if !line.trim().is_empty() {
            f(i as u64, &line)?;
        }
    }
    Ok(())
}

/// Copies the result lines of `inputs` (checked by [`check_results`]) to
/// `out`, then a host line for each of `hosts` (the merged scan's
/// middleboxes, [`formats::check_overlaps`]); the shards' own host lines
/// are left out, as each judged only its part of a host. `out_path` names
/// the output in errors.
pub fn copy_results(
    inputs: &[PathBuf],
    hosts: &[HostLine],
    out: &mut dyn Write,
    out_path: &Path,
) -> Result<(), MergeError> {
    let write = |source| MergeError::Write {
        path: out_path.to_path_buf(),
        source,
    };
    for path in inputs {
        for_each_line(path, |_, line| {
            if HostLine::parse(line).is_some() {
                return Ok(());
            }
            out.write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(write)
        })?;
    }
    for host in hosts {
        serde_json::to_writer(&mut *out, host)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(write)?;
    }
    out.flush().map_err(write)
}

/// Writes `path` whole or not at all: `fill` writes into a temporary file
/// in the same directory, renamed over `path` once it succeeded. A path
/// that is not a regular file (a FIFO, `/dev/stdout`, a device) is written
/// in place: renaming over it would replace it.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), MergeError>,
) -> Result<(), MergeError> {
    let write = |source| MergeError::Write {
        path: path.to_path_buf(),
        source,
    };
    if written_in_place(path) {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(write)?;
        let mut out = io::BufWriter::new(file);
        fill(&mut out)?;
        return out.flush().map_err(write);
    }
    let tmp = temp_beside(path, 0);
    let result = (|| {
        let file = File::create(&tmp).map_err(write)?;
        let mut out = io::BufWriter::new(file);
        fill(&mut out)?;
        let file = out.into_inner().map_err(|e| write(e.into_error()))?;
        file.sync_all().map_err(write)?;
        std::fs::rename(&tmp, path).map_err(write)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether `path` is something other than a regular file (a FIFO,
/// `/dev/stdout`, a device): written in place, since renaming over it
/// would replace it.
pub fn written_in_place(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file())
}

/// A temporary name in `path`'s own directory (so renaming it over `path`
/// is atomic), the `n`th of this process: `.NAME.PID.N.tmp`.
pub fn temp_beside(path: &Path, n: usize) -> PathBuf {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "merge".into(), |n| n.to_string_lossy().into_owned());
    dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Refuses an output that is one of the inputs, by device and inode.
pub fn check_not_an_input(output: &Path, inputs: &[PathBuf]) -> Result<(), MergeError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(out) = std::fs::metadata(output) else {
        return Ok(()); // does not exist yet: cannot be an input
    };
    for input in inputs {
        if let Ok(m) = std::fs::metadata(input) {
            if (m.dev(), m.ino()) == (out.dev(), out.ino()) {
                return Err(MergeError::InputIsOutput {
                    path: output.to_path_buf(),
                });
            }
        }
    }
    Ok(())
}

/// The merged summary, and the shards it was made of.
#[derive(Debug)]
pub struct MergedStats {
    pub summary: Summary,
    /// `K/N` of each input, in input order.
    pub shards: Vec<Shard>,
    /// Shards of `1..=N` that no input covers.
    pub missing: Vec<u64>,
    /// The scan's identity and the `-oJ` lines all shards wrote (when
    /// every summary counts them).
    pub record: Option<RunRecord>,
    /// Each input's `-oJ` line count, `None` where it has none.
    lines: Vec<(PathBuf, Option<u64>)>,
}

impl MergedStats {
    /// The `--stats` document of the merged scan, listing its shards.
    pub fn to_document(&self) -> StatsDocument {
        let mut doc = StatsDocument::new(&self.summary, self.record.clone());
        doc.merged_shards = Some(self.shards.iter().map(ToString::to_string).collect());
        doc.missing_shards = Some(self.missing.clone());
        doc
    }

    /// The `--stats` document as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.to_document()).unwrap_or_default()
    }

    /// Checks `read` result lines against what the summaries say their
    /// runs wrote.
    pub fn check_lines(&self, read: u64) -> Result<(), MergeError> {
        let mut written = 0;
        for (path, lines) in &self.lines {
            match lines {
                Some(n) => written += n,
                None => return Err(MergeError::LinesUncounted { path: path.clone() }),
            }
        }
        if read != written {
            return Err(MergeError::LinesDoNotAddUp { read, written });
        }
        Ok(())
    }
}

/// Adds up `--stats` summaries, refusing any that is not complete or not
/// of the same scan as the others.
pub fn merge_stats(inputs: &[PathBuf]) -> Result<MergedStats, MergeError> {
    let mut merged: Option<(Summary, Option<RunRecord>)> = None;
    let mut shards = Vec::new();
    let mut lines = Vec::new();
    for path in inputs {
        let doc = read_stats(path)?;
        let bad = |why: String| MergeError::BadStats {
            path: path.clone(),
            why,
        };
        // This input is not of the scan the ones before it were.
        let other_scan =
            |why: String| MergeError::Mismatch(format!("\"{}\" {why}", path.display()));
        let summary = doc.to_summary().map_err(bad)?;
        let shard = summary.shard;
        // Every probe reported is complete, even if a signal came after
        // the last one.
        if summary.stats.results() != summary.planned {
            return Err(MergeError::Incomplete {
                path: path.clone(),
                shard: shard.to_string(),
                results: summary.stats.results(),
                planned: summary.planned,
            });
        }
        if let Some((k, p)) = shards
            .iter()
            .zip(inputs)
            .find(|(s, _)| **s == shard)
            .map(|(s, p)| (*s, p))
        {
            return Err(MergeError::Mismatch(format!(
                "shard {k} is given twice (\"{}\" and \"{}\"); of an interrupted and resumed shard give only the last run's --stats, it counts the runs before it",
                p.display(),
                path.display()
            )));
        }
        shards.push(shard);
        lines.push((path.clone(), doc.run.as_ref().and_then(|r| r.json_lines)));
        merged = Some(match merged {
            None => (summary, doc.run.clone()),
            Some((mut m, record)) => {
                if m.seed != summary.seed || m.order != summary.order {
                    return Err(other_scan(format!(
                        "has seed {} order {}, others seed {} order {}",
                        summary.seed, summary.order, m.seed, m.order
                    )));
                }
                if m.hosts != summary.hosts || m.ports_per_host != summary.ports_per_host {
                    return Err(other_scan(format!(
                        "scanned {} hosts x {} ports, others {} x {}",
                        summary.hosts, summary.ports_per_host, m.hosts, m.ports_per_host
                    )));
                }
                let record = match (record, &doc.run) {
                    (Some(a), Some(b)) => {
                        if (a.space, &a.targets) != (b.space, &b.targets) {
                            return Err(other_scan(
                                "scanned other targets or ports than the others".into(),
                            ));
                        }
                        Some(RunRecord {
                            space: a.space,
                            targets: a.targets.clone(),
                            parts: a.parts + b.parts,
                            json_lines: a.json_lines.zip(b.json_lines).map(|(x, y)| x + y),
                        })
                    }
                    _ => None,
                };
                m.stats.merge(&summary.stats);
                m.planned += summary.planned;
                m.elapsed = m.elapsed.max(summary.elapsed);
                m.concurrency += summary.concurrency;
                m.threads += summary.threads;
                (m, record)
            }
        });
    }
    let (mut summary, record) = merged.ok_or(MergeError::NoInputs)?;
    summary.interrupted = false; // every shard given is complete
    let n = shards.first().map_or(1, Shard::n);
    if shards.iter().any(|s| s.n() != n) {
        return Err(MergeError::Mismatch(
            "the inputs split the scan into different numbers of shards".into(),
        ));
    }
    let ks: Vec<u64> = shards.iter().map(Shard::k).collect();
    let missing: Vec<u64> = (1..=n).filter(|k| !ks.contains(k)).collect();
    if missing.is_empty() {
        summary.shard = Shard::WHOLE;
    }
    Ok(MergedStats {
        summary,
        shards,
        missing,
        record,
        lines,
    })
}

/// Whether a file holds a `--stats` summary (one JSON object with
/// `fastport_stats` or `states`) rather than result lines.
pub fn is_stats_file(path: &Path) -> Result<bool, MergeError> {
    use std::io::Read;
    let read = |source| MergeError::Read {
        path: path.to_path_buf(),
        source,
    };
    // A summary is small; a result file may be huge: look at its start.
    let mut head = Vec::new();
    File::open(path)
        .map_err(read)?
        .take(1 << 20)
        .read_to_end(&mut head)
        .map_err(read)?;
    let first = head.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Ok(false);
    }
    // A summary is pretty-printed over many lines (or, reformatted, one
    // object with its version); a result line is one object with an addr.
    let Some(first_line) = head
        .split(|&b| b == b'\n')
        .find(|l| !l.trim_ascii().is_empty())
    else {
        return Ok(false);
    };
    if first_line.trim_ascii() == b"{" {
        return Ok(true);
    }
    Ok(
        serde_json::from_slice::<serde_json::Value>(first_line).is_ok_and(|v| {
            v.get("addr").is_none()
                && (v.get("fastport_stats").is_some() || v.get("states").is_some())
        }),
    )
}

fn read_stats(path: &Path) -> Result<StatsDocument, MergeError> {
    let text = std::fs::read_to_string(path).map_err(|source| MergeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| MergeError::BadStats {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;

    fn dir(name: &str) -> TempDir {
        TempDir::new("merge", name)
    }

    /// The `--stats` file of shard `k` of 2, complete: `hosts` hosts of one
    /// port each, scanned in random order with `seed`.
    fn shard_stats(d: &Path, k: u64, seed: u64, hosts: u64) -> PathBuf {
        let mut stats = crate::stats::Stats::new();
        for _ in 0..hosts {
            stats.record(crate::classify::Reason::ConnRefused, Some(50));
        }
        let summary = Summary {
            stats,
            elapsed: std::time::Duration::from_millis(10),
            hosts,
            ports_per_host: 1,
            planned: hosts,
            interrupted: false,
            engine: "mio",
            threads: 1,
            concurrency: 10,
            seed,
            order: "random",
            shard: Shard::new(k, 2).unwrap(),
        };
        let path = d.join(format!("s{k}-seed{seed}-hosts{hosts}.json"));
        std::fs::write(&path, summary.to_json().to_string()).unwrap();
        path
    }

    /// Shards of different scans are refused with both scans' settings.
    #[test]
    fn shards_of_other_scans_are_named_with_both_settings() {
        let d = dir("other-scan");
        let first = shard_stats(&d, 1, 7, 4);
        for (other, why) in [
            (
                shard_stats(&d, 2, 8, 4),
                "has seed 8 order random, others seed 7 order random",
            ),
            (
                shard_stats(&d, 2, 7, 5),
                "scanned 5 hosts x 1 ports, others 4 x 1",
            ),
        ] {
            let e = merge_stats(&[first.clone(), other.clone()]).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "the summaries do not belong to one scan: \"{}\" {why}",
                    other.display()
                )
            );
        }
        assert!(merge_stats(&[first, shard_stats(&d, 2, 7, 4)]).is_ok());
    }

    #[test]
    fn weird_states_port_0_and_negative_rtt_are_refused() {
        let d = dir("weird");
        for (line, needle) in [
            (
                r#"{"addr":"127.0.0.1","port":22,"state":"weird","reason":"syn-ack","rtt_us":5}"#,
                "state \"weird\"",
            ),
            (
                r#"{"addr":"127.0.0.1","port":0,"state":"open","reason":"syn-ack","rtt_us":5}"#,
                "port 0",
            ),
            (
                r#"{"addr":"127.0.0.1","port":22,"state":"open","reason":"syn-ack","rtt_us":-5}"#,
                "-5",
            ),
            (
                r#"{"addr":"127.0.0.1","port":22,"state":"open","reason":"nope","rtt_us":5}"#,
                "unknown reason",
            ),
            (
                r#"{"addr":"127.0.0.1","port":22,"state":"filtered","reason":"no-response","rtt_us":9}"#,
                "cannot have a latency",
            ),
        ] {
            let p = d.join("in.jsonl");
            std::fs::write(&p, format!("{line}\n")).unwrap();
            let e = check_results(&[p]).unwrap_err();
            assert!(matches!(e, MergeError::BadLine { line: 1, .. }), "{e}");
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
        }
        let good = d.join("good.jsonl");
        std::fs::write(
            &good,
            "{\"addr\":\"127.0.0.1\",\"port\":22,\"state\":\"filtered\",\"reason\":\"no-response\",\"rtt_us\":null}\n",
        )
        .unwrap();
        assert_eq!(check_results(&[good]).unwrap(), 1);
    }

    #[test]
    fn summaries_and_result_files_are_told_apart_by_content() {
        let d = dir("kinds");
        let cases = [
            ("{\n  \"fastport_stats\": 1\n}\n", true),
            ("{\"fastport_stats\":1,\"states\":{}}\n", true),
            ("{\"addr\":\"127.0.0.1\",\"port\":22}\n", false),
            ("", false),
        ];
        for (i, (text, stats)) in cases.into_iter().enumerate() {
            let p = d.join(format!("{i}"));
            std::fs::write(&p, text).unwrap();
            assert_eq!(is_stats_file(&p).unwrap(), stats, "{text:?}");
        }
    }

    #[test]
    fn an_input_that_is_also_the_output_is_refused_by_inode() {
        let d = dir("same");
        let a = d.join("a.jsonl");
        std::fs::write(&a, "x\n").unwrap();
        let b = d.join("b.jsonl");
        std::fs::hard_link(&a, &b).unwrap();
        let e = check_not_an_input(&b, std::slice::from_ref(&a)).unwrap_err();
        assert!(matches!(e, MergeError::InputIsOutput { .. }), "{e}");
        assert!(check_not_an_input(&d.join("new.jsonl"), &[a]).is_ok());
    }

    #[test]
    fn a_failed_merge_leaves_no_partial_output() {
        let d = dir("atomic");
        let out = d.join("out.jsonl");
        std::fs::write(&out, "earlier\n").unwrap();
        let e = write_atomically(&out, |w| {
            w.write_all(b"half").unwrap();
            Err(MergeError::NoInputs)
        })
        .unwrap_err();
        assert!(matches!(e, MergeError::NoInputs));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "earlier\n");
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            1,
            "no temporary left"
        );
        write_atomically(&out, |w| {
            w.write_all(b"new\n").map_err(|_| MergeError::NoInputs)
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "new\n");
    }

    #[test]
    fn a_device_named_as_the_output_is_written_not_replaced() {
        let e = write_atomically(Path::new("/dev/full"), |w| {
            copy_results(&[], &[], w, Path::new("/dev/full"))?;
            w.write_all(&[b'x'; 1 << 17])
                .map_err(|source| MergeError::Write {
                    path: "/dev/full".into(),
                    source,
                })
        })
        .unwrap_err();
        assert!(
            e.to_string().starts_with("cannot write \"/dev/full\""),
            "{e}"
        );
        let m = std::fs::metadata("/dev/full").unwrap();
        assert!(!m.is_file(), "/dev/full is still a device");
    }

    #[test]
    fn a_write_error_says_write_not_read() {
        let e = copy_results(&[], &[], &mut FailingWriter, Path::new("/dev/full")).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot write \"/dev/full\""),
            "{e}"
        );
    }

    struct FailingWriter;
    impl Write for FailingWriter {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::StorageFull))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from(io::ErrorKind::StorageFull))
        }
    }
}
