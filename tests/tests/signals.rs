//! Signals and cleanup: whatever ends zcprof (Ctrl-C, SIGTERM, SIGKILL, a veth that cannot be
//! made, an unwritable directory), nothing is left behind: no programs, files, children,
//! network namespaces or links.
use std::{
    path::Path,
    process::{Command, Stdio},
};

use zcprof_tests::{
    KillOnDrop, alive, catalog_programs, children_of, leftover_links, links_left_after, privileged,
    programs_left, run, scratch_dir, sigint, skip, veth_possible, wait_attached, zcp_links,
    zcprof_bin, zcprof_programs_loaded,
};

#[test]
fn unwritable_dir_is_one_line() {
    if !privileged("unwritable_dir") {
        return;
    }
    let out = run(&[
        "run", "--method", "sendfile", "--size", "1M", "--dir", "/proc",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot write a temporary file in /proc"),
        "{err}"
    );
}

/// Whether process `pid` holds a descriptor of a file in `dir` (the generated file has no name,
/// so it shows only there, as `DIR/#INODE (deleted)`).
fn holds_file_in(pid: u32, dir: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.filter_map(Result::ok)
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.starts_with(dir)))
    })
}

/// Sends `signal` to zcprof at `stage` (once `wait_for` holds) and checks that nothing is left:
/// no file in --dir, no transfer process, no program. SIGINT, SIGTERM and SIGHUP end it cleanly
/// with one line; SIGKILL ends it at once, and the kernel must still free everything.
fn interrupt_during(
    stage: &str,
    signal: nix::sys::signal::Signal,
    wait_for: impl Fn(u32, &Path) -> bool,
) {
    use nix::sys::signal::Signal;
    use std::os::unix::process::ExitStatusExt as _;
    let dir = scratch_dir(
        &format!("sig-{stage}-{signal}"),
        env!("CARGO_TARGET_TMPDIR"),
    );
    let child = Command::new(zcprof_bin())
        .args([
            "run",
            "--method",
            "read-write",
            "--size",
            "1G",
            "--block-size",
            "4K",
            "--dir",
            dir.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    let pid = guard.0.id();
    while !wait_for(pid, &dir) {
        assert!(
            guard.0.try_wait().unwrap().is_none(),
            "zcprof ended before the {stage} stage"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let workers = children_of(pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        signal,
    )
    .unwrap();
    let status = guard.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(guard.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    if signal == Signal::SIGKILL {
        assert_eq!(status.signal(), Some(9), "{stage}: {status:?}");
    } else {
        assert_eq!(
            status.code(),
            Some(128 + signal as i32),
            "{stage} {signal}: exit status; stderr: {err}"
        );
        assert!(err.contains("interrupted"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "{stage} {signal}: temporary file removed"
    );
    // A killed parent's transfer process dies with it (PR_SET_PDEATHSIG): give the kernel a
    // moment to deliver that.
    for w in workers {
        for _ in 0..200 {
            if !alive(w) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            !alive(w),
            "{stage} {signal}: transfer process {w} still alive"
        );
    }
    assert!(
        programs_left().is_empty(),
        "{stage} {signal}: programs still loaded"
    );
}

const SIGNALS: [nix::sys::signal::Signal; 4] = [
    nix::sys::signal::Signal::SIGINT,
    nix::sys::signal::Signal::SIGTERM,
    nix::sys::signal::Signal::SIGHUP,
    nix::sys::signal::Signal::SIGKILL,
];

#[test]
fn a_signal_while_writing_the_file_leaves_nothing() {
    if !privileged("signal_file") {
        return;
    }
    for signal in SIGNALS {
        interrupt_during("file", signal, holds_file_in);
    }
}

#[test]
fn a_signal_during_the_transfer_leaves_nothing() {
    if !privileged("signal_transfer") {
        return;
    }
    // Wait until the probes are really attached, which also proves the leftover check can see
    // zcprof's programs at all.
    for signal in SIGNALS {
        interrupt_during("transfer", signal, |pid, _| {
            !children_of(pid).is_empty() && !zcprof_programs_loaded(&catalog_programs()).is_empty()
        });
    }
}

#[test]
fn ctrl_c_during_exec_prints_the_summary_and_stops_the_command() {
    if !privileged("ctrl_c_exec") {
        return;
    }
    // --explain: the summary's whole syscall table (the short form names the top three, and
    // the interrupted nanosleep never returned, so it has no time to rank by).
    let zcprof = Command::new(zcprof_bin())
        .args(["exec", "--explain", "--", "sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(zcprof);
    wait_attached(&mut guard.0);
    // Released and running: the child has exec'd sleep and sleeps in it.
    let sleeping = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains("(sleep) S"))
    };
    for _ in 0..2000 {
        if children_of(guard.0.id()).into_iter().any(sleeping) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let command = children_of(guard.0.id());
    assert!(command.iter().copied().any(sleeping), "sleep never started");
    sigint(&guard.0);
    let status = guard.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(guard.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("nanosleep") || err.contains("clock_nanosleep"),
        "the summary so far: {err}"
    );
    assert!(
        err.lines()
            .last()
            .unwrap_or_default()
            .contains("interrupted"),
        "{err}"
    );
    for pid in command {
        assert!(!alive(pid), "the command {pid} is gone");
    }
    assert!(programs_left().is_empty(), "programs detached");
}

#[test]
fn ctrl_c_during_attach_prints_the_summary_and_leaves_the_process() {
    if !privileged("ctrl_c_attach") {
        return;
    }
    let mut target = Command::new("sleep").arg("30").spawn().unwrap();
    let zcprof = Command::new(zcprof_bin())
        .args(["attach", "--pid", &target.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(zcprof);
    wait_attached(&mut guard.0);
    sigint(&guard.0);
    let status = guard.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(guard.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    let untouched = target.try_wait().unwrap().is_none();
    let _ = target.kill();
    let _ = target.wait();
    assert!(status.success(), "Ctrl-C ends an attach normally: {err}");
    assert!(err.contains("pid "), "the summary: {err}");
    assert!(untouched, "the attached process keeps running");
    assert!(programs_left().is_empty(), "programs detached");
}

/// Starts a veth sendfile large and slow enough (512 MiB in 4 KiB steps, SG off) to be signalled
/// while it transfers; returns once the probes are attached and the transfer process runs. The
/// VMs' scratch disk holds 1 GiB and writes its file slowly under emulation: hence the size, and
/// a wait by the clock rather than by a count of polls.
fn veth_transfer_under_way(name: &str) -> (KillOnDrop, std::path::PathBuf, Vec<u32>) {
    let dir = scratch_dir(name, env!("CARGO_TARGET_TMPDIR"));
    let child = Command::new(zcprof_bin())
        .args([
            "run",
            "--method",
            "sendfile",
            "--net",
            "veth",
            "--sg",
            "off",
            "--size",
            "512M",
            "--block-size",
            "4K",
            "--dir",
            dir.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    let pid = guard.0.id();
    let host = format!("zcp{pid}s");
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(600) {
        if !children_of(pid).is_empty()
            && !zcprof_programs_loaded(&catalog_programs()).is_empty()
            && zcp_links().contains(&host)
        {
            break;
        }
        assert!(
            guard.0.try_wait().unwrap().is_none(),
            "{name}: zcprof ended before the transfer"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(
        zcp_links().contains(&host),
        "{name}: {host} was never created"
    );
    let workers = children_of(pid);
    assert!(!workers.is_empty(), "{name}: no transfer process");
    (guard, dir, workers)
}

#[test]
fn ctrl_c_during_a_veth_transfer_leaves_nothing() {
    if !veth_possible("veth_ctrl_c") {
        return;
    }
    let (mut guard, dir, workers) = veth_transfer_under_way("veth-ctrlc");
    let pid = guard.0.id();
    sigint(&guard.0);
    let status = guard.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(guard.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("interrupted"), "{err}");
    // The pair is deleted before zcprof exits, not left to the namespace's release.
    assert!(
        leftover_links(pid).is_empty(),
        "links left: {:?}",
        leftover_links(pid)
    );
    for w in workers {
        assert!(!alive(w), "transfer process {w} still alive");
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "temporary file removed"
    );
    assert!(programs_left().is_empty(), "programs still loaded");
}

#[test]
fn sigkill_during_a_veth_transfer_leaves_no_link_or_process() {
    if !veth_possible("veth_sigkill") {
        return;
    }
    let (mut guard, dir, workers) = veth_transfer_under_way("veth-kill");
    let pid = guard.0.id();
    guard.0.kill().unwrap();
    let _ = guard.0.wait();
    // Nothing ran any cleanup: the kernel frees the namespace once its last descriptor closes,
    // and with it the peer and so the host end.
    assert_eq!(
        links_left_after(pid),
        Vec::<String>::new(),
        "the namespace was not freed"
    );
    for _ in 0..500 {
        if !workers.iter().any(|&w| alive(w)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for w in workers {
        assert!(!alive(w), "transfer process {w} outlived zcprof");
    }
    assert!(programs_left().is_empty(), "programs still loaded");
    // A SIGKILL leaves the temporary file (nothing can run to remove it); the test's own.
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without `CAP_NET_ADMIN` the pair cannot be created; `ip`'s own reason is in the one line, and
/// nothing is left: no link, no file. Without `ip` the same, with that reason.
#[test]
fn veth_that_cannot_be_created_is_one_line_and_leaves_nothing() {
    if !veth_possible("veth_refused") {
        return;
    }
    let dir = scratch_dir("veth-refused", env!("CARGO_TARGET_TMPDIR"));
    let args = [
        "run", "--method", "sendfile", "--net", "veth", "--size", "1M", "--dir",
    ];
    let check = |mut cmd: Command, want: &str| {
        let child = cmd
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{want}: {err}");
        assert!(out.stdout.is_empty());
        assert!(leftover_links(pid).is_empty(), "{:?}", leftover_links(pid));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no file");
    };
    let mut no_ip = Command::new(zcprof_bin());
    no_ip.env("PATH", "/nonexistent").args(args);
    check(no_ip, "needs the ip command");
    // util-linux's setpriv; busybox's has no --bounding-set.
    let help = Command::new("setpriv").arg("--help").output();
    if !help.is_ok_and(|h| {
        String::from_utf8_lossy(&h.stdout).contains("bounding-set")
            || String::from_utf8_lossy(&h.stderr).contains("bounding-set")
    }) {
        skip(
            "veth_refused",
            "no setpriv with --bounding-set (util-linux) to drop CAP_NET_ADMIN",
        );
        return;
    }
    // setpriv execs zcprof with its pid, so the link name still follows the spawned pid.
    let mut no_net_admin = Command::new("setpriv");
    no_net_admin
        .args(["--bounding-set=-net_admin", "--inh-caps=-net_admin", "--"])
        .arg(zcprof_bin())
        .args(args);
    check(no_net_admin, "Operation not permitted");
}
