//! The command line as a user meets it, without root: bad input gets one clear line and a
//! non-zero exit, and leaves nothing behind.
use std::{path::PathBuf, process::Command};

fn zcprof() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zcprof"))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A fresh empty directory for --dir, so leftovers can be seen.
fn empty_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs zcprof, expects failure with `code`, and returns its single stderr line.
fn fails(cmd: &mut Command, code: i32) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout on failure: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got: {stderr}");
    lines[0].to_owned()
}

#[test]
fn unknown_method() {
    let line = fails(zcprof().args(["run", "--method", "carrier-pigeon"]), 2);
    assert!(
        line.contains("carrier-pigeon") && line.contains("sendfile"),
        "{line}"
    );
}

#[test]
fn zero_and_unparsable_sizes() {
    let line = fails(
        zcprof().args(["run", "--method", "sendfile", "--size", "0"]),
        2,
    );
    assert!(line.contains("greater than zero"), "{line}");
    let line = fails(
        zcprof().args(["run", "--method", "sendfile", "--size", "lots"]),
        2,
    );
    assert!(line.contains("not a size"), "{line}");
    let line = fails(zcprof().args(["compare", "--block-size", "0"]), 2);
    assert!(line.contains("greater than zero"), "{line}");
}

#[test]
fn time_every_must_be_a_power_of_two_and_not_with_trace() {
    for bad in ["0", "3", "131072"] {
        let line = fails(
            zcprof().args(["run", "--method", "sendfile", "--time-every", bad]),
            2,
        );
        assert!(
            line.contains("power of two") && line.contains(bad),
            "{line}"
        );
    }
    let line = fails(
        zcprof().args([
            "exec",
            "--time-every",
            "8",
            "--trace",
            "t.json",
            "--",
            "true",
        ]),
        2,
    );
    assert!(line.contains("--trace"), "{line}");
    assert!(
        !std::path::Path::new("t.json").exists(),
        "a refused trace leaves no file"
    );
}

#[test]
fn block_larger_than_the_file() {
    let dir = empty_dir("block");
    let line = fails(
        zcprof()
            .args([
                "run",
                "--method",
                "splice",
                "--size",
                "4K",
                "--block-size",
                "64K",
                "--dir",
            ])
            .arg(&dir),
        2,
    );
    assert!(line.contains("larger than the file"), "{line}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no file left behind"
    );
}

#[test]
fn missing_file() {
    let line = fails(
        zcprof().args([
            "run",
            "--method",
            "sendfile",
            "--file",
            "/nonexistent/zcprof.dat",
        ]),
        2,
    );
    assert!(
        line.contains("/nonexistent/zcprof.dat") && line.contains("No such file"),
        "{line}"
    );
}

#[test]
fn direct_io_alignment() {
    let line = fails(
        zcprof().args([
            "run",
            "--method",
            "direct-io",
            "--size",
            "1M",
            "--block-size",
            "1000",
        ]),
        2,
    );
    assert!(line.contains("multiple of 4096"), "{line}");
}

#[test]
fn missing_dir() {
    let line = fails(
        zcprof().args(["run", "--method", "tee", "--dir", "/nonexistent/zcprof"]),
        2,
    );
    assert!(line.contains("not a directory"), "{line}");
}

/// Without privileges: a clear line, exit 1, and no temporary file created.
#[test]
fn no_privileges() {
    let dir = empty_dir("nopriv");
    let mut cmd = if is_root() {
        // Drop to nobody, which also clears every capability.
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_zcprof"));
        // nobody must be able to reach the directory to prove nothing is written there.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        c
    } else {
        zcprof()
    };
    let line = fails(
        cmd.args(["run", "--method", "sendfile", "--size", "1M", "--dir"])
            .arg(&dir),
        1,
    );
    assert!(line.contains("needs root"), "{line}");
    assert!(line.contains("CAP_BPF and CAP_PERFMON missing"), "{line}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no file left behind"
    );
}

#[test]
fn help_lists_examples_and_methods() {
    let out = zcprof().args(["run", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for m in [
        "read-write",
        "direct-io",
        "mmap-write",
        "sendfile",
        "splice",
        "tee",
    ] {
        assert!(text.contains(m), "--help lacks {m}");
    }
    let top = zcprof().arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&top.stdout).contains("EXAMPLES"));
}

