//! `--shard auto`: a shard's `K/N` read from the job engine that started it,
//! so one command line serves every task of a Slurm job array, a
//! Kubernetes Indexed Job or a GNU parallel run.
//!
//! Each engine numbers its tasks its own way:
//!
//! - **Slurm** job arrays (`sbatch --array=1-N`, or `0-9`, or `1-99:2`):
//!   `SLURM_ARRAY_TASK_ID` counted from `SLURM_ARRAY_TASK_MIN` in steps of
//!   `SLURM_ARRAY_TASK_STEP` (1 when unset); N from `SLURM_ARRAY_TASK_COUNT`
//!   or, without it, from `MIN`/`MAX`. An array that is not one evenly
//!   stepped range (`--array=1,3,7`) makes `COUNT` and `MIN`/`MAX` disagree:
//!   refused, since task numbers would not be shard numbers.
//! - **Kubernetes** Indexed Jobs: `JOB_COMPLETION_INDEX`, 0-based; N from
//!   `--shard auto/N` or [`COUNT_VAR`] (set it to the Job's `completions`).
//! - **GNU parallel**: `PARALLEL_SEQ`, 1-based; N from `--shard auto/N` or
//!   [`COUNT_VAR`] (parallel does not export its job count).
//!
//! The function is pure: it reads the environment through a closure, so
//! every source and every disagreement is tested without touching the
//! process's environment.

use crate::order::Shard;

/// The variable that gives N where the engine does not (Kubernetes, GNU
/// parallel): `FASTPORT_SHARD_COUNT`.
pub const COUNT_VAR: &str = "FASTPORT_SHARD_COUNT";

/// Which engine's variables gave the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSource {
    Slurm,
    Kubernetes,
    GnuParallel,
}

impl ShardSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ShardSource::Slurm => "the Slurm job array",
            ShardSource::Kubernetes => "the Kubernetes Indexed Job",
            ShardSource::GnuParallel => "GNU parallel",
        }
    }
}

/// The shard found, where, and from which values (for the note on stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoShard {
    pub shard: Shard,
    pub source: ShardSource,
    /// The variables read, as `NAME=value` words.
    pub from: String,
}

impl std::fmt::Display for AutoShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--shard auto is {} from {} ({})",
            self.shard,
            self.source.as_str(),
            self.from
        )
    }
}

/// Why `--shard auto` found no shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardEnvError {
    #[error(
        "--shard auto: no job engine's task number is set (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or PARALLEL_SEQ): give --shard K/N"
    )]
    NoEngine,
    #[error("--shard auto: {var}=\"{value}\" is not a whole number")]
    NotANumber { var: &'static str, value: String },
    #[error(
        "--shard auto: {} gives no shard count: give --shard auto/N or set {COUNT_VAR}",
        engine.as_str()
    )]
    NoCount { engine: ShardSource },
    #[error("--shard auto: {0}")]
    Disagree(String),
    #[error("invalid --shard \"{0}\": expected K/N, auto, or auto/N")]
    Syntax(String),
}

/// Whether a `--shard` value asks for `auto`, and the N it gives: `auto`
/// is `Some(None)`, `auto/8` is `Some(Some(8))`, `2/8` is `None`.
pub fn parse_auto(value: &str) -> Result<Option<Option<u64>>, ShardEnvError> {
    let v = value.trim();
    let Some(rest) = v.strip_prefix("auto") else {
        return Ok(None);
    };
    if rest.is_empty() {
        return Ok(Some(None));
    }
    match rest.strip_prefix('/').map(|n| n.trim().parse::<u64>()) {
        Some(Ok(n)) if n >= 1 => Ok(Some(Some(n))),
        _ => Err(ShardEnvError::Syntax(value.to_string())),
    }
}

