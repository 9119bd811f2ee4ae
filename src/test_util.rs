//! Fixtures the unit tests of several modules share: a command line typed
//! as one string, and a writer whose bytes the test reads back.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::cli::{self, Args};

/// `fastport` and the words of `line`, as the process would get them.
pub fn argv(line: &str) -> Vec<OsString> {
    std::iter::once("fastport")
        .chain(line.split_whitespace())
        .map(OsString::from)
        .collect()
}

/// The flags of `fastport LINE`; panics, naming the line, when clap
/// refuses them.
pub fn args(line: &str) -> Args {
    cli::parse_from(argv(line)).unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// A `Write` into memory that the test can read back after the writer
/// (or a clone of it) was handed away.
#[derive(Clone, Default)]
pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    /// Everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }

    /// Everything written so far, as UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8(self.bytes()).unwrap()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A fresh directory in the system's temp directory, named after the
/// module, the test and this process, and removed with its contents when
/// dropped (also when the test fails).
pub struct TempDir(PathBuf);

impl TempDir {
    /// `fastport-MODULE-PID-NAME`, emptied if an earlier run left it.
    pub fn new(module: &str, name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("fastport-{module}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Asserts that `text` holds `needle`, and shows the whole text when not.
#[track_caller]
pub fn assert_has(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} is not in:\n{text}");
}
