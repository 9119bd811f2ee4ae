//! Fixtures the unit tests of several modules share: a command line typed
//! as one string, and a writer whose bytes the test reads back.

use std::ffi::OsString;
use std::io::{self, Write};
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
