//! Accounting that stays right for threads and other shapes of real programs. The workloads are
//! this test executable itself, run again under `zcprof exec` with `ZCPROF_TEST_WORKLOAD` set (so
//! they exist wherever the tests run, the VMs included). Without root these tests skip.
use std::path::Path;

use serde_json::Value;
use zcprof_tests::{calls, fig, privileged, scratch_dir, skip};

/// Runs a workload of this executable under `zcprof exec`, returning its report.
fn exec_workload(name: &str, arg: &Path) -> Value {
    exec_workload_with(name, arg, &[])
}

/// `exec_workload` with more options of `zcprof exec` (before the `--`).
fn exec_workload_with(name: &str, arg: &Path, options: &[&str]) -> Value {
    let exe = std::env::current_exe().unwrap();
    // The test harness writes to stdout too: the report goes to a file.
    let report = arg.with_extension(format!("{name}.json"));
    let out = std::process::Command::new(zcprof_tests::zcprof_bin())
        .args(["exec", "--format", "json", "-o"])
        .arg(&report)
        .args(options)
        .arg("--")
        .arg(exe)
        .args(["--exact", &zcprof_tests::workload_test(module_path!())])
        .args(["--nocapture", "--test-threads=1"])
        .env("ZCPROF_TEST_WORKLOAD", name)
        .env("ZCPROF_TEST_ARG", arg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&report).unwrap()).expect("JSON")
}

/// The workloads: a no-op unless `ZCPROF_TEST_WORKLOAD` names one.
#[test]
fn workload() {
    let Ok(name) = std::env::var("ZCPROF_TEST_WORKLOAD") else {
        return;
    };
    let arg = std::env::var("ZCPROF_TEST_ARG").unwrap_or_default();
    match name.as_str() {
        "reads-main" => page_cache_reads(&arg),
        "reads-worker" => std::thread::spawn(move || page_cache_reads(&arg))
            .join()
            .unwrap(),
        "blocked-read" => blocked_read(),
        "thread-churn" => thread_churn(&arg),
        "seccomp-getppid" => seccomp_getppid(),
        "early-slow-calls" => early_slow_calls(),
        "exec-from-thread" => exec_from_thread(&arg, false),
        "execveat-from-thread" => exec_from_thread(&arg, true),
        "sleepers" => sleepers(&arg),
        other => panic!("unknown workload {other}"),
    }
}

/// Many small page-cache reads: kernel time, much of it in copy routines.
fn page_cache_reads(path: &str) {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 4096];
    for i in 0..200_000u64 {
        file.read_at(&mut buf, (i % 256) * 4096).unwrap();
    }
}

fn kernel_samples(r: &Value) -> u64 {
    // "N of M kernel-mode samples were in a copy routine ..."
    let note = r["figures"]["copy_cpu_share"]["note"]
        .as_str()
        .unwrap_or("");
    note.split(" of ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn worker_threads_are_sampled_like_the_main_thread() {
    if !privileged("accounting_thread_sampling") {
        return;
    }
    let dir = scratch_dir("acct-threads", env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join("data.bin");
    std::fs::write(&file, vec![7u8; 1 << 20]).unwrap();
    let main = exec_workload("reads-main", &file);
    let worker = exec_workload("reads-worker", &file);
    if main["figures"]["copy_cpu_share"]["value"].is_null() {
        skip(
            "accounting_thread_sampling",
            &format!(
                "no sampling here: {}",
                main["figures"]["copy_cpu_share"]["note"]
            ),
        );
        return;
    }
    let (m, w) = (kernel_samples(&main), kernel_samples(&worker));
    assert!(m >= 20, "the main-thread case got {m} kernel samples");
    // The same work on a worker thread is sampled at about the same rate (it got 1 sample where
    // the main thread got 582). Rates per CPU time the task clock counted, not per elapsed time
    // or counts: under emulation the same work can take five times as long from one run to the
    // next, and a thread waits for the CPU a varying share of its run (on the 7.2 VM the
    // worker's rate per elapsed ns was 4.4x below the main thread's).
    #[expect(clippy::cast_precision_loss, reason = "a ratio")]
    let rate = |samples: u64, r: &Value| {
        let cpu = r["figures"]["cpu_time_ns"]["value"]
            .as_u64()
            .or_else(|| r["elapsed_ns"].as_u64())
            .unwrap();
        samples as f64 / cpu.max(1) as f64
    };
    // The bound above is loose: events sampled at a frequency adapt their period as they run,
    // and an inherited event starts its adaptation again, so a worker can be sampled more often
    // than the main thread for the same CPU time (3.9x once on the 6.1 VM under emulation).
    // What this test guards against is a thread left unsampled, or sampled twice per tick.
    let (mr, wr) = (rate(m, &main), rate(w, &worker));
    assert!(
        wr * 3.0 >= mr && wr <= mr * 8.0,
        "worker-thread samples {w} ({wr:e}/ns) against main-thread samples {m} ({mr:e}/ns)"
    );
}

/// A report's syscall row called `name`.
fn row<'a>(r: &'a Value, name: &str) -> Option<&'a Value> {
    r["syscalls"].as_array()?.iter().find(|s| s["name"] == name)
}

