//! FastPort's integration tests, compiled into one binary (as ripgrep does).
//! They drive the real `fastport` binary against real listeners; every scan
//! of more than the test's own ports runs inside a private network namespace
//! (see `util::netns`).

mod util;

mod api;
mod at_scale;
mod cli;
mod faults;
mod lab;
mod order;
mod output;
mod parallel;
mod reliability;
mod report;
mod scale;
mod scan;
mod service;
mod service_world;
mod slurm;
mod timing;
