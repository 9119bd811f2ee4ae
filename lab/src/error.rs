//! The lab's error type.

use std::io;

/// Everything that can stop a lab run. Not being able to make a network
/// namespace outside CI is not an error: it is [`crate::Outcome::Skipped`].
/// Messages name what was wrong and never a path of this machine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// A scenario could not be read, parsed or built.
    #[error("scenario {origin}: {message}")]
    Scenario {
        /// The scenario name or file.
        origin: String,
        /// What was wrong.
        message: String,
    },
    /// No network namespace could be made (an error only under `CI=true`).
    #[error("cannot make a network namespace: {0}")]
    Namespace(String),
    /// System tools the world needs are missing.
    #[error("missing tools: {} (install iproute2 and nftables)", .0.join(", "))]
    MissingTools(Vec<String>),
    /// Building the world inside the namespace failed.
    #[error("building the world: {0}")]
    World(String),
    /// The built world does not behave as its truth says.
    #[error("world self-check: {0}")]
    SelfCheck(String),
    /// A scanner ran but failed, or its output could not be parsed.
    #[error("{scanner}: {message}")]
    Scanner {
        /// The scanner's name.
        scanner: String,
        /// What went wrong.
        message: String,
    },
    /// The `fastport-lab` binary failed.
    #[error("fastport-lab: {0}")]
    Lab(String),
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What the lab was doing.
        context: String,
        /// The error.
        #[source]
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