/// Entries minus returns: what never returned (`exit` of each thread that ended itself, the final
/// `exit_group`) if every return was matched to its entry.
fn unreturned(r: &Value) -> u64 {
    let entries = fig(r, "syscalls");
    let returns = fig(r, "mode_switches") - entries;
    entries - returns
}

/// Runs of the `sys_enter` or `sys_exit` programs (`point`) that the kernel skipped while the
/// run was measured: a run of the same program was preempted on that CPU (the syscall
/// tracepoints run preemptible on kernels with full or lazy preemption, Debian's 7.x). Each may
/// hide one entry or one return of the measured process; zero on kernels that never preempt
/// them.
fn skipped(r: &Value, point: &str) -> u64 {
    r["accounting"]["programs_skipped"]
        .as_object()
        .map_or(0, |m| {
            m.iter()
                .filter(|(name, _)| name.starts_with(point))
                .map(|(_, n)| n.as_u64().unwrap())
                .sum()
        })
}

/// What never returned is exactly the `exit` of each thread that ended itself and the final
/// `exit_group`, give or take the returns the kernel skipped (each leaves one entry unmatched).
fn assert_unreturned(r: &Value) {
    let never = calls(r, "exit") + calls(r, "exit_group");
    let skipped_returns = skipped(r, "sys_exit");
    assert!(
        (never..=never + skipped_returns).contains(&unreturned(r)),
        "{} unreturned, {never} exits, {skipped_returns} returns skipped by the kernel: {}",
        unreturned(r),
        r["figures"]["mode_switches"]["note"]
    );
}

/// No return without an entry was taken for a refused call, but for entries the kernel skipped.
fn assert_none_refused(r: &Value) {
    let refused = r["accounting"]["refused_syscalls"].as_u64().unwrap();
    assert!(
        refused <= skipped(r, "sys_enter"),
        "{refused} refused: {}",
        r["accounting"]
    );
}

/// A thread blocks in `readv` on a pipe while 20,000 short-lived threads come and go; then 100
/// bytes arrive and the read returns them.
fn blocked_read() {
    let mut fds = [0; 2];
    // SAFETY: room for two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (r, w) = (fds[0], fds[1]);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: one iovec over a live buffer.
        unsafe { libc::readv(r, &raw const iov, 1) }
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    for _ in 0..20_000 {
        std::thread::spawn(|| ()).join().unwrap();
    }
    // SAFETY: 100 bytes from a live array.
    assert_eq!(
        unsafe { libc::write(w, [1u8; 100].as_ptr().cast(), 100) },
        100
    );
    assert_eq!(reader.join().unwrap(), 100);
}

