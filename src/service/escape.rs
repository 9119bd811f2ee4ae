//! Banners are hostile input: these helpers make them safe for every place they are written.
//!
//! A service may answer anything: ANSI escapes that repaint a terminal, NUL bytes, invalid
//! UTF-8, `</service>` to end an XML element, `=HYPERLINK(...)` for a spreadsheet. Nothing of
//! that reaches a writer raw:
//!
//! - [`bytes`] turns raw bytes into printable ASCII the way nmap prints fingerprints:
//!   `\r`, `\n`, `\t`, `\\` and `\xHH` for every other byte outside `0x20..=0x7e`. Its output
//!   is safe for a terminal and, once the JSON or XML writer has escaped `"`, `&`, `<`, safe
//!   there too.
//! - [`text`] does the same for strings that are already text (version fields expanded from
//!   templates): printable Unicode is kept, control characters (C0, DEL, C1) and the bidi
//!   overrides that reorder a line are escaped.
//! - [`xml`] escapes the five markup specials (and shows control characters) for XML, HTML
//!   and SVG: the nmap XML output and `fastport report`'s page share it; [`csv_cell`] quotes a CSV cell and defuses
//!   spreadsheet formulas (a cell that begins with `=`, `+`, `-`, `@`, tab or CR).

use std::fmt::Write;

/// Raw bytes as printable ASCII, nmap-style (`\x1b`, `\r\n`, `\\`).
pub fn bytes(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for &b in raw {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

fn dangerous(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A text field with control characters and bidi overrides escaped (`\x1b`, `\u{202e}`);
/// backslashes are doubled so the escaping cannot be forged.
pub fn text(s: &str) -> String {
    if !s.chars().any(|c| dangerous(c) || c == '\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if dangerous(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if dangerous(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Text as XML, HTML or SVG element content or attribute value: `&`, `<`, `>`, `"` and `'` as
/// entities (`&apos;` as nmap writes it; HTML5 knows it too), and control characters other
/// than newline and tab shown as `\u{1b}` (XML 1.0 cannot carry them even as entities; a page
/// would hide them). The one markup escaper: the XML outputs apply it to the output of
/// [`bytes`] or [`text`], `fastport report` to every string it puts in its page.
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// One CSV cell (RFC 4180 quoting). A cell that begins with `=`, `+`, `-`, `@`, tab or CR
/// would be read as a formula by a spreadsheet: it is prefixed with `'` and quoted.
pub fn csv_cell(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let needs_quotes = formula || s.contains([',', '"', '\n', '\r']);
    if !needs_quotes {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 4);
    out.push('"');
    if formula {
        out.push('\'');
    }
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_escape_in_banner_is_shown_escaped() {
        assert_eq!(
            bytes(b"\x1b[2J220 hi\r\n\0\xff\\"),
            "\\x1b[2J220 hi\\r\\n\\x00\\xff\\\\"
        );
        assert!(
            bytes(&(0..=255).collect::<Vec<u8>>())
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b))
        );
    }

    #[test]
    fn text_keeps_unicode_escapes_controls_and_bidi() {
        assert_eq!(text("Grüße 1.0"), "Grüße 1.0");
        assert_eq!(
            text("a\u{1b}[31mb\u{202e}c\u{85}\\"),
            "a\\x1b[31mb\\u{202e}c\\x85\\\\"
        );
    }

    #[test]
    fn xml_specials() {
        assert_eq!(
            xml("</service><x a=\"'\">&"),
            "&lt;/service&gt;&lt;x a=&quot;&apos;&quot;&gt;&amp;"
        );
    }

    #[test]
    fn report_payload_in_markup_is_text_and_controls_are_shown() {
        assert_eq!(
            xml("</script><img src=x onerror=alert(1)>\u{1}\r\u{85}\n\t"),
            "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;\\u{1}\\u{d}\\u{85}\n\t"
        );
    }

    #[test]
    fn csv_formula_injection_is_defused() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "\"'+1\"");
        assert_eq!(csv_cell("-1"), "\"'-1\"");
        assert_eq!(csv_cell("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(csv_cell("nginx 1.2"), "nginx 1.2");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
    }
}
