//! `--net veth`: a veth pair into a private network namespace, with scatter-gather off and on,
//! and nothing left after it; loopback runs say that they are loopback.
use std::{
    path::Path,
    process::{Command, Stdio},
};

use serde_json::Value;
use zcprof_tests::{
    leftover_links, privileged, processes_mentioning, programs_left, run_json, scratch_dir,
    veth_possible, zcprof_bin,
};

use crate::methods::classic::{SIZE, measure};

/// Runs `sendfile --net veth --sg STATE` and returns zcprof's pid and its JSON report.
fn sendfile_over_veth(sg: &str, dir: &Path) -> (u32, Value) {
    let child = Command::new(zcprof_bin())
        .args([
            "run",
            "--method",
            "sendfile",
            "--net",
            "veth",
            "--sg",
            sg,
            "--size",
            "8M",
            "--block-size",
            "64K",
            "--format",
            "json",
            "--dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "--sg {sg}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        pid,
        serde_json::from_slice(&out.stdout).expect("valid JSON"),
    )
}

#[test]
fn sendfile_over_veth_with_and_without_scatter_gather_leaves_nothing() {
    if !veth_possible("veth_sg") {
        return;
    }
    let dir = scratch_dir("veth-sg", env!("CARGO_TARGET_TMPDIR"));
    for (sg, on) in [("off", false), ("on", true)] {
        let (pid, r) = sendfile_over_veth(sg, &dir);
        let net = &r["net"];
        assert_eq!(net["kind"], "veth", "{net}");
        assert_eq!(net["device"], format!("zcp{pid}s"), "{net}");
        assert_eq!(
            net["scatter_gather"].as_bool(),
            Some(on),
            "--sg {sg} read back: {net}"
        );
        let receiver = net["receiver"].as_str().unwrap();
        assert!(receiver.starts_with("10."), "a private address: {receiver}");
        assert_eq!(
            r["received"],
            serde_json::json!([SIZE]),
            "every byte arrived"
        );
        assert_eq!(r["bytes"].as_u64(), Some(SIZE));
        assert!(
            leftover_links(pid).is_empty(),
            "--sg {sg}: links left: {:?}",
            leftover_links(pid)
        );
        let ip = receiver.split(':').next().unwrap();
        assert!(
            processes_mentioning(&format!("--addr {ip} ")).is_empty(),
            "--sg {sg}: a transfer process to {ip} is still alive"
        );
        assert!(
            processes_mentioning(&format!("zcp{pid}")).is_empty(),
            "--sg {sg}: an ip command for zcp{pid} is still alive"
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "temporary file removed"
        );
    }
    assert!(programs_left().is_empty(), "programs detached");
}

#[test]
fn loopback_runs_say_so() {
    if !privileged("loopback_net") {
        return;
    }
    let dir = scratch_dir("loopback-net", env!("CARGO_TARGET_TMPDIR"));
    let r = measure("sendfile", &dir);
    let net = &r["net"];
    assert_eq!(
        (net["kind"].as_str(), net["device"].as_str()),
        (Some("loopback"), Some("lo")),
        "{net}"
    );
    assert_eq!(net["scatter_gather"].as_bool(), Some(true), "{net}");
    assert!(
        net["receiver"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{net}"
    );
}

#[test]
fn compare_over_veth_puts_sendfile_without_and_with_scatter_gather_side_by_side() {
    if !veth_possible("veth_compare") {
        return;
    }
    let dir = scratch_dir("veth-compare", env!("CARGO_TARGET_TMPDIR"));
    let r = run_json(&[
        "compare",
        "--methods",
        "sendfile,splice",
        "--net",
        "veth",
        "--size",
        "8M",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let rows: Vec<(String, Option<bool>)> = r["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            assert_eq!(run["received"], serde_json::json!([SIZE]));
            assert_eq!(run["net"]["kind"], "veth");
            (
                run["method"].as_str().unwrap().to_owned(),
                run["net"]["scatter_gather"].as_bool(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("sendfile".to_owned(), Some(false)),
            ("sendfile".to_owned(), Some(true)),
            ("splice".to_owned(), Some(true)),
        ]
    );
    assert!(
        r["failed"].as_array().unwrap().is_empty(),
        "{}",
        r["failed"]
    );
    let device = r["runs"][0]["net"]["device"].as_str().unwrap();
    let pid: u32 = device
        .trim_start_matches("zcp")
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(leftover_links(pid).is_empty(), "{:?}", leftover_links(pid));
}