/// Threads that start and end one after another until thread ids come round again (2,000 of
/// them reused), or 200,000 threads; writes "threads reused" to `out`.
fn thread_churn(out: &str) {
    let mut seen = std::collections::HashSet::new();
    let (mut threads, mut reused) = (0u32, 0u32);
    while threads < 200_000 && reused < 2_000 {
        // SAFETY: gettid has no preconditions.
        let tid = std::thread::spawn(|| unsafe { libc::gettid() })
            .join()
            .unwrap();
        threads += 1;
        if !seen.insert(tid) {
            reused += 1;
        }
    }
    std::fs::write(out, format!("{threads} {reused}")).unwrap();
}

/// A seccomp filter that refuses `getppid` with EPERM (classic BPF, as Docker's and systemd's
/// filters refuse calls), then 1000 `getppid` calls.
fn seccomp_getppid() {
    // BPF_LD | BPF_W | BPF_ABS, BPF_JMP | BPF_JEQ | BPF_K, BPF_RET | BPF_K.
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let filter = [
        // seccomp_data.nr
        op(LD_W_ABS, 0, 0, 0),
        op(JEQ_K, 0, 1, u32::try_from(libc::SYS_getppid).unwrap()),
        op(
            RET_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | u32::try_from(libc::EPERM).unwrap(),
        ),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).unwrap(),
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with valid arguments; the program outlives the call (the kernel copies it).
    unsafe {
        assert_eq!(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1u64, 0u64, 0u64, 0u64),
            0
        );
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                u64::from(libc::SECCOMP_MODE_FILTER),
                &raw const prog
            ),
            0
        );
    }
    for _ in 0..1000 {
        // SAFETY: getppid has no arguments.
        let ret = unsafe { libc::syscall(libc::SYS_getppid) };
        assert_eq!(ret, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EPERM)
        );
    }
}

/// 8 `ppoll` calls that sleep 10 ms, then 20,000 that return at once.
fn early_slow_calls() {
    let ppoll = |ns| {
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: ns,
        };
        // SAFETY: no descriptors, a valid timeout, no signal mask.
        unsafe {
            libc::syscall(
                libc::SYS_ppoll,
                std::ptr::null_mut::<libc::pollfd>(),
                0,
                &raw const timeout,
                std::ptr::null::<libc::sigset_t>(),
                8,
            )
        }
    };
    for _ in 0..8 {
        assert_eq!(ppoll(10_000_000), 0);
    }
    for _ in 0..20_000 {
        assert_eq!(ppoll(0), 0);
    }
}

/// A thread other than the main one execs `program` (execve, or execveat with `at`) as
/// `renamed-exe --version`.
fn exec_from_thread(program: &str, at: bool) {
    use std::ffi::CString;
    let path = CString::new(program).unwrap();
    let words = [
        CString::new("renamed-exe").unwrap(),
        CString::new("--version").unwrap(),
    ];
    std::thread::spawn(move || {
        let argv = [words[0].as_ptr(), words[1].as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null::<libc::c_char>()];
        // SAFETY: NUL-terminated strings and NULL-terminated arrays that outlive the call.
        unsafe {
            if at {
                libc::syscall(
                    libc::SYS_execveat,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                    0,
                );
            } else {
                libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            }
        }
        panic!("exec failed: {}", std::io::Error::last_os_error());
    })
    .join()
    .unwrap();
}

/// Four threads that sleep 50 us at a time until the file `stop` appears in `dir` (at most a
/// minute); `ready` is written there once they run.
fn sleepers(dir: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static STOP: AtomicBool = AtomicBool::new(false);
    let dir = std::path::Path::new(dir);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                let pause = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 50_000,
                };
                while !STOP.load(Ordering::Relaxed) {
                    // SAFETY: a valid duration, no remainder wanted.
                    unsafe { libc::nanosleep(&raw const pause, std::ptr::null_mut()) };
                }
            })
        })
        .collect();
    std::fs::write(dir.join("ready"), "ready").unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !dir.join("stop").exists() && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    STOP.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_blocked_read_survives_20000_thread_lifetimes() {
    if !privileged("accounting_blocked_read") {
        return;
    }
    let dir = scratch_dir("acct-blocked", env!("CARGO_TARGET_TMPDIR"));
    let r = exec_workload("blocked-read", &dir.join("run"));
    assert!(calls(&r, "exit") >= 20_000, "{}", r["syscalls_by_name"]);
    let readv = row(&r, "readv").expect("readv counted");
    // Its entry was kept while 20,000 threads lived and died (an LRU of 16,384 lost it).
    assert_eq!(readv["count"], 1);
    assert_eq!(readv["bytes"], 100, "the blocked read's bytes: {readv}");
    assert!(
        readv["total_ns"].as_u64().unwrap() > 10_000_000,
        "it was blocked all along: {readv}"
    );
    assert_eq!(r["accounting"]["in_flight_lost"], 0, "{}", r["accounting"]);
    assert_unreturned(&r);
}

