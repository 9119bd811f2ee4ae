//! Fuzzes the port parsers: `targets::parse_ports`, and `-p`,
//! `--top-ports` and `--exclude-ports` together through `targets::build`.
//!
//! Input: text. The whole text is given to `parse_ports`. Then lines
//! `p:SPEC`, `x:SPEC` and `t:N` set `-p`, `--exclude-ports` and
//! `--top-ports` (the last of each wins; other lines are ignored) for a
//! build whose only target is the default, 127.0.0.1, with `-n`.

#![no_main]

use fastport::targets::{self, TargetArgs};
use fastport_fuzz::{check_error, check_space};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    let whole = targets::parse_ports(&text);
    match &whole {
        Ok(ports) => {
            assert!(!ports.is_empty() && ports.len() <= 65535);
            assert!(ports[0] != 0 && ports.windows(2).all(|w| w[0] < w[1]));
        }
        Err(e) => check_error(e, text.len(), 0),
    }

    let (mut ports, mut exclude_ports, mut top_ports) = (None, None, None);
    for line in text.split('\n') {
        if let Some(spec) = line.strip_prefix("p:") {
            ports = Some(spec);
        } else if let Some(spec) = line.strip_prefix("x:") {
            exclude_ports = Some(spec);
        } else if let Some(n) = line.strip_prefix("t:") {
            top_ports = n.parse::<usize>().ok();
        }
    }
    let args = TargetArgs {
        resolve: false,
        ports,
        exclude_ports,
        top_ports,
        ..TargetArgs::default()
    };
    match targets::build(&args) {
        Ok(space) => {
            check_space(&space);
            assert_eq!(space.host_count(), 1, "only 127.0.0.1");
            let excluded = exclude_ports.map(|x| targets::parse_ports(x).unwrap());
            let excluded = excluded.unwrap_or_default();
            assert!(
                space
                    .ports()
                    .iter()
                    .all(|p| excluded.binary_search(p).is_err())
            );
            if let Some(n) = top_ports {
                assert!(space.ports().len() <= n);
            }
            if let Some(spec) = ports {
                let mut expected = targets::parse_ports(spec).unwrap();
                expected.retain(|p| excluded.binary_search(p).is_err());
                assert_eq!(space.ports(), expected);
            }
        }
        Err(e) => check_error(&e, text.len(), 0),
    }
});
