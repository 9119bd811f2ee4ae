//! Service matching cost: CPU time per banner against a full-size database (nmap's own
//! nmap-service-probes, about 12 000 patterns, when /usr/share/nmap has it) and FastPort's
//! own, and the memory the full-size database takes once loaded.
//!
//! The banners are what the real daemons of the service world (`scripts/service-world`:
//! OpenSSH, vsftpd, Dovecot, Exim, MariaDB, nginx, Python's http.server, Redis, memcached,
//! Mosquitto, PostgreSQL) answered to each database's probe, captured once, plus a few
//! that match late or never (the worst case: every candidate rule is tried). Each iteration
//! matches every banner the way a conversation does: the answer to the probe that got it,
//! that probe's rules, its fallbacks, then NULL's.
//!
//! Printed once per database: the time to load it, the patterns compiled after the warm-up
//! (each is compiled on first use), and the process's peak RSS (VmHWM) before loading,
//! after loading, and after matching. Run with
//! `cargo bench --bench service` (the figures in docs/BENCHMARKS.md).

use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fastport::service::probes::{self, Protocol};
use fastport::service::{self, Matcher};

const NMAP: &str = "/usr/share/nmap/nmap-service-probes";

/// (FastPort's probe, nmap's probe, what answered, the answer).
type Banner = (&'static str, &'static str, &'static str, &'static [u8]);

