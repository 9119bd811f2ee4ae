//! Running a test body inside a private network namespace that holds only
//! loopback, so a scan there sees only the listeners the test made and
//! nothing can leave the machine.
//!
//! The test binary re-executes itself under `unshare --net` (with a user
//! namespace when not root), asking libtest for just this test; the child
//! finds the marker variable and runs the body. Under `CI=true` a namespace
//! that cannot be made is a failure; elsewhere the test says why it skipped.

use std::process::Command;

const MARKER: &str = "FASTPORT_TEST_NETNS";

/// Use as the first line of a test: `if !in_netns!(name) { return; }`.
#[macro_export]
macro_rules! in_netns {
    ($name:ident) => {
        $crate::util::netns::enter(module_path!(), stringify!($name))
    };
}

/// Like `in_netns!`, with a PID namespace and a private mount table too,
/// for tests that start daemons (Slurm, munge): the test body is PID 1 and
/// everything it started dies with it.
#[macro_export]
macro_rules! in_netns_with_daemons {
    ($name:ident) => {
        $crate::util::netns::enter_with(
            module_path!(),
            stringify!($name),
            &["--net", "--pid", "--fork", "--mount-proc"],
        )
    };
}

/// Whether this process is a test body re-executed inside its namespace.
pub fn inside() -> bool {
    std::env::var_os(MARKER).is_some()
}

/// Returns true when the caller is inside the namespace and should run its
/// body; false when the body ran in a child (which passed) or was skipped.
pub fn enter(module: &str, name: &str) -> bool {
    enter_with(module, name, &["--net"])
}

/// [`enter`] with the namespaces `unshare` makes given as its flags.
pub fn enter_with(module: &str, name: &str, namespaces: &[&str]) -> bool {
    // libtest names a test by its path without the crate name.
    let path = module.split_once("::").map_or("", |(_, rest)| rest);
    let test = if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}::{name}")
    };
    let test = test.as_str();
    if std::env::var(MARKER).as_deref() == Ok(test) {
        let lo = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        assert!(
            matches!(lo, Ok(s) if s.success()),
            "cannot bring lo up in the namespace (is iproute2 installed?)"
        );
        return true;
    }
    super::sweep_stale_temp_dirs_once();
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new("unshare");
    if !is_root() {
        cmd.args(["--user", "--map-root-user"]);
    }
    cmd.args(namespaces)
        .arg("--")
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(MARKER, test);
    match cmd.output() {
        Ok(out)
            if out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("1 passed") =>
        {
            print!("{}", String::from_utf8_lossy(&out.stdout));
            false
        }
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let unshare_refused = stderr.starts_with("unshare:");
            if unshare_refused && std::env::var("CI").as_deref() != Ok("true") {
                eprintln!(
                    "skipped {test}: cannot create a network namespace: {}",
                    stderr.trim()
                );
                return false;
            }
            panic!(
                "{test} in its namespace failed ({}):\n{stdout}\n{stderr}",
                out.status
            );
        }
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipped {test}: cannot run unshare: {e}");
            false
        }
        Err(e) => panic!("{test}: cannot run unshare under CI: {e}"),
    }
}

/// Whether this process runs as root (CI does; a user namespace maps root otherwise).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
