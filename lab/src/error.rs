//! The lab's error type.

use std::fmt;
use std::io;

/// Everything that can stop a lab run. Not being able to make a network
/// namespace outside CI is not an error: it is [`crate::Outcome::Skipped`].
#[derive(Debug)]
#[non_exhaustive]
pub enum LabError {
    /// A scenario could not be read, parsed or built.
    Scenario {
        /// The scenario name or file.
        origin: String,
        /// What was wrong.
        message: String,
    },
    /// No network namespace could be made (an error only under `CI=true`).
    Namespace(String),
    /// System tools the world needs are missing.
    MissingTools(Vec<String>),
    /// Building the world inside the namespace failed.
    World(String),
    /// The built world does not behave as its truth says.
    SelfCheck(String),
    /// A scanner ran but failed, or its output could not be parsed.
    Scanner {
        /// The scanner's name.
        scanner: String,
        /// What went wrong.
        message: String,
    },
    /// The `fastport-lab` binary failed.
    Lab(String),
    /// An I/O error, with what was being done.
    Io {
        /// What the lab was doing.
        context: String,
        /// The error.
        source: io::Error,
    },
}

impl LabError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> LabError {
        LabError::Io {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabError::Scenario { origin, message } => write!(f, "scenario {origin}: {message}"),
            LabError::Namespace(why) => write!(f, "cannot make a network namespace: {why}"),
            LabError::MissingTools(t) => write!(
                f,
                "missing tools: {} (install iproute2 and nftables, or run /work/shared/peers/install.sh)",
                t.join(", ")
            ),
            LabError::World(m) => write!(f, "building the world: {m}"),
            LabError::SelfCheck(m) => write!(f, "world self-check: {m}"),
            LabError::Scanner { scanner, message } => write!(f, "{scanner}: {message}"),
            LabError::Lab(m) => write!(f, "fastport-lab: {m}"),
            LabError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for LabError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LabError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