#[test]
fn reused_thread_ids_inherit_nothing() {
    if !privileged("accounting_reused_ids") {
        return;
    }
    let dir = scratch_dir("acct-reuse", env!("CARGO_TARGET_TMPDIR"));
    let out = dir.join("churn.txt");
    let r = exec_workload_with("thread-churn", &out, &["--time-every", "1"]);
    let text = std::fs::read_to_string(&out).unwrap();
    let (threads, reused) = text.split_once(' ').unwrap();
    if reused == "0" {
        skip(
            "accounting_reused_ids",
            &format!("no thread id came round again in {threads} threads (pid_max is large)"),
        );
        return;
    }
    let window = r["elapsed_ns"].as_u64().unwrap();
    for s in r["syscalls"].as_array().unwrap() {
        let (total, timed) = (
            s["total_ns"].as_u64().unwrap(),
            s["timed"].as_u64().unwrap(),
        );
        // No call lasts longer than the run; and no more than two threads are ever inside one
        // syscall at once here (libtest's main thread waits in futex for the test's thread,
        // which waits in futex for each short-lived one).
        assert!(
            total <= timed.max(1) * window && total <= 2 * window,
            "{s} does not fit the {window} ns run ({reused} of {threads} thread ids reused)"
        );
    }
    // Threads end in `exit`, which never returns: no new thread with the same id returns from
    // it.
    // (A return the kernel skipped leaves its entry behind; the next return of the same id
    // could be matched to it, so a skipped return may time one call wrongly.)
    let exit = row(&r, "exit").unwrap();
    assert!(
        exit["timed"].as_u64().unwrap() <= skipped(&r, "sys_exit"),
        "{exit}: {}",
        r["accounting"]
    );
    if skipped(&r, "sys_exit") == 0 {
        assert_eq!(exit["total_ns"].as_u64(), Some(0), "{exit}");
    }
    assert_unreturned(&r);
}

