//! Dates and durations as nmap's outputs print them: `Sun Nov 29 13:32:20
//! 2026` (in UTC: FastPort reads no time-zone database) and `0:00:05`.
//! Pure functions of their input, so the formats' tests are exact.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Seconds since the Unix epoch (0 for times before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `Sun Nov 29 13:32:20 2026`: the `%a %b %d %H:%M:%S %Y` nmap and ndiff
/// use, in UTC.
pub fn ctime(t: SystemTime) -> String {
    let secs = unix_secs(t);
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[((days + 4) % 7) as usize];
    format!(
        "{weekday} {} {day:02} {:02}:{:02}:{:02} {year}",
        MONTHS[(month - 1) as usize],
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
    )
}

/// `H:MM:SS`, as nmap's status lines count time.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Year, month (1-12) and day (1-31) of a count of days since 1970-01-01:
/// Howard Hinnant's `civil_from_days`, for non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days end each 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn ctime_matches_nmaps_format() {
        assert_eq!(ctime(at(0)), "Thu Jan 01 00:00:00 1970");
        // Printed by nmap 7.93 on a UTC machine for this start time.
        assert_eq!(ctime(at(1_795_959_140)), "Sun Nov 29 13:32:20 2026");
        assert_eq!(ctime(at(951_782_400)), "Tue Feb 29 00:00:00 2000");
        assert_eq!(ctime(at(1_709_251_199)), "Thu Feb 29 23:59:59 2024");
        assert_eq!(ctime(at(4_107_542_400)), "Mon Mar 01 00:00:00 2100");
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // Walk 200 years of days: the calendar never skips or repeats.
        let mut prev = civil_from_days(0);
        for d in 1..73_049 {
            let (y, m, day) = civil_from_days(d);
            let (py, pm, pday) = prev;
            let next_day = (y, m) == (py, pm) && day == pday + 1;
            let next_month = day == 1 && ((y == py && m == pm + 1) || (y == py + 1 && m == 1));
            assert!(next_day || next_month, "{prev:?} -> {:?}", (y, m, day));
            prev = (y, m, day);
        }
    }

    #[test]
    fn clocks() {
        assert_eq!(clock(Duration::from_millis(5_900)), "0:00:05");
        assert_eq!(clock(Duration::from_secs(3_725)), "1:02:05");
        assert_eq!(clock(Duration::from_secs(100 * 3600)), "100:00:00");
    }
}
