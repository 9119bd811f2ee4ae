#!/usr/bin/env python3
"""Generate src/targets/services/iana.rs from IANA's port registry.

FastPort names ports after the IANA "Service Name and Transport Protocol
Port Number Registry" (RFC 6335). IANA releases its protocol registries
under CC0 1.0 (https://www.iana.org/help/licensing-terms), so the names may
ship inside an MIT/Apache crate. Nothing here comes from nmap.

Download the registry's CSV and run from the repository root:

    curl -O https://www.iana.org/assignments/service-names-port-numbers/service-names-port-numbers.csv
    python3 scripts/gen-services.py service-names-port-numbers.csv > src/targets/services/iana.rs

For each TCP port the first registered name that is a valid service name
(RFC 6335 section 5.1: letters, digits and hyphens) is kept; ranges such as
x11's 6000-6063 name every port in them. The output is sorted, so the same
CSV always gives the same file.
"""

import csv
import re
import sys

PER_LINE = 4
VALID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")


def parse(path):
    """Return ({port: name} for TCP, the newest registration or change date)."""
    names = {}
    newest = ""
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            date = row.get("Modification Date") or row.get("Registration Date") or ""
            newest = max(newest, date)
            name = row["Service Name"].strip()
            ports = row["Port Number"].strip()
            if row["Transport Protocol"] != "tcp" or not name or not ports:
                continue
            if not VALID.match(name):
                continue
            lo, _, hi = ports.partition("-")
            for port in range(int(lo), int(hi or lo) + 1):
                if 1 <= port <= 65535:
                    names.setdefault(port, name.lower())
    return names, newest


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    names, newest = parse(sys.argv[1])
    out = sys.stdout
    out.write(
        "//! TCP service names from IANA's Service Name and Transport Protocol\n"
        "//! Port Number Registry, as static data.\n"
        "//!\n"
        "//! GENERATED FILE, DO NOT EDIT: produced by `scripts/gen-services.py` from\n"
        "//! <https://www.iana.org/assignments/service-names-port-numbers/service-names-port-numbers.csv>\n"
        f"//! (newest entry dated {newest}). IANA releases its protocol registries under\n"
        "//! CC0 1.0 (<https://www.iana.org/help/licensing-terms>).\n"
        "//!\n"
        f"//! {len(names)} TCP ports are named.\n\n"
        "/// Every TCP port IANA names, sorted by port: `(port, name)`.\n"
        "#[rustfmt::skip]\n"
        "pub static SERVICES: &[(u16, &str)] = &[\n"
    )
    items = sorted(names.items())
    for i in range(0, len(items), PER_LINE):
        chunk = items[i : i + PER_LINE]
        out.write("    " + " ".join(f'({p}, "{n}"),' for p, n in chunk) + "\n")
    out.write("];\n")


if __name__ == "__main__":
    main()
