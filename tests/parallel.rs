//! Sharding with GNU parallel and as Kubernetes pods, on one machine: N
//! local shards started by `parallel` (K/N from PARALLEL_SEQ with
//! `--shard auto/N`), or with the environment an Indexed Job gives its pods
//! (JOB_COMPLETION_INDEX), merged by `fastport merge` into exactly the
//! unsharded scan of the lab world.

use std::process::{Command, Stdio};

use crate::in_netns;
use crate::slurm::{
    SCAN, doc_block, merge_to_whole, ready, run_doc_block, scan_line, whole_scan, world,
};
use crate::util::stderr;

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
    let s = merge_to_whole(&dir, &inputs, &whole);
    assert_eq!(s["missing_shards"], serde_json::json!([]));
}

/// The pods of deploy/k8s/scan-job.yaml, run here as processes with the
/// environment the Job controller gives them: `JOB_COMPLETION_INDEX` 0..3
/// and the manifest's `FASTPORT_SHARD_COUNT`, the same `--shard=auto`.
#[test]
fn kubernetes_indexed_job_pods_merge_to_the_whole_scan() {
    if !in_netns!(kubernetes_indexed_job_pods_merge_to_the_whole_scan) {
        return;
    }
    let _ls = world();
    let dir = crate::util::temp_dir("k8s");
    let whole = whole_scan(&dir);
    let pods: Vec<_> = (0..4)
        .map(|index| {
            crate::util::fastport()
                .args(SCAN)
                .arg("--shard=auto")
                .arg(format!("--output-json=shard-{index}.jsonl"))
                .arg(format!("--stats=shard-{index}.stats.json"))
                .env("JOB_COMPLETION_INDEX", index.to_string())
                .env("FASTPORT_SHARD_COUNT", "4")
                .env_remove("PARALLEL_SEQ")
                .env_remove("SLURM_ARRAY_TASK_ID")
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut inputs = Vec::new();
    for (index, pod) in pods.into_iter().enumerate() {
        let o = pod.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let k = index + 1;
        assert!(
            stderr(&o).contains(&format!(
                "--shard auto is {k}/4 from the Kubernetes Indexed Job (JOB_COMPLETION_INDEX={index}, N=4)"
            )),
            "{}",
            stderr(&o)
        );
        inputs.push(dir.join(format!("shard-{index}.jsonl")));
        inputs.push(dir.join(format!("shard-{index}.stats.json")));
    }
    let s = merge_to_whole(&dir, &inputs, &whole);
    assert_eq!(s["missing_shards"], serde_json::json!([]));
}

#[test]
fn the_documented_parallel_example_runs_as_written() {
    if !ready(&[("/usr/bin/parallel", "parallel")], false)
        || !in_netns!(the_documented_parallel_example_runs_as_written)
    {
        return;
    }
    let _ls = crate::util::listeners("127.0.0.1", &[22, 80], 0);
    let dir = crate::util::temp_dir("parallel-doc");
    run_doc_block(&doc_block("## GNU parallel", 0), &dir, &[]);
}
