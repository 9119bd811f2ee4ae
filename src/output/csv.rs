//! CSV (`-oC`), for spreadsheets and Python's `csv` module: a header row
//! `addr,port,state,reason,rtt_us,host`, then one row per shown result as
//! it arrives. No field can hold a comma, a quote or a line break (a
//! hostname is letters, digits, dots and hyphens), so none is quoted;
//! `rtt_us` is empty when nothing answered, `host` when the target was not
//! given by name. `host` is last so readers by position keep working.
//!
//! With `-sV` or `--banners` the header gains
//! `service,product,version,extrainfo,tunnel,banner` after `host`, and an
//! open port's row its service in them. Those cells carry what a service
//! said about itself, so they are quoted where needed (RFC 4180), and a
//! cell that begins with `=`, `+`, `-` or `@` is defused (prefixed with
//! `'`, quoted) so that a spreadsheet does not run it as a formula
//! ([`crate::service::escape::csv_cell`]).

use std::io::{self, Write};
use std::sync::Arc;

use super::{Sink, Writer};

use crate::probe::ProbeResult;
use crate::stats::Summary;
use crate::targets::HostNames;

pub const HEADER: &str = "addr,port,state,reason,rtt_us,host";
/// The columns `-sV`/`--banners` add after [`HEADER`]'s.
pub const SERVICE_HEADER: &str = ",service,product,version,extrainfo,tunnel,banner";

pub struct CsvSink {
    out: Writer,
    begun: bool,
    names: Arc<HostNames>,
    services: bool,
}

impl CsvSink {
    pub fn new(out: Writer) -> Self {
        CsvSink {
            // A continued file has its header.
            begun: out.continued(),
            out,
            names: Arc::default(),
            services: false,
        }
    }

    /// Adds the service columns (`-sV`/`--banners`).
    pub fn with_services(mut self, on: bool) -> Self {
        self.services = on;
        self
    }

    /// Fills `host` for the targets given by name.
    pub fn with_names(mut self, names: &Arc<HostNames>) -> Self {
        self.names = Arc::clone(names);
        self
    }

    fn begin(&mut self) -> io::Result<()> {
        if !self.begun {
            self.begun = true;
            if self.services {
                writeln!(self.out, "{HEADER}{SERVICE_HEADER}")?;
            } else {
                writeln!(self.out, "{HEADER}")?;
            }
        }
        Ok(())
    }
}

impl Sink for CsvSink {
    fn result(&mut self, r: &ProbeResult, shown: bool) -> io::Result<()> {
        self.begin()?;
        if !shown {
            return Ok(());
        }
        write!(
            self.out,
            "{},{},{},{},",
            r.target.ip(),
            r.target.port(),
            r.reason.state(),
            r.reason
        )?;
        if let Some(us) = r.rtt_us {
            write!(self.out, "{us}")?;
        }
        self.out.write_all(b",")?;
        if let Some(host) = self.names.get(r.target.ip()) {
            self.out.write_all(host.as_bytes())?;
        }
        if self.services {
            let cells = r
                .service
                .as_deref()
                .map(|s| s.csv_cells())
                .unwrap_or_default();
            for cell in cells {
                write!(self.out, ",{cell}")?;
            }
        }
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, _summary: &Summary) -> io::Result<()> {
        self.begin()?; // an empty scan still gets its header
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Reason;
    use crate::config::Show;
    use crate::output::hosts::tests::result;
    use crate::output::tests::{capture, feed, summary};
    use std::time::Duration;

    #[test]
    fn rows_follow_the_header() {
        let (out, text) = capture();
        let names = Arc::new(HostNames::new(&[(
            "localhost".into(),
            vec!["127.0.0.1".parse().unwrap()],
        )]));
        let mut sink = CsvSink::new(out).with_names(&names);
        for r in [
            result(0, "127.0.0.1:22", Reason::SynAck, Some(53)),
            result(1, "127.0.0.1:23", Reason::ConnRefused, Some(40)),
            result(2, "[::1]:8080", Reason::NoResponse, None),
        ] {
            feed(&mut sink, Show::parse("open,filtered").unwrap(), &r);
        }
        sink.finish(&summary(false, 3, Duration::ZERO)).unwrap();
        assert_eq!(
            text(),
            "addr,port,state,reason,rtt_us,host\n\
             127.0.0.1,22,open,syn-ack,53,localhost\n\
             ::1,8080,filtered,no-response,,\n"
        );
    }

    #[test]
    fn an_empty_scan_has_a_header() {
        let (out, text) = capture();
        let mut sink = CsvSink::new(out);
        sink.finish(&summary(false, 0, Duration::ZERO)).unwrap();
        assert_eq!(text(), "addr,port,state,reason,rtt_us,host\n");
    }

    /// `-sV`: the service columns follow `host`; what a service chose to
    /// say is quoted, and a formula is defused.
    #[test]
    fn service_columns_quote_and_defuse_what_services_say() {
        use crate::service::record::ServiceRecord;
        let (out, text) = capture();
        let mut sink = CsvSink::new(out).with_services(true);
        let mut r = result(0, "127.0.0.1:22", Reason::SynAck, Some(53));
        r.service = Some(Box::new(ServiceRecord {
            service: Some("ssh".into()),
            product: Some("Open,SSH".into()),
            banner: Some("=HYPERLINK(\"x\")".into()),
            ..ServiceRecord::default()
        }));
        feed(&mut sink, Show::OPEN, &r);
        feed(
            &mut sink,
            Show::OPEN,
            &result(1, "127.0.0.1:80", Reason::SynAck, Some(5)),
        );
        sink.finish(&summary(false, 2, Duration::ZERO)).unwrap();
        assert_eq!(
            text(),
            "addr,port,state,reason,rtt_us,host,service,product,version,extrainfo,tunnel,banner\n\
             127.0.0.1,22,open,syn-ack,53,,ssh,\"Open,SSH\",,,,\"'=HYPERLINK(\"\"x\"\")\"\n\
             127.0.0.1,80,open,syn-ack,5,,,,,,,\n"
        );
    }
}