/// The shard of this task. `count` is the N typed in `--shard auto/N`;
/// `env` looks a variable up (`|k| std::env::var(k).ok()`).
///
/// With the variables of more than one engine set (GNU parallel run inside
/// a Slurm task, say), they must name the same shard; the first of Slurm,
/// Kubernetes, GNU parallel is named as the source.
pub fn detect(
    count: Option<u64>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<AutoShard, ShardEnvError> {
    let num = |var: &'static str| -> Result<Option<u64>, ShardEnvError> {
        match env(var) {
            None => Ok(None),
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => s
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| ShardEnvError::NotANumber {
                    var,
                    value: s.clone(),
                }),
        }
    };
    let env_count = num(COUNT_VAR)?;
    if let (Some(typed), Some(set)) = (count, env_count) {
        if typed != set {
            return Err(ShardEnvError::Disagree(format!(
                "--shard auto/{typed} but {COUNT_VAR}={set}"
            )));
        }
    }
    let given = count.or(env_count);

    let mut found: Vec<AutoShard> = Vec::new();
    if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        found.push(slurm(id, given, &num)?);
    }
    if let Some(index) = num("JOB_COMPLETION_INDEX")? {
        let n = given.ok_or(ShardEnvError::NoCount {
            engine: ShardSource::Kubernetes,
        })?;
        let shard = Shard::new(index.saturating_add(1), n).ok_or_else(|| {
            ShardEnvError::Disagree(format!(
                "JOB_COMPLETION_INDEX={index} is not below the shard count {n} (it counts from 0)"
            ))
        })?;
        found.push(AutoShard {
            shard,
            source: ShardSource::Kubernetes,
            from: format!("JOB_COMPLETION_INDEX={index}, N={n}"),
        });
    }
    if let Some(seq) = num("PARALLEL_SEQ")? {
        let n = given.ok_or(ShardEnvError::NoCount {
            engine: ShardSource::GnuParallel,
        })?;
        let shard = Shard::new(seq, n).ok_or_else(|| {
            ShardEnvError::Disagree(format!(
                "PARALLEL_SEQ={seq} is not between 1 and the shard count {n}: run exactly {n} jobs"
            ))
        })?;
        found.push(AutoShard {
            shard,
            source: ShardSource::GnuParallel,
            from: format!("PARALLEL_SEQ={seq}, N={n}"),
        });
    }
    let first = found.first().cloned().ok_or(ShardEnvError::NoEngine)?;
    if let Some(other) = found.iter().find(|a| a.shard != first.shard) {
        return Err(ShardEnvError::Disagree(format!(
            "{} says shard {} ({}) but {} says {} ({}): give --shard K/N",
            first.source.as_str(),
            first.shard,
            first.from,
            other.source.as_str(),
            other.shard,
            other.from
        )));
    }
    Ok(first)
}

