//! Fixtures: the binaries, the skip rule, temporary files, JSON lines.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use fastport_netsim::netns;

/// The `fastport-netsim` binary cargo built for these tests.
pub fn netsim_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fastport-netsim"))
}

/// A `fastport-netsim` command.
pub fn netsim() -> Command {
    Command::new(netsim_bin())
}

/// Whether a namespace with a TUN device can be made here. Where not, says
/// why and returns false, except under `CI=true`, where it fails the test.
pub fn can_simulate(test: &str) -> bool {
    match netns::probe() {
        Ok(()) => true,
        Err(why) if netns::under_ci() => {
            panic!("{test}: CI=true, but no network namespace with a TUN device: {why}")
        }
        Err(why) => {
            eprintln!("{test}: skipped: no network namespace with a TUN device: {why}");
            false
        }
    }
}

/// The FastPort binary: `FASTPORT_BIN`, else the one next to
/// `fastport-netsim` (built by `cargo test --workspace`), else built here
/// once with cargo into the same target directory. `None` (after saying
/// why) when it cannot be had and `CI` is not `true`.
pub fn fastport_bin(test: &str) -> Option<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if let Some(p) = std::env::var_os("FASTPORT_BIN") {
        return Some(PathBuf::from(p));
    }
    let result = BUILT.get_or_init(|| {
        let profile_dir = netsim_bin()
            .parent()
            .expect("a target profile dir")
            .to_path_buf();
        let bin = profile_dir.join("fastport");
        if bin.is_file() {
            return Ok(bin);
        }
        let target_dir = profile_dir.parent().expect("a target dir");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "-p", "fastport", "--bin", "fastport"])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(workspace);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        match build.output() {
            Ok(out) if out.status.success() && bin.is_file() => Ok(bin),
            Ok(out) => Err(format!(
                "cargo build -p fastport failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )),
            Err(e) => Err(format!("cannot run cargo: {e}")),
        }
    });
    match result {
        Ok(p) => Some(p.clone()),
        Err(why) if netns::under_ci() => panic!("{test}: no FastPort binary: {why}"),
        Err(why) => {
            eprintln!("{test}: skipped: no FastPort binary: {why}");
            None
        }
    }
}

/// A directory under the system's temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(test: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("fastport-netsim-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        TempDir(dir)
    }

    /// A path inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `name` inside it and returns the path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("writing a temporary file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every line of a JSON-lines file (or text).
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The output's stderr, for assertion messages.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
