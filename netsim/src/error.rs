//! The crate's errors: a bad value keeps what the user typed; a failed step
//! says which step. Only the binary adds free-form context on top.

use std::io;

use thiserror::Error;

/// A value the user wrote (a CIDR, a port list, a profile field) that the
/// model cannot use.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("invalid {what} {input:?}: {kind}")]
pub struct ConfigError {
    what: &'static str,
    input: String,
    kind: ConfigErrorKind,
}

/// What was wrong with a [`ConfigError`]'s input.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// It does not parse.
    #[error("{0}")]
    Syntax(String),
    /// It parses, but a number is out of its range.
    #[error("{0}")]
    OutOfRange(String),
    /// An address block outside RFC 2544's benchmark range.
    #[error("not inside 198.18.0.0/15, the only range netsim simulates")]
    OutsideBenchmarkRange,
    /// A port list with no port in it.
    #[error("no ports")]
    Empty,
    /// Neither a built-in profile nor a readable file.
    #[error("not a built-in profile (internet-like, far, lossy) nor a readable file: {0}")]
    UnknownProfile(String),
}

impl ConfigError {
    pub(crate) fn new(what: &'static str, input: impl Into<String>, kind: ConfigErrorKind) -> Self {
        ConfigError {
            what,
            input: input.into(),
            kind,
        }
    }

    /// What kind of value it was (`"CIDR"`, `"port list"`, ...).
    pub fn what(&self) -> &str {
        self.what
    }

    /// The input as the user wrote it.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What was wrong with it.
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }
}

/// Everything that can stop a simulation.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NetsimError {
    /// A bad model, profile or option.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A system call or a tool failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// No private network namespace, so nothing may be touched.
    #[error("no private network namespace: {0}")]
    Namespace(String),
    /// The TUN device, address or route could not be set up.
    #[error("setting up the simulated network: {0}")]
    Setup(String),
}

impl NetsimError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        NetsimError::Io {
            context: context.into(),
            source,
        }
    }
}
