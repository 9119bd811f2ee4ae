//! Sharding with GNU parallel: N local shards started by `parallel`, each
//! finding its K/N with `--shard auto/N` (PARALLEL_SEQ), merged by
//! `fastport merge` into exactly the unsharded scan of the lab world.

use std::process::Command;

use crate::in_netns;
use crate::slurm::{merge, ready, scan_line, whole_scan, world};
use crate::util::{read_jsonl, read_stats, stderr};

#[test]
fn gnu_parallel_shards_merge_to_the_whole_scan() {
    if !ready(&[("/usr/bin/parallel", "parallel")], false)
        || !in_netns!(gnu_parallel_shards_merge_to_the_whole_scan)
    {
        return;
    }
    let _ls = world();
    let dir = crate::util::temp_dir("parallel");
    let whole = whole_scan(&dir);
    // {#} is parallel's job sequence number, the PARALLEL_SEQ the shard reads.
    let o = Command::new("parallel")
        .args(["--will-cite", "--halt", "now,fail=1", "-j", "4"])
        .arg(scan_line(
            "--shard auto/4 -oJ shard-{#}.jsonl --stats shard-{#}.json",
        ))
        .args([":::", "a", "b", "c", "d"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let mut inputs = Vec::new();
    for k in 1..=4 {
        assert!(
            err.contains(&format!(
                "--shard auto is {k}/4 from GNU parallel (PARALLEL_SEQ={k}, N=4)"
            )),
            "{err}"
        );
        inputs.push(dir.join(format!("shard-{k}.jsonl")));
        inputs.push(dir.join(format!("shard-{k}.json")));
    }
    let (merged, stats) = merge(&dir, &inputs);
    assert_eq!(read_jsonl(&merged), whole);
    let s = read_stats(&stats);
    assert_eq!(s["results"], whole.len() as u64);
    assert_eq!(s["missing_shards"], serde_json::json!([]));
}
