//! Fuzzes target operands and `--exclude` values through `targets::build`.
//!
//! Input: text, one value per line. A line starting with `!` is an
//! `--exclude` value (the rest of the line), any other line a target
//! operand. Name resolution is off (`-n`), so a hostname is an error and no
//! input ever causes a DNS query.

#![no_main]

use fastport::targets::{self, TargetArgs};
use fastport_fuzz::{check_error, check_space};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (mut operands, mut exclude) = (Vec::new(), Vec::new());
    for line in text.split('\n') {
        match line.strip_prefix('!') {
            Some(value) => exclude.push(value.to_owned()),
            None => operands.push(line.to_owned()),
        }
    }
    let args = TargetArgs {
        targets: &operands,
        exclude: &exclude,
        resolve: false,
        ports: Some("80"),
        ..TargetArgs::default()
    };
    match targets::build(&args) {
        Ok(space) => {
            assert_eq!(space.ports(), [80]);
            check_space(&space);
        }
        Err(e) => check_error(&e, text.len(), 0),
    }
});