/// A Slurm array task's shard.
fn slurm(
    id: u64,
    given: Option<u64>,
    num: &dyn Fn(&'static str) -> Result<Option<u64>, ShardEnvError>,
) -> Result<AutoShard, ShardEnvError> {
    let min = num("SLURM_ARRAY_TASK_MIN")?;
    let max = num("SLURM_ARRAY_TASK_MAX")?;
    let count = num("SLURM_ARRAY_TASK_COUNT")?;
    let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
    let disagree = |why: String| ShardEnvError::Disagree(format!("Slurm job array: {why}"));
    // Without MIN the array is taken to start at 1 (`--array=1-N`).
    let min = min.unwrap_or(1);
    if id < min || (id - min) % step != 0 {
        return Err(disagree(format!(
            "SLURM_ARRAY_TASK_ID={id} is not in the range from SLURM_ARRAY_TASK_MIN={min} in steps of {step}"
        )));
    }
    let k = (id - min) / step + 1;
    let span = max.map(|max| {
        if max < min {
            None
        } else {
            Some((max - min) / step + 1)
        }
    });
    let n = match (count, span) {
        (_, Some(None)) => {
            return Err(disagree(format!(
                "SLURM_ARRAY_TASK_MAX is below SLURM_ARRAY_TASK_MIN={min}"
            )));
        }
        (Some(c), Some(Some(s))) if c != s => {
            return Err(disagree(format!(
                "SLURM_ARRAY_TASK_COUNT={c} but MIN..MAX step {step} make {s} tasks: \
                 the array is not one evenly stepped range (such as --array=1-{c})"
            )));
        }
        (Some(c), _) => c,
        (None, Some(Some(s))) => s,
        (None, None) => given.ok_or(ShardEnvError::NoCount {
            engine: ShardSource::Slurm,
        })?,
    };
    if let Some(g) = given {
        if g != n {
            return Err(disagree(format!(
                "the array has {n} tasks but the shard count given is {g}"
            )));
        }
    }
    let shard = Shard::new(k, n).ok_or_else(|| {
        disagree(format!(
            "SLURM_ARRAY_TASK_ID={id} is task {k} of an array of {n}"
        ))
    })?;
    Ok(AutoShard {
        shard,
        source: ShardSource::Slurm,
        from: format!("SLURM_ARRAY_TASK_ID={id}, tasks {min}..+{n} step {step}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::assert_has;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    /// A Slurm job array's variables: `("ID", "3")` is `SLURM_ARRAY_TASK_ID=3`.
    fn slurm(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let named: Vec<(String, &str)> = vars
            .iter()
            .map(|&(k, v)| (format!("SLURM_ARRAY_TASK_{k}"), v))
            .collect();
        env(&named
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect::<Vec<_>>())
    }

    fn shard(k: u64, n: u64) -> Shard {
        Shard::new(k, n).unwrap()
    }

    /// The message `detect` refuses with.
    fn refusal(count: Option<u64>, e: impl Fn(&str) -> Option<String>) -> String {
        detect(count, e).unwrap_err().to_string()
    }

    #[test]
    fn auto_syntax() {
        assert_eq!(parse_auto("2/3"), Ok(None));
        assert_eq!(parse_auto("auto"), Ok(Some(None)));
        assert_eq!(parse_auto("auto/8"), Ok(Some(Some(8))));
        assert!(matches!(
            parse_auto("auto/0"),
            Err(ShardEnvError::Syntax(_))
        ));
        assert!(matches!(
            parse_auto("automatic"),
            Err(ShardEnvError::Syntax(_))
        ));
    }

    #[test]
    fn slurm_array_from_one() {
        let e = slurm(&[("ID", "3"), ("MIN", "1"), ("MAX", "4"), ("COUNT", "4")]);
        let a = detect(None, &e).unwrap();
        assert_eq!(a.shard, shard(3, 4));
        assert_eq!(a.source, ShardSource::Slurm);
        assert!(a.to_string().contains("3/4 from the Slurm job array"));
        assert_eq!(detect(Some(4), &e).unwrap().shard, shard(3, 4));
    }

    #[test]
    fn slurm_array_from_zero_and_stepped() {
        let zero = slurm(&[("ID", "0"), ("MIN", "0"), ("MAX", "9")]);
        assert_eq!(detect(None, zero).unwrap().shard, shard(1, 10));
        let stepped = slurm(&[
            ("ID", "5"),
            ("MIN", "1"),
            ("MAX", "9"),
            ("STEP", "2"),
            ("COUNT", "5"),
        ]);
        assert_eq!(detect(None, stepped).unwrap().shard, shard(3, 5));
        let count_only = slurm(&[("ID", "2"), ("COUNT", "2")]);
        assert_eq!(detect(None, count_only).unwrap().shard, shard(2, 2));
    }

    #[test]
    fn an_index_without_a_count_needs_one_given() {
        for (var, index, source, count, expected) in [
            (
                "SLURM_ARRAY_TASK_ID",
                "2",
                ShardSource::Slurm,
                5,
                shard(2, 5),
            ),
            (
                "JOB_COMPLETION_INDEX",
                "0",
                ShardSource::Kubernetes,
                4,
                shard(1, 4),
            ),
            (
                "PARALLEL_SEQ",
                "2",
                ShardSource::GnuParallel,
                3,
                shard(2, 3),
            ),
        ] {
            let e = env(&[(var, index)]);
            assert_eq!(
                detect(None, &e),
                Err(ShardEnvError::NoCount { engine: source }),
                "{var}"
            );
            let a = detect(Some(count), &e).unwrap();
            assert_eq!((a.shard, a.source), (expected, source), "{var}");
        }
    }

    #[test]
    fn slurm_arrays_that_are_not_one_range_are_refused() {
        // --array=1,3,7: three tasks, MIN 1, MAX 7.
        let e = slurm(&[("ID", "3"), ("MIN", "1"), ("MAX", "7"), ("COUNT", "3")]);
        let err = refusal(None, e);
        assert_has(&err, "not one evenly stepped range");
        // A count typed that is not the array's.
        let e = slurm(&[("ID", "1"), ("MIN", "1"), ("MAX", "4")]);
        let err = refusal(Some(3), e);
        assert_has(&err, "has 4 tasks but the shard count given is 3");
        let e = slurm(&[("ID", "x1")]);
        assert_eq!(
            detect(None, e),
            Err(ShardEnvError::NotANumber {
                var: "SLURM_ARRAY_TASK_ID",
                value: "x1".into()
            })
        );
        let e = slurm(&[("ID", "4"), ("MIN", "1"), ("STEP", "2"), ("COUNT", "3")]);
        assert!(refusal(None, e).contains("steps of 2"));
    }

    #[test]
    fn kubernetes_indexed_job_counts_from_zero() {
        let e = env(&[("JOB_COMPLETION_INDEX", "3"), (COUNT_VAR, "4")]);
        assert_eq!(detect(None, &e).unwrap().shard, shard(4, 4));
        let e = env(&[("JOB_COMPLETION_INDEX", "4"), (COUNT_VAR, "4")]);
        assert!(refusal(None, &e).contains("it counts from 0"));
        // auto/N and the variable must agree.
        let e = env(&[("JOB_COMPLETION_INDEX", "1"), (COUNT_VAR, "4")]);
        assert!(refusal(Some(5), &e).contains("--shard auto/5 but FASTPORT_SHARD_COUNT=4"));
    }

    #[test]
    fn gnu_parallel_sequence_past_the_count_is_refused() {
        let e = env(&[("PARALLEL_SEQ", "4")]);
        assert!(refusal(Some(3), &e).contains("run exactly 3 jobs"));
    }

    #[test]
    fn no_engine_and_engines_that_disagree() {
        assert_eq!(detect(None, env(&[])), Err(ShardEnvError::NoEngine));
        assert_eq!(
            detect(Some(3), env(&[(COUNT_VAR, "3")])),
            Err(ShardEnvError::NoEngine)
        );
        // parallel inside a Slurm task: both set, different shards.
        let e = env(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
            ("PARALLEL_SEQ", "2"),
        ]);
        let err = refusal(Some(2), &e);
        assert!(
            err.contains("Slurm job array says shard 1/2") && err.contains("GNU parallel says 2/2"),
            "{err}"
        );
        // Both set and agreeing: Slurm is named.
        let e = env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
            ("PARALLEL_SEQ", "2"),
        ]);
        assert_eq!(detect(Some(2), &e).unwrap().source, ShardSource::Slurm);
    }
}