/// `-o` into a directory that does not exist: one line naming the path, exit 1, before any
/// privilege check or measurement (so the same line with and without root).
#[test]
fn output_into_a_missing_directory() {
    let missing = "/nonexistent/zcprof/report.json";
    for args in [
        &["run", "--method", "sendfile", "--size", "1M", "-o", missing][..],
        &["compare", "--output", missing],
        &["exec", "-o", missing, "--", "true"],
        &["attach", "--pid", "1", "-o", missing],
    ] {
        let line = fails(zcprof().args(args), 1);
        assert!(
            line.contains(missing) && line.contains("No such file"),
            "{args:?}: {line}"
        );
    }
}

/// `--svg` and `--html` into a directory that does not exist: the same one line and exit 1 as
/// `-o`, before privileges or measuring, on every command that writes them (report included).
#[test]
fn svg_into_a_missing_directory() {
    let trace = empty_dir("svg-report").join("no-trace.json");
    for (flag, missing) in [
        ("--svg", "/nonexistent/zcprof/path.svg"),
        ("--html", "/nonexistent/zcprof/page.html"),
    ] {
        for args in [
            &["run", "--method", "sendfile", "--size", "1M", flag, missing][..],
            &["compare", flag, missing],
            &["exec", flag, missing, "--", "true"],
            &["attach", "--pid", "1", flag, missing],
            &["report", trace.to_str().unwrap(), flag, missing],
        ] {
            let line = fails(zcprof().args(args), 1);
            assert!(
                line.contains(missing) && line.contains("No such file"),
                "{args:?}: {line}"
            );
        }
    }
}

/// A usage error is reported before `-o` is created, and leaves no file.
#[test]
fn output_is_not_created_for_bad_usage() {
    let dir = empty_dir("output-usage");
    let report = dir.join("report.json");
    fails(
        zcprof()
            .args(["run", "--method", "sendfile", "--time-every", "3", "-o"])
            .arg(&report),
        2,
    );
    assert!(!report.exists(), "no report file after a usage error");
}

