//! FastPort's own `--top-ports` ranking, used when no `nmap-services` file
//! is installed (see [`super::Ranking`]).
//!
//! Source and licence: written for FastPort by its authors (MIT OR
//! Apache-2.0, like the rest of the crate) from general knowledge of which
//! TCP services are widely deployed: web servers and their alternate
//! ports, remote access, mail, file sharing, directory services, databases,
//! message brokers, container and cluster control planes, printers and
//! home-router management. It is an informed judgement, not a measurement,
//! and copies no other project's frequency table. Ports past this list are
//! ranked by the IANA registry: named well-known ports (1-1023) first, then
//! every other named port, each in ascending order.

/// The most commonly deployed TCP services, most common first.
#[rustfmt::skip]
pub static BUILT_IN: &[u16] = &[
    // The web, remote shells and desktops, mail and name service.
    80, 443, 22, 21, 25, 23, 53, 3389, 8080, 445,
    139, 135, 110, 143, 993, 995, 587, 465, 8443, 111,
    // Databases and caches.
    3306, 5432, 1433, 1521, 6379, 27017, 9200, 11211, 5984, 9042,
    // Remote access and management.
    5900, 5901, 5985, 5986, 2222, 10000, 4899, 5800, 2082, 2083,
    2086, 2087, 7547, 161, 623, 8291, 9090, 9443, 4443, 8834,
    // Alternate and application web ports.
    8000, 8008, 8081, 8082, 8888, 8880, 81, 3000, 5000, 9000,
    8001, 8009, 7001, 8086, 5601, 15672, 3128, 1080, 8118, 4848,
    // Directory, file and print services.
    389, 636, 88, 464, 3268, 2049, 548, 873, 631, 515,
    9100, 990, 3260, 3269, 513, 514, 512, 79, 113, 119,
    // Messaging, media, version control, clusters.
    5060, 5061, 5222, 6667, 1883, 8883, 5672, 9092, 2181, 554,
    1935, 9418, 3690, 2375, 2376, 6443, 10250, 2379, 1723, 1194,
    // Windows RPC and legacy services still found on LANs.
    49152, 49153, 49154, 1025, 1026, 6000, 5631, 179, 199, 7,
];
