#!/usr/bin/env python3
"""Generate src/targets/services/table.rs from nmap's nmap-services file.

FastPort names open ports and picks --top-ports from nmap's published
open-frequency table. Only TCP lines are kept. Run from the repository root:

    python3 scripts/gen-services.py [/usr/share/nmap/nmap-services] > src/targets/services/table.rs

The output is deterministic (sorted), so regenerating from the same input
yields the same file.
"""

import sys

DEFAULT_INPUT = "/usr/share/nmap/nmap-services"
PER_LINE_TABLE = 3  # entries per line in SERVICES
PER_LINE_TOP = 12  # ports per line in TOP_PORTS


def parse(path):
    """Return {port: (name, freq_text, freq)} for every tcp line."""
    services = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) < 3:
                sys.exit(f"{path}:{lineno}: expected 'name port/proto freq'")
            name, port_proto, freq_text = fields[:3]
            port_text, _, proto = port_proto.partition("/")
            if proto != "tcp":
                continue
            port = int(port_text)
            if not 0 <= port <= 65535:
                sys.exit(f"{path}:{lineno}: port {port} out of range")
            freq = float(freq_text)
            if port in services:
                # nmap-services lists each port/proto once; keep the more frequent.
                if services[port][2] >= freq:
                    continue
            if '"' in name or "\\" in name:
                sys.exit(f"{path}:{lineno}: unexpected character in name {name!r}")
            services[port] = (name, freq_text, freq)
    return services


def rust_f32(text):
    """A Rust float literal carrying exactly the decimal nmap wrote."""
    value = float(text)
    if value == 0.0:
        return "0.0"
    text = text.lstrip("+")
    return text if "." in text or "e" in text.lower() else text + ".0"


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_INPUT
    services = parse(path)
    ports = sorted(p for p in services if p != 0)
    ranked = sorted(
        (p for p in ports if services[p][2] > 0.0),
        key=lambda p: (-services[p][2], p),
    )

    out = []
    w = out.append
    w("//! nmap's TCP service names and open frequencies, as static tables.")
    w("//!")
    w("//! GENERATED FILE, DO NOT EDIT: produced by `scripts/gen-services.py` from")
    w("//! nmap's `nmap-services` (Debian package nmap-common, /usr/share/nmap/nmap-services).")
    w("//! Only `tcp` lines are kept. The data is (C) Insecure.Com LLC, distributed under")
    w("//! the Nmap Public Source License (<https://svn.nmap.org/nmap/LICENSE>).")
    w("//!")
    w(f"//! {len(ports)} TCP ports are named; {len(ranked)} have an open frequency above zero.")
    w("")
    w("/// Every TCP port nmap names, sorted by port: `(port, name, open frequency)`.")
    w("///")
    w("/// nmap calls ports without a registered service `unknown`; the frequency is")
    w("/// the fraction of scanned hosts on which nmap's survey found the port open.")
    w("#[rustfmt::skip]")
    w("pub static SERVICES: &[(u16, &str, f32)] = &[")
    for i in range(0, len(ports), PER_LINE_TABLE):
        chunk = ports[i : i + PER_LINE_TABLE]
        items = " ".join(
            f'({p}, "{services[p][0]}", {rust_f32(services[p][1])}),' for p in chunk
        )
        w("    " + items)
    w("];")
    w("")
    w("/// TCP ports with a non-zero open frequency, most frequently open first")
    w("/// (ties broken by ascending port). `--top-ports N` takes a prefix of this.")
    w("#[rustfmt::skip]")
    w("pub static TOP_PORTS: &[u16] = &[")
    for i in range(0, len(ranked), PER_LINE_TOP):
        chunk = ranked[i : i + PER_LINE_TOP]
        w("    " + " ".join(f"{p}," for p in chunk))
    w("];")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