/// `--sg` switches the sender's veth end: without `--net veth` it is a usage error, found
/// before privileges and before anything is created.
#[test]
fn sg_without_veth() {
    let dir = empty_dir("sg");
    for args in [
        &["run", "--method", "sendfile", "--sg", "off"][..],
        &["compare", "--net", "loopback", "--sg", "on"],
    ] {
        let line = fails(zcprof().args(args).arg("--dir").arg(&dir), 2);
        assert!(line.contains("--sg needs --net veth"), "{args:?}: {line}");
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn unknown_net() {
    let line = fails(
        zcprof().args(["run", "--method", "sendfile", "--net", "wifi"]),
        2,
    );
    assert!(
        line.contains("wifi") && line.contains("loopback") && line.contains("veth"),
        "{line}"
    );
    let line = fails(
        zcprof().args([
            "run", "--method", "sendfile", "--net", "veth", "--sg", "maybe",
        ]),
        2,
    );
    assert!(line.contains("maybe") && line.contains("off"), "{line}");
}

#[test]
fn report_of_a_report_says_what_the_file_is() {
    let dir = empty_dir("report-of-report");
    let file = dir.join("compare.json");
    std::fs::write(&file, r#"{"runs": [], "failed": []}"#).unwrap();
    let err = fails(zcprof().arg("report").arg(&file), 1);
    assert!(
        err.contains("compare.json") && err.contains("not a trace") && err.contains("--trace"),
        "{err}"
    );
}

/// Everything wrong with --file is bad usage, exit 2, whatever it is.
#[test]
fn every_file_problem_is_bad_usage() {
    let dir = empty_dir("file-problems");
    let empty = dir.join("empty.dat");
    std::fs::write(&empty, b"").unwrap();
    let short = dir.join("short.dat");
    std::fs::write(&short, vec![1u8; 1000]).unwrap();
    for (file, size, want) in [
        (empty.to_str().unwrap(), None, "is empty"),
        ("/dev/zero", None, "not a regular file"),
        (short.to_str().unwrap(), Some("1M"), "fewer than --size"),
    ] {
        let mut cmd = zcprof();
        cmd.args(["run", "--method", "sendfile", "--file", file]);
        if let Some(size) = size {
            cmd.args(["--size", size]);
        }
        let line = fails(&mut cmd, 2);
        assert!(line.contains(want), "{file}: {line}");
    }
}

#[test]
fn a_file_that_cannot_fit_is_refused_before_it_is_written() {
    let dir = empty_dir("no-room");
    let line = fails(
        zcprof()
            .args(["run", "--method", "sendfile", "--size", "100000G", "--dir"])
            .arg(&dir),
        2,
    );
    assert!(line.contains("does not fit"), "{line}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn repeat_needs_a_count_and_a_built_in_workload() {
    for bad in ["0", "1.5", "many", "1001"] {
        let line = fails(zcprof().args(["compare", "--repeat", bad]), 2);
        assert!(line.contains("repetitions from 1"), "{line}");
    }
    let line = fails(zcprof().args(["exec", "--repeat", "3", "--", "true"]), 2);
    assert!(
        line.contains("built-in workloads only") && line.contains("exec"),
        "{line}"
    );
    let line = fails(zcprof().args(["attach", "--pid", "1", "--warmup", "1"]), 2);
    assert!(
        line.contains("--warmup") && line.contains("attach"),
        "{line}"
    );
    let line = fails(
        zcprof().args(["run", "--method", "sendfile", "--warmup", "x"]),
        2,
    );
    assert!(line.contains("--warmup"), "{line}");
}

/// With `CAP_BPF` alone, the one line names the capability still missing.
#[test]
fn one_capability_short_names_the_other() {
    if !is_root() {
        eprintln!("skipping one_capability_short_names_the_other: setting capabilities needs root");
        return;
    }
    let line = fails(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=+bpf",
                "--ambient-caps=+bpf",
                "--",
            ])
            .arg(env!("CARGO_BIN_EXE_zcprof"))
            .args(["run", "--method", "sendfile", "--size", "1M"]),
        1,
    );
    assert!(line.contains(": CAP_PERFMON missing"), "{line}");
}

#[test]
fn trace_options_without_trace_are_refused() {
    for (flag, value) in [("--trace-buffer", "1M"), ("--trace-limit", "10K")] {
        let line = fails(
            zcprof().args(["run", "--method", "sendfile", flag, value]),
            2,
        );
        assert!(line.contains("--trace <FILE>"), "{flag}: {line}");
    }
}

#[test]
fn a_command_that_is_there_but_cannot_run_is_not_not_found() {
    let dir = empty_dir("not-executable");
    let file = dir.join("script");
    std::fs::write(&file, "true\n").unwrap();
    let line = fails(zcprof().args(["exec", "--"]).arg(&file), 2);
    assert!(line.contains("not executable"), "{line}");
    let line = fails(zcprof().args(["exec", "--"]).arg(&dir), 2);
    assert!(line.contains("is a directory"), "{line}");
    let line = fails(zcprof().args(["exec", "--", "/no/such/zcprof-command"]), 2);
    assert!(line.contains("command not found"), "{line}");
}

#[test]
fn fifos_are_refused_at_once() {
    let dir = empty_dir("fifo");
    let fifo = dir.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // open(2) of a FIFO blocks until a reader comes: had any of these waited, this test would
    // never end.
    let line = fails(zcprof().arg("report").arg(&fifo), 1);
    assert!(line.contains("a FIFO, not a regular file"), "{line}");
    let line = fails(
        zcprof()
            .args(["run", "--method", "sendfile", "--size", "1M", "--file"])
            .arg(&fifo),
        2,
    );
    assert!(line.contains("not a regular file"), "{line}");
    // Before the privilege check, -o is created: a FIFO nobody reads is refused.
    let line = fails(
        zcprof()
            .args(["run", "--method", "sendfile", "--size", "1M", "-o"])
            .arg(&fifo),
        1,
    );
    assert!(line.contains("a FIFO that nobody reads"), "{line}");
}

/// A run that fails (the sink refuses; without root, the privilege check) leaves every file it
/// was told to write as it was: each output is written whole beside its file and renamed over it
/// only at the end (`--trace` used to delete an existing file).
#[test]
fn a_failed_run_keeps_the_files_it_would_have_replaced() {
    let dir = empty_dir("keep");
    let files = [
        ("-o", "table.txt"),
        ("--trace", "trace.json"),
        ("--svg", "path.svg"),
        ("--html", "page.html"),
    ];
    for (_, name) in files {
        std::fs::write(dir.join(name), "what was there\n").unwrap();
    }
    let mut cmd = zcprof();
    cmd.args(["run", "--method", "sendfile", "--size", "1M"])
        .args(["--to", "127.0.0.1:1", "--dir"])
        .arg(&dir);
    for (flag, name) in files {
        cmd.arg(flag).arg(dir.join(name));
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    let mut left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["page.html", "path.svg", "table.txt", "trace.json"],
        "no temporary file left"
    );
    for name in left {
        assert_eq!(
            std::fs::read_to_string(dir.join(&name)).unwrap(),
            "what was there\n",
            "{name}"
        );
    }
}
