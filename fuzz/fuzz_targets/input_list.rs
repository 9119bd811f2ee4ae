//! Fuzzes the `-iL` / `--exclude-file` reader through `targets::build`.
//!
//! Input: the raw bytes of a list file. They go to a file in the temporary
//! directory, named after the process, for `targets::build`; the tokenizer
//! itself (`targets::for_each_list_token`) also reads them from memory.
//! With `-n`, so no input ever causes a DNS query. Checks, besides the
//! invariants of `fastport_fuzz`:
//! - an error's line number lies within the file;
//! - the same file as `-iL` and `--exclude-file` leaves nothing to scan;
//! - for plain ASCII without comments or over-long tokens, the file and the
//!   same text as one target operand give the same space;
//! - where the reads split the text changes nothing: the tokenizer through
//!   a buffer of 1-16 bytes gives the tokens and the error of one read.

#![no_main]

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fastport::targets::{self, TargetArgs, TargetErrorKind};
use fastport_fuzz::{check_error, check_space};
use libfuzzer_sys::fuzz_target;

fn list_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::path::Path::new("/dev/shm");
        let dir = if dir.is_dir() {
            dir.to_owned()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("fastport-fuzz-il-{}", std::process::id()))
    })
}

/// The tokens of `data` read through a buffer of `capacity` bytes, and the
/// message of the error that stopped the reading, if any.
fn tokens(data: &[u8], capacity: usize) -> (Vec<String>, Option<String>) {
    let mut tokens = Vec::new();
    let reader = BufReader::with_capacity(capacity, data);
    let end = targets::for_each_list_token(reader, "-iL", Path::new("list"), |t| {
        tokens.push(t.to_string());
        Ok(())
    });
    (tokens, end.err().map(|e| e.to_string()))
}

fuzz_target!(|data: &[u8]| {
    let capacity = usize::from(data.first().copied().unwrap_or(0) % 16) + 1;
    assert_eq!(tokens(data, capacity), tokens(data, data.len().max(1)));

    let path = list_path();
    std::fs::write(path, data).expect("write the list file");
    let extra = path.as_os_str().len() * 2;
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64 + 1;

    let args = TargetArgs {
        input_list: Some(path),
        resolve: false,
        ports: Some("443"),
        ..TargetArgs::default()
    };
    let listed = targets::build(&args);
    match &listed {
        Ok(space) => check_space(space),
        Err(e) => {
            check_error(e, data.len(), extra);
            assert!(
                e.line().is_none_or(|l| l <= lines),
                "line {:?} of {lines}",
                e.line()
            );
        }
    }

    let both = TargetArgs {
        exclude_file: Some(path),
        ..args
    };
    match (&listed, targets::build(&both)) {
        (_, Ok(space)) => panic!("a list minus itself left {} hosts", space.host_count()),
        (Ok(_), Err(e)) => assert!(
            matches!(
                e.kind(),
                TargetErrorKind::NothingToScan { all_excluded: true }
            ),
            "a list minus itself: {e}"
        ),
        (Err(_), Err(e)) => check_error(&e, data.len(), extra),
    }

    // The file's tokenizer splits on ASCII whitespace, operands on Unicode
    // whitespace: compare them where both agree on what a token is.
    let plain = data
        .iter()
        .all(|&b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'!'..=b'~') && b != b'#');
    let short = data
        .split(|b| b.is_ascii_whitespace())
        .all(|t| t.len() <= 1024);
    if plain && short {
        let operand = [String::from_utf8(data.to_vec()).unwrap()];
        let as_operand = targets::build(&TargetArgs {
            targets: &operand,
            input_list: None,
            ..args
        });
        match (&listed, &as_operand) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.token(), b.token()),
            _ => panic!("-iL gave {listed:?}, the operand {as_operand:?}"),
        }
    }
});
