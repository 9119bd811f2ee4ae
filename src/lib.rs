//! FastPort: a TCP connect port scanner built on one non-blocking event loop per core.
#![deny(unsafe_code)]

pub mod classify;
pub mod cli;
pub mod config;
pub mod engine;
pub mod output;
pub mod probe;
pub mod scan;
pub mod stats;
pub mod sys;
pub mod targets;
pub mod wheel;