#[test]
fn syscalls_refused_by_seccomp_are_counted_as_strace_counts_them() {
    if !privileged("accounting_seccomp") {
        return;
    }
    let dir = scratch_dir("acct-seccomp", env!("CARGO_TARGET_TMPDIR"));
    let r = exec_workload("seccomp-getppid", &dir.join("run"));
    let getppid = row(&r, "getppid").expect("the refused getppid calls are counted");
    assert_eq!(
        (getppid["count"].as_u64(), getppid["errors"].as_u64()),
        (Some(1000), Some(1000)),
        "{getppid}"
    );
    let accounting = &r["accounting"];
    assert_eq!(accounting["refused_syscalls"], 1000, "{accounting}");
    // The command was stopped outside any syscall when measuring began.
    assert_eq!(accounting["returns_before_start"], 0, "{accounting}");
    assert!(
        r["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("refused")),
        "a note says so: {}",
        r["notes"]
    );
    // Each refused call is an entry and a return, as strace counts it: the sums still add up.
    let sum: u64 = r["syscalls_by_name"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(sum, fig(&r, "syscalls"));
    assert_unreturned(&r);
}

#[test]
fn sampled_time_keeps_early_calls_apart() {
    if !privileged("accounting_early_calls") {
        return;
    }
    let dir = scratch_dir("acct-early", env!("CARGO_TARGET_TMPDIR"));
    let sampled = exec_workload("early-slow-calls", &dir.join("sampled"));
    let every = exec_workload_with(
        "early-slow-calls",
        &dir.join("every"),
        &["--time-every", "1"],
    );
    let time = |r: &Value| {
        let ppoll = row(r, "ppoll").expect("ppoll counted");
        assert_eq!(ppoll["count"], 20_008, "{ppoll}");
        ppoll["total_ns"].as_u64().unwrap()
    };
    let (estimate, measured) = (time(&sampled), time(&every));
    // The 8 slow calls alone take 80 ms: the estimate must not scale them like the rest.
    assert!(measured >= 80_000_000, "{measured}");
    // Scaled like the rest, they would make it 16 times that (1.3 s). The 20,000 quick calls'
    // sample is uneven where a hypervisor takes the CPU inside them (one emulated CPU: +40 %),
    // so the bound is a factor of two, far below the fault it guards against.
    assert!(
        estimate <= 2 * measured && 2 * estimate >= measured,
        "sampled estimate {estimate} ns against {measured} ns with every call timed"
    );
}

/// A non-leader thread execs `renamed-exe` (the zcprof binary under another name) with `workload`.
fn check_exec_from_thread(test: &str, workload: &str, syscall: &str) {
    if !privileged(test) {
        return;
    }
    let dir = scratch_dir(test, env!("CARGO_TARGET_TMPDIR"));
    let link = dir.join("renamed-exe");
    std::os::unix::fs::symlink(zcprof_tests::zcprof_bin(), &link).unwrap();
    let r = exec_workload(workload, &link);
    let exec = row(&r, syscall).unwrap_or_else(|| panic!("{syscall} counted: {}", r["syscalls"]));
    // `zcprof exec` starts the command with an execve of its own.
    let count = if syscall == "execve" { 2 } else { 1 };
    assert_eq!(
        (exec["count"].as_u64(), exec["errors"].as_u64()),
        (Some(count), Some(0)),
        "{exec}"
    );
    // The exec returned under the leader's id, and was matched to its entry all the same.
    assert_unreturned(&r);
    assert_none_refused(&r);
    let names: Vec<&str> = r["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"renamed-exe"),
        "the process is named after what it became: {names:?}"
    );
}

#[test]
fn execve_from_a_thread_is_matched_and_renames() {
    check_exec_from_thread("accounting_exec_thread", "exec-from-thread", "execve");
}

#[test]
fn execveat_is_an_exec_too() {
    check_exec_from_thread("accounting_execveat", "execveat-from-thread", "execveat");
}

#[test]
fn attaching_loses_no_syscall_entry() {
    if !privileged("accounting_attach_order") {
        return;
    }
    let dir = scratch_dir("acct-attach", env!("CARGO_TARGET_TMPDIR"));
    let ready = dir.join("ready");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &zcprof_tests::workload_test(module_path!())])
        .args(["--nocapture", "--test-threads=1"])
        .env("ZCPROF_TEST_WORKLOAD", "sleepers")
        .env("ZCPROF_TEST_ARG", &dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !ready.exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let report = dir.join("attach.json");
    let out = std::process::Command::new(zcprof_tests::zcprof_bin())
        .args(["attach", "--duration", "1s", "--format", "json", "--pid"])
        .arg(child.id().to_string())
        .arg("-o")
        .arg(&report)
        .output()
        .unwrap();
    std::fs::write(dir.join("stop"), "stop").unwrap();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    // Threads that block thousands of times a second while the probes attach: an entry lost
    // because the scheduler hook was not there yet to keep it would return unmatched, and be
    // counted as refused.
    assert!(
        calls(&r, "clock_nanosleep") + calls(&r, "nanosleep") > 1000,
        "{}",
        r["syscalls_by_name"]
    );
    assert_none_refused(&r);
}

/// A followed child exits and its id is given to an unrelated process (the test's own child,
/// not a descendant of the measured program, placed on that id through `ns_last_pid`). That
/// process reads 20,000 bytes one at a time: none of its reads may be counted.
#[test]
fn a_reused_process_id_is_not_followed() {
    use std::process::{Command, Stdio};
    if !privileged("accounting_pid_reuse") {
        return;
    }
    let dir = scratch_dir("acct-pid-reuse", env!("CARGO_TARGET_TMPDIR"));
    let pid_file = dir.join("child.pid");
    let report = dir.join("report.json");
    // The inner shell writes its id and exits; the outer one waits 10 s, reading nothing.
    let script = format!("sh -c 'echo $$ > {}'; sleep 10", pid_file.display());
    let zcprof = Command::new(zcprof_tests::zcprof_bin())
        .args(["exec", "--format", "json", "-o"])
        .arg(&report)
        .args(["--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child: Option<u32> = None;
    // zcprof starts in well under a second here; an emulated VM takes several.
    for _ in 0..3000 {
        child = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if child.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let child = child.expect("the inner shell wrote its id");
    // Let the kernel free the task (an RCU grace period), as it has long done before an id
    // comes round again.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut reused = false;
    for _ in 0..50 {
        if std::fs::write("/proc/sys/kernel/ns_last_pid", (child - 1).to_string()).is_err() {
            break;
        }
        let mut dd = Command::new("dd")
            .args(["if=/dev/zero", "of=/dev/null", "bs=1", "count=20000"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let got = dd.id();
        assert!(dd.wait().unwrap().success());
        if got == child {
            reused = true;
            break;
        }
    }
    let out = zcprof.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !reused {
        skip(
            "accounting_pid_reuse",
            "could not place a process on the freed id (ns_last_pid not writable, or other \
             processes took it 50 times)",
        );
        return;
    }
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let reads = r["syscalls_by_name"]["read"].as_u64().unwrap_or(0);
    assert!(
        reads < 1_000,
        "{reads} reads counted: the unrelated process on reused id {child} was followed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A shell that starts 5,000 short processes: the per-process table holds 4,095 of them, the
/// others are summed in one row (pid 0) that says how many it holds, and the rows add up to the
/// total syscall count.
#[test]
fn processes_beyond_the_table_are_folded_into_others() {
    use std::process::{Command, Stdio};
    if !privileged("accounting_folded") {
        return;
    }
    let dir = scratch_dir("acct-folded", env!("CARGO_TARGET_TMPDIR"));
    let report = dir.join("report.json");
    // zcprof's peak memory measuring one process, then 5,001: bounded by the table, not the
    // number of processes (the README states the bound).
    let exec = |script: &str| {
        zcprof_tests::exit_and_peak_rss(
            Command::new(zcprof_tests::zcprof_bin())
                .args(["exec", "--format", "json", "-o"])
                .arg(&report)
                .args(["--", "sh", "-c", script])
                .stdout(Stdio::null()),
        )
    };
    let (code, alone) = exec("true");
    assert_eq!(code, 0);
    let (code, many) = exec("i=0; while [ $i -lt 5000 ]; do /bin/true; i=$((i+1)); done");
    assert_eq!(code, 0);
    assert!(
        many <= alone + (16 << 20),
        "peak {many} bytes measuring 5,001 processes, {alone} measuring one"
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let rows = r["processes"].as_array().unwrap();
    let others = rows.last().unwrap();
    assert_eq!(others["pid"], 0, "the others' row is last: {others}");
    let folded = r["accounting"]["processes_folded"].as_u64().unwrap();
    assert!(folded >= 800, "{folded} processes folded of 5,001");
    assert!(
        others["name"]
            .as_str()
            .unwrap()
            .contains(&format!("{folded} processes")),
        "{others}"
    );
    // The table's 4,096 entries (the others' row one of them) and the measured shell's own.
    assert!(rows.len() <= 4_097, "{} rows", rows.len());
    let summed: u64 = rows.iter().map(|p| p["syscalls"].as_u64().unwrap()).sum();
    assert_eq!(summed, r["figures"]["syscalls"]["value"].as_u64().unwrap());
    assert_eq!(r["accounting"]["processes_lost"], 0);
    assert!(
        r["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("\"others\" row")),
        "{}",
        r["notes"]
    );
}
