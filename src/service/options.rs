//! The service-detection flags (`-sV`, `--version-intensity`, `--banners`,
//! `--service-probes`), validated once into what a scan needs: the compiled probe database
//! and the conversation settings. Called by [`crate::config`]; every error names the flag
//! and, for a probe file, the line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::conversation::Settings;
use super::matcher::Matcher;
use super::probes::{self, ParseError};
use crate::cli::Args;

/// nmap's default `--version-intensity`.
pub const DEFAULT_INTENSITY: u8 = 7;

/// A bad service-detection flag.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// The probe file could not be read.
    #[error("--service-probes {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The probe file has a bad line.
    #[error("--service-probes {}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line and what is wrong on it.
        source: ParseError,
    },
    /// The probe file holds no TCP probe.
    #[error("--service-probes {}: no TCP probe in the file", path.display())]
    NoProbe {
        /// The file.
        path: PathBuf,
    },
}

/// Service detection as the flags asked for it.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// `--banners` without `-sV`: listen to each open port and report what it says, unmatched.
    pub banners_only: bool,
    /// `--version-intensity` (0-9): probes with rarity above it are sent only when hinted.
    pub intensity: u8,
    /// The compiled probe file.
    pub matcher: Arc<Matcher>,
    /// A line for the user (the licence of a loaded probe file), if any.
    pub note: Option<String>,
}

impl ServiceOptions {
    /// `None` when no service flag is given. `--version-intensity` and `--service-probes`
    /// imply `-sV`.
    pub fn from_args(args: &Args) -> Result<Option<ServiceOptions>, OptionsError> {
        let versions = args.service_version
            || args.version_intensity.is_some()
            || args.service_probes.is_some();
        if !versions && !args.banners {
            return Ok(None);
        }
        let (matcher, note) = match &args.service_probes {
            Some(path) => {
                let text = std::fs::read(path).map_err(|source| OptionsError::Read {
                    path: path.clone(),
                    source,
                })?;
                let file = probes::parse(&text).map_err(|source| OptionsError::Parse {
                    path: path.clone(),
                    source,
                })?;
                if !file
                    .probes
                    .iter()
                    .any(|p| p.protocol == probes::Protocol::Tcp)
                {
                    return Err(OptionsError::NoProbe { path: path.clone() });
                }
                let note = format!(
                    "service probes from {}: that file's own licence applies to it (nmap's \
                     nmap-service-probes is under the Nmap Public Source License)",
                    path.display()
                );
                (Matcher::new(file), Some(note))
            }
            None => (super::builtin(), None),
        };
        Ok(Some(ServiceOptions {
            banners_only: args.banners && !versions,
            intensity: args.version_intensity.unwrap_or(DEFAULT_INTENSITY),
            matcher: Arc::new(matcher),
            note,
        }))
    }

    /// Conversation settings for a host whose smoothed RTT is `rtt`.
    pub fn settings(&self, rtt: Duration) -> Settings {
        Settings {
            intensity: self.intensity,
            rtt,
            banners_only: self.banners_only,
            ..Settings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    use crate::test_util::args;

    #[test]
    fn flags_to_options() {
        assert!(ServiceOptions::from_args(&args("-p 22")).unwrap().is_none());
        let o = ServiceOptions::from_args(&args("-sV")).unwrap().unwrap();
        assert_eq!(
            (o.intensity, o.banners_only, o.note.is_none()),
            (7, false, true)
        );
        let o = ServiceOptions::from_args(&args("--version-intensity 2"))
            .unwrap()
            .unwrap();
        assert_eq!((o.intensity, o.banners_only), (2, false));
        let o = ServiceOptions::from_args(&args("--banners"))
            .unwrap()
            .unwrap();
        assert!(o.banners_only);
        assert!(o.settings(Duration::from_millis(5)).banners_only);
        let o = ServiceOptions::from_args(&args("--banners -sV"))
            .unwrap()
            .unwrap();
        assert!(!o.banners_only);
    }

    #[test]
    fn version_intensity_out_of_range_is_a_usage_error() {
        let argv = ["fastport", "--version-intensity", "10"].map(OsString::from);
        let e = crate::cli::parse_from(argv).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--version-intensity"), "{e}");
    }

    #[test]
    fn service_probes_file_errors_name_the_file_and_line() {
        let dir = crate::test_util::TempDir::new("service-probes", "errors");
        let bad = dir.join("bad-probes");
        std::fs::write(&bad, "Probe TCP NULL q||\nrarity 0\n").unwrap();
        let e = ServiceOptions::from_args(&args(&format!("--service-probes {}", bad.display())))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "--service-probes {}: line 2: rarity 0 out of range (1-9)",
                bad.display()
            )
        );
        let good = dir.join("good-probes");
        std::fs::write(&good, "Probe TCP NULL q||\nmatch ssh m|^SSH-|\n").unwrap();
        let o = ServiceOptions::from_args(&args(&format!("--service-probes {}", good.display())))
            .unwrap()
            .unwrap();
        assert!(o.note.unwrap().contains("licence"));
        assert_eq!(o.matcher.compiled_rules(), 1);
        let missing = dir.join("missing");
        let e =
            ServiceOptions::from_args(&args(&format!("--service-probes {}", missing.display())))
                .unwrap_err();
        assert!(matches!(e, OptionsError::Read { .. }));
    }
}