const BANNERS: &[Banner] = &[
    ("NULL", "NULL", "OpenSSH", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n"),
    ("NULL", "NULL", "vsftpd", b"220 (vsFTPd 3.0.3)\r\n"),
    ("NULL", "NULL", "Dovecot IMAP", b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot (Debian) ready.\r\n"),
    ("NULL", "NULL", "Dovecot POP3", b"+OK Dovecot (Debian) ready.\r\n"),
    ("NULL", "NULL", "Exim", b"220 vm ESMTP Exim 4.96 Wed, 02 Dec 2026 02:01:52 +0000\r\n"),
    ("NULL", "NULL", "MariaDB", b"d\x00\x00\x00\n5.5.5-10.11.19-MariaDB-0+deb12u1\x00\x04\x00\x00\x00LZ`QW?tO\x00\xfe\xf7\x08\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00iF`3y-nc(;.v\x00mysql_native_password\x00"),
    ("HTTPGet", "GetRequest", "nginx", b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 02:01:54 GMT\r\nContent-Type: text/html\r\nContent-Length: 615\r\nLast-Modified: Wed, 19 Oct 2022 08:02:20 GMT\r\nConnection: close\r\nETag: \"634faf0c-267\"\r\nAccept-Ranges: bytes\r\n\r\n<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n<style>\nhtml { color-scheme: light dark; }\nbody { width: 35em; margin: 0 auto;\nfont-family: Tahoma, Verdana, Arial, sans-serif; }\n</style>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is successfully installed and\nworking. Further configuration is required.</p>\n\n<p>For online documentation and support please refer to\n<a href=\"http://nginx.org/\">nginx.org</a>.<br/>\nCommercial support is available at\n<a href=\"http://nginx.com/\">nginx.com</a>.</p>\n\n<p><em>Thank you for using nginx.</em></p>\n</body>\n</html>\n"),
    ("HTTPGet", "GetRequest", "Python http.server", b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.7\r\nDate: Wed, 02 Dec 2026 02:01:54 GMT\r\nContent-type: text/html; charset=utf-8\r\nContent-Length: 1461\r\n\r\n<!DOCTYPE HTML>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Directory listing for /</title>\n</head>\n<body>\n<h1>Directory listing for /</h1>\n<hr>\n<ul>\n<li><a href=\"dovecot-state/\">dovecot-state/</a></li>\n<li><a href=\"dovecot.conf\">dovecot.conf</a></li>\n<li><a href=\"dovecot.log\">dovecot.log</a></li>\n<li><a href=\"exim.pid\">exim.pid</a></li>\n<li><a href=\"http.log\">http.log</a></li>\n<li><a href=\"memcached.pid\">memcached.pid</a></li>\n<li><a href=\"mosquitto.conf\">mosquitto.conf</a></li>\n<li><a href=\"mosquitto.log\">mosquitto.log</a></li>\n<li><a href=\"mosquitto.pid\">mosquitto.pid</a></li>\n<li><a href=\"mysql/\">mysql/</a></li>\n<li><a href=\"mysql.log\">mysql.log</a></li>\n<li><a href=\"nginx/\">nginx/</a></li>\n<li><a href=\"nginx.conf\">nginx.conf</a></li>\n<li><a href=\"nginx.err\">nginx.err</a></li>\n<li><a href=\"nginx.pid\">nginx.pid</a></li>\n<li><a href=\"pg/\">pg/</a></li>\n<li><a href=\"pg.log\">pg.log</a></li>\n<li><a href=\"redis.log\">redis.log</a></li>\n<li><a href=\"redis.pid\">redis.pid</a></li>\n<li><a href=\"ssh_host_ed25519_key\">ssh_host_ed25519_key</a></li>\n<li><a href=\"ssh_host_ed25519_key.pub\">ssh_host_ed25519_key.pub</a></li>\n<li><a href=\"sshd.log\">sshd.log</a></li>\n<li><a href=\"sshd.pid\">sshd.pid</a></li>\n<li><a href=\"sshd_config\">sshd_config</a></li>\n<li><a href=\"tls.crt\">tls.crt</a></li>\n<li><a href=\"tls.key\">tls.key</a></li>\n<li><a href=\"vsftpd.conf\">vsftpd.conf</a></li>\n<li><a href=\"world.tsv\">world.tsv</a></li>\n</ul>\n<hr>\n</body>\n</html>\n"),
    ("HTTPGet", "GetRequest", "nginx TLS port, plain GET", b"HTTP/1.1 400 Bad Request\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 02:01:54 GMT\r\nContent-Type: text/html\r\nContent-Length: 255\r\nConnection: close\r\n\r\n<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n"),
    ("RedisInfo", "redis-server", "Redis INFO", b"$4882\r\n# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:ae4d7c971a948f0\r\nredis_mode:standalone\r\nos:Linux 6.18.44-fc-v1045 x86_64\r\narch_bits:64\r\nmonotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:epoll\r\natomicvar_api:c11-builtin\r\ngcc_version:12.2.0\r\nprocess_id:26\r\nprocess_supervised:no\r\nrun_id:8ec930f7976c5eab6dc1b3f681e18c1aa81f4bc4\r\ntcp_port:7379\r\nserver_time_usec:1796176914870227\r\nuptime_in_seconds:14\r\nuptime_in_days:0\r\nhz:10\r\nconfigured_hz:10\r\nlru_clock:1014802\r\nexecutable:/work/wt/svc-world/redis-server\r\nconfig_file:\r\nio_threads_active:0\r\n\r\n# Clients\r\nconnected_clients:1\r\ncluster_connections:0\r\nmaxclients:10000\r\nclient_recent_max_input_buffer:0\r\nclient_recent_max_output_buffer:0\r\nblocked_clients:0\r\ntracking_clients:0\r\nclients_in_timeout_table:0\r\n\r\n# Memory\r\nused_memory:917216\r\nused_memory_human:895.72K\r\nused_memory_rss:6901760\r\nused_memory_rss_human:6.58M\r\nused_memory_peak:917216\r\nused_memory_peak_human:895.72K\r\nused_memory_peak_perc:102.57%\r\nused_memory_overhead:876648\r\nused_memory_startup:876448\r\nused_memory_dataset:40568\r\nused_memory_dataset_perc:99.51%\r\nallocator_allocated:1711328\r\nallocator_active:1851392\r\nallocator_resident:4521984\r\ntotal_system_memory:25275990016\r\ntotal_system_memory_human:23.54G\r\nused_memory_lua:32768\r\nused_memory_vm_eval:32768\r\nused_memory_lua_human:32.00K\r\nused_memory_scripts_eval:0\r\nnumber_of_cached_scripts:0\r\nnumber_of_functions:0\r\nnumber_of_libraries:0\r\nused_memory_vm_functions:33792\r\nused_memory_vm_total:66560\r\nused_memory_vm_total_human:65.00K\r\nused_memory_functions:200\r\nused_memory_scripts:200\r\nused_memory_scripts_human:200B\r\nmaxmemory:0\r\nmaxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\nallocator_frag_ratio:1.08\r\nallocator_frag_bytes:140064\r\nallocator_rss_ratio:2.44\r\nallocator_rss_bytes:2670592\r\nrss_overhead_ratio:1.53\r\nrss_overhead_bytes:2379776\r\nmem_fragmentation_ratio:7.87\r\nmem_fragmentation_bytes:6025144\r\nmem_not_counted_for_evict:0\r\nmem_replication_backlog:0\r\nmem_total_replication_buffers:0\r\nmem_clients_slaves:0\r\nmem_clients_normal:0\r\nmem_cluster_links:0\r\nmem_aof_buffer:0\r\nmem_allocator:jemalloc-5.3.0\r\nactive_defrag_running:0\r\nlazyfree_pending_objects:0\r\nlazyfreed_objects:0\r\n\r\n# Persistence\r\nloading:0\r\nasync_loading:0\r\ncurrent_cow_peak:0\r\ncurrent_cow_size:0\r\ncurrent_cow_size_age:0\r\ncurrent_fork_perc:0.00\r\ncurrent_save_keys_processed:0\r\ncurrent_save_keys_total:0\r\nrdb_changes_since_last_save:0\r\nrdb_bgsave_in_progress:0\r\nrdb_last_save_time:1796176900\r\nrdb_last_bgsave_status:ok\r\nrdb_last_bgsave_time_sec:-1\r\nrdb_current_bgsave_time_sec:-1\r\nrdb_saves:0\r\nrdb_last_cow_size:0\r\nrdb_last_load_keys_expired:0\r\nrdb_last_load_keys_loaded:0\r\naof_enabled:0\r\naof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\naof_last_rewrite_time_sec:-1\r\naof_current_rewrite_time_sec:-1\r\naof_last_bgrewrite_status:ok\r\naof_rewrites:0\r\naof_rewrites_consecutive_failures:0\r\naof_last_write_status:ok\r\naof_last_cow_size:0\r\nmodule_fork_in_progress:0\r\nmodule_fork_last_cow_size:0\r\n\r\n# Stats\r\ntotal_connecti"),
    ("MemcachedVersion", "Memcache", "memcached version", b"VERSION 1.6.18\r\n"),
    ("MemcachedVersion", "Memcache", "memcached stats", b"STAT pid 36\r\nSTAT uptime 18\r\nSTAT time 1796176916\r\nSTAT version 1.6.18\r\nSTAT libevent 2.1.12-stable\r\nSTAT pointer_size 64\r\nSTAT rusage_user 0.000000\r\nSTAT rusage_system 0.008580\r\nSTAT max_connections 1024\r\nSTAT curr_connections 1\r\nSTAT total_connections 4\r\nSTAT rejected_connections 0\r\nSTAT connection_structures 2\r\nSTAT response_obj_oom 0\r\nSTAT response_obj_count 1\r\nSTAT response_obj_bytes 32768\r\nSTAT read_buf_count 5\r\nSTAT read_buf_bytes 81920\r\nSTAT read_buf_bytes_free 32768\r\nSTAT read_buf_oom 0\r\nSTAT reserved_fds 20\r\nSTAT cmd_get 0\r\nSTAT cmd_set 0\r\nSTAT cmd_flush 0\r\nSTAT cmd_touch 0\r\nSTAT cmd_meta 0\r\nSTAT get_hits 0\r\nSTAT get_misses 0\r\nSTAT get_expired 0\r\nSTAT get_flushed 0\r\nSTAT delete_misses 0\r\nSTAT delete_hits 0\r\nSTAT incr_misses 0\r\nSTAT incr_hits 0\r\nSTAT decr_misses 0\r\nSTAT decr_hits 0\r\nSTAT cas_misses 0\r\nSTAT cas_hits 0\r\nSTAT cas_badval 0\r\nSTAT touch_hits 0\r\nSTAT touch_misses 0\r\nSTAT store_too_large 0\r\nSTAT store_no_memory 0\r\nSTAT auth_cmds 0\r\nSTAT auth_errors 0\r\nSTAT bytes_read 16\r\nSTAT bytes_written 1"),
    ("MQTTConnect", "mqtt", "Mosquitto", b" \x02\x00\x00\x90\x03\x00\x01\x001-\x00\x13$SYS/broker/versionmosquitto version 2.0.11"),
    ("PostgresStartup", "NULL", "PostgreSQL", b"R\x00\x00\x00\x08\x00\x00\x00\x00E\x00\x00\x00dSFATAL\x00VFATAL\x00C28000\x00Mrole \"fastport\" does not exist\x00Fmiscinit.c\x00L768\x00RInitializeSessionUserId\x00\x00"),
    ("NULL", "NULL", "noise", b"\x8a\x13\x77\x01 nothing matches this banner at all, it is noise \xff\xfe"),
    ("HTTPGet", "GetRequest", "Apache 404", b"HTTP/1.1 404 Not Found\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\nServer: Apache/2.4.62 (Debian)\r\nContent-Length: 196\r\nContent-Type: text/html; charset=iso-8859-1\r\n\r\n<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>404 Not Found</title>\n</head></html>"),
    ("HTTPGet", "GetRequest", "unknown HTTP server", b"HTTP/1.1 200 OK\r\nX-Unknown: yes\r\nContent-Length: 2\r\n\r\nok"),
];

/// CPU time this thread has run, in ns (`/proc/thread-self/schedstat`, first field): what a
/// match costs whatever else the machine runs meanwhile.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn bench_database(c: &mut Criterion, label: &str, m: &Matcher, nmap_names: bool) {
    let cases: Vec<(usize, &[u8])> = BANNERS
        .iter()
        .map(|&(ours, theirs, _, b)| {
            let name = if nmap_names { theirs } else { ours };
            (m.probe_index(Protocol::Tcp, name).expect("probe exists"), b)
        })
        .collect();
    let named: Vec<&str> = BANNERS
        .iter()
        .zip(&cases)
        .filter(|(_, (p, b))| m.match_response(*p, b, None).is_some())
        .map(|(b, _)| b.2)
        .collect();
    eprintln!(
        "{label}: {} of {} banners named: {named:?}",
        named.len(),
        cases.len()
    );
    // Each banner on its own (warm: its patterns compiled by the pass above): mean CPU
    // time per match, and how many rules the prefilters let through to PCRE2.
    let mut total_cpu = 0.0;
    for (b, &(p, banner)) in BANNERS.iter().zip(&cases) {
        let n = 2000;
        let (t, cpu) = (Instant::now(), thread_cpu_ns());
        for _ in 0..n {
            std::hint::black_box(m.match_response(p, std::hint::black_box(banner), None));
        }
        let cpu_us = thread_cpu_ns()
            .zip(cpu)
            .map(|(after, before)| (after - before) as f64 / 1e3 / f64::from(n));
        total_cpu += cpu_us.unwrap_or(0.0);
        let (through, all) = m.prefilter_survivors(p, banner);
        eprintln!(
            "{label}:   {:>28}: {:>7.1} µs CPU ({:>7.1} µs wall), {:>4} of {all:>5} rules past the prefilters",
            b.2,
            cpu_us.unwrap_or(f64::NAN),
            t.elapsed().as_secs_f64() * 1e6 / f64::from(n),
            through.len()
        );
        if std::env::var_os("FASTPORT_BENCH_SURVIVORS").is_some() {
            eprintln!("{label}:     lines {through:?}");
        }
    }
    eprintln!(
        "{label}: mean {:.1} µs CPU per banner",
        total_cpu / BANNERS.len() as f64
    );
    let mut group = c.benchmark_group(format!("service_match/{label}"));
    group.throughput(Throughput::Elements(cases.len() as u64));
    group.bench_function("world_banners", |b| {
        b.iter(|| {
            let mut named = 0;
            for &(p, banner) in &cases {
                named += usize::from(m.match_response(p, banner, None).is_some());
            }
            named
        })
    });
    group.finish();
    eprintln!(
        "{label}: {} of {} patterns compiled after the benchmark; VmHWM {:?} KiB",
        m.compiled_so_far(),
        m.rules(),
        vm_hwm_kib()
    );
}

fn service_benches(c: &mut Criterion) {
    let t = Instant::now();
    let own = service::builtin();
    eprintln!(
        "fastport-service-probes: {} rules loaded in {:?}",
        own.rules(),
        t.elapsed()
    );
    bench_database(c, "fastport", &own, false);

    match std::fs::read(NMAP) {
        Ok(text) => {
            let before = vm_hwm_kib();
            let t = Instant::now();
            let file = probes::parse(&text).expect("nmap's file parses");
            let m = Matcher::new(file);
            eprintln!(
                "{NMAP}: {} rules ({} with a literal prefix) loaded in {:?}; VmHWM {:?} KiB before, {:?} KiB after loading",
                m.rules(),
                m.prefixed_rules(1),
                t.elapsed(),
                before,
                vm_hwm_kib()
            );
            bench_database(c, "nmap", &m, true);
        }
        Err(e) => eprintln!(
            "{NMAP}: {e}; the full-size benchmark is skipped (scripts/test installs nmap)"
        ),
    }
}

criterion_group!(benches, service_benches);
criterion_main!(benches);
