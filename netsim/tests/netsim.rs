//! netsim's integration tests, one binary (as ripgrep does): the command
//! line, the packets the responder builds, and real scans through a TUN
//! device in private network namespaces. Tests that need a namespace skip
//! with a message where none can be made, and fail under `CI=true`.

mod cli;
mod packets;
mod scan;
mod util;
