//! The closing summary of `cargo xtask test`. Each suite runs with its output shown live, and
//! that output is read as it passes for libtest's `test result:` lines and the tests' loud
//! `skipping <test>: <why>` lines (`zcprof_tests::skip`; inside a VM the same lines come from the
//! serial console, prefixed by `[label] `). At the end: one table, then one plain line,
//! `N passed, N failed, N skipped`, which CI reads.
use std::{
    collections::BTreeSet,
    fmt::Write as _,
    io::{Read, Write},
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

/// What a suite's output said: tests passed and failed (from libtest's result lines, summed over
/// the test executables the suite ran), and its distinct skip lines.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub skips: BTreeSet<String>,
    /// Seconds each test took, where the suite says (`init: took <test> <seconds> s`, one line
    /// per test from a VM's init, which runs its tests one at a time).
    pub took: Vec<(String, f64)>,
}

impl Tally {
    /// Reads one line of output.
    pub fn read_line(&mut self, line: &str) {
        let line = without_label(line.trim_end_matches(['\n', '\r']));
        if let Some((passed, failed)) = test_result(line) {
            self.passed += passed;
            self.failed += failed;
            return;
        }
        if let Some(took) = took(line) {
            self.took.push(took);
            return;
        }
        let line = without_test_name(line);
        if line.starts_with("skipping ") && line.contains(": ") {
            self.skips.insert(line.to_owned());
        }
    }
}

/// The line without a leading `[label] ` (a VM's console line as the matrix echoes it).
fn without_label(line: &str) -> &str {
    line.strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
        .map_or(line, |(_, rest)| rest)
}

/// The line without a leading `test <name> ... `: libtest's progress, which the test's own
/// output continues when it runs one test at a time and the test writes before its verdict.
fn without_test_name(line: &str) -> &str {
    if line.starts_with("test ")
        && let Some((_, rest)) = line.split_once(" ... ")
    {
        rest
    } else {
        line
    }
}

/// The test and its seconds of a line `init: took <test> <seconds> s`.
fn took(line: &str) -> Option<(String, f64)> {
    let rest = line.strip_prefix("init: took ")?.strip_suffix(" s")?;
    let (test, seconds) = rest.rsplit_once(' ')?;
    Some((test.to_owned(), seconds.parse().ok()?))
}

/// Passed and failed of a libtest line such as
/// `test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 2 filtered out; finished in
/// 0.12s`.
fn test_result(line: &str) -> Option<(u64, u64)> {
    let (_, rest) = line.split_once("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let count = |what: &str| {
        counts.split(';').find_map(|part| {
            let (n, name) = part.trim().split_once(' ')?;
            (name == what).then(|| n.parse::<u64>().ok()).flatten()
        })
    };
    Some((count("passed")?, count("failed")?))
}

/// One suite of the run: its tally, whether it ended well, and how long it took.
#[derive(Debug)]
pub struct Suite {
    pub name: String,
    pub tally: Tally,
    /// False when the suite's command failed (or could not run) whatever its tests said.
    pub ok: bool,
    pub seconds: f64,
    /// Said under the table: why a suite failed without a failed test, or did not run.
    pub note: Option<String>,
}

impl Suite {
    /// Its failed tests; a suite that failed with none (a build error, a crash, a VM without a
    /// verdict) counts as one.
    pub fn failed(&self) -> u64 {
        if self.ok {
            self.tally.failed
        } else {
            self.tally.failed.max(1)
        }
    }

    /// A suite that did not run, with `why`: a failure, or (when `fails` is false) one skip.
    pub fn not_run(name: &str, why: &str, fails: bool) -> Self {
        let mut tally = Tally::default();
        if !fails {
            tally.skips.insert(format!("skipping {name}: {why}"));
        }
        Suite {
            name: name.to_owned(),
            tally,
            ok: !fails,
            seconds: 0.0,
            note: Some(format!("not run: {why}")),
        }
    }
}

/// Copies `from` to `to` as it comes (partial lines too, so that a running test's name shows)
/// and hands each line to `on_line`.
pub fn tee(mut from: impl Read, mut to: impl Write, mut on_line: impl FnMut(&str)) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let _ = to.write_all(&buf[..n]);
        let _ = to.flush();
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            on_line(&String::from_utf8_lossy(&line));
        }
    }
    if !pending.is_empty() {
        on_line(&String::from_utf8_lossy(&pending));
    }
}

/// Runs `cmd` as the suite `name`, its output shown live and tallied.
pub fn run_suite(name: &str, cmd: &mut Command) -> Suite {
    eprintln!("xtask: suite {name}");
    let start = Instant::now();
    let (status, tally) = match run_teed(cmd) {
        Ok(done) => done,
        Err(e) => return Suite::not_run(name, &format!("cannot run {cmd:?}: {e}"), true),
    };
    let ok = status.success();
    Suite {
        name: name.to_owned(),
        note: (!ok && tally.failed == 0).then(|| format!("{status} without a failed test")),
        tally,
        ok,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// Runs `cmd` with its stdout and stderr on one pipe, so that they keep the order it wrote them
/// in (as on a terminal), copied to this process's stdout and tallied.
fn run_teed(cmd: &mut Command) -> std::io::Result<(ExitStatus, Tally)> {
    let (reader, writer) = std::io::pipe()?;
    cmd.stdout(writer.try_clone()?).stderr(writer);
    let spawned = cmd.spawn();
    // The command holds its copies of the writing end until given others; the pipe would never
    // end while it does.
    cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
    let mut child = spawned?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (done, finished) = mpsc::channel();
    let shared = Arc::clone(&tally);
    std::thread::spawn(move || {
        tee(reader, std::io::stdout(), |line| {
            if let Ok(mut t) = shared.lock() {
                t.read_line(line);
            }
        });
        let _ = done.send(());
    });
    let status = child.wait()?;
    // A process the suite left running may hold the pipe open: what it writes is still shown,
    // but the suite ends with its command.
    let _ = finished.recv_timeout(Duration::from_secs(10));
    let tally = tally.lock().map(|t| t.clone()).unwrap_or_default();
    Ok((status, tally))
}

/// Passed, failed and skipped over all `suites`.
pub fn totals(suites: &[Suite]) -> (u64, u64, u64) {
    suites.iter().fold((0, 0, 0), |(p, f, s), suite| {
        (
            p + suite.tally.passed,
            f + suite.failed(),
            s + suite.tally.skips.len() as u64,
        )
    })
}

/// The table of `suites` (suite, passed, failed, skipped, seconds), each suite's note under it,
/// and the closing line.
pub fn render(suites: &[Suite]) -> String {
    let width = suites
        .iter()
        .map(|s| s.name.chars().count())
        .chain([5])
        .max()
        .unwrap_or(5);
    let mut text = format!(
        "\n{:<width$}  {:>7}  {:>7}  {:>7}  {:>8}\n",
        "suite", "passed", "failed", "skipped", "seconds"
    );
    for s in suites {
        let _ = writeln!(
            text,
            "{:<width$}  {:>7}  {:>7}  {:>7}  {:>8.1}",
            s.name,
            s.tally.passed,
            s.failed(),
            s.tally.skips.len(),
            s.seconds
        );
    }
    for s in suites {
        if let Some(note) = &s.note {
            let _ = writeln!(text, "{}: {note}", s.name);
        }
    }
    text.push_str(&slowest(suites, SLOWEST));
    let (passed, failed, skipped) = totals(suites);
    let _ = writeln!(text, "{passed} passed, {failed} failed, {skipped} skipped");
    text
}

/// How many of the slowest tests the summary names.
const SLOWEST: usize = 10;

/// The `n` slowest timed tests over all suites, slowest first, with their suites; empty when no
/// suite timed its tests.
fn slowest(suites: &[Suite], n: usize) -> String {
    let mut all: Vec<(&str, &str, f64)> = suites
        .iter()
        .flat_map(|s| {
            s.tally
                .took
                .iter()
                .map(|(t, secs)| (s.name.as_str(), t.as_str(), *secs))
        })
        .collect();
    if all.is_empty() {
        return String::new();
    }
    all.sort_by(|a, b| b.2.total_cmp(&a.2));
    let mut text = format!("slowest tests of {} timed:\n", all.len());
    for (suite, test, secs) in all.into_iter().take(n) {
        let _ = writeln!(text, "{secs:>8.1} s  {test}  ({suite})");
    }
    text
}

/// Prints the summary on stdout and returns whether everything passed.
pub fn print(suites: &[Suite]) -> bool {
    let mut out = std::io::stdout();
    let _ = out.write_all(render(suites).as_bytes());
    let _ = out.flush();
    suites.iter().all(|s| s.failed() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(text: &str) -> Tally {
        let mut t = Tally::default();
        tee(text.as_bytes(), std::io::sink(), |line| {
            t.read_line(line);
        });
        t
    }

    #[test]
    fn result_lines_add_up_over_executables() {
        let t = tally(
            "running 3 tests\n\
             test a ... ok\n\
             test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; \
             finished in 0.01s\n\
             \n\
             test result: FAILED. 5 passed; 2 failed; 1 ignored; 0 measured; 4 filtered out; \
             finished in 1.50s\n",
        );
        assert_eq!((t.passed, t.failed), (8, 2));
        assert!(t.skips.is_empty());
    }

    #[test]
    fn a_vm_console_line_is_read_without_its_label() {
        let t = tally(
            "[debian-sid 7.2.0-1-cloud-amd64] test result: ok. 12 passed; 0 failed; 0 ignored; \
             0 measured; 2 filtered out; finished in 300.00s\r\n\
             [debian-sid 7.2.0-1-cloud-amd64] skipping strace comparison: strace cannot run\r\n",
        );
        assert_eq!((t.passed, t.failed), (12, 0));
        assert_eq!(
            t.skips.iter().collect::<Vec<_>>(),
            ["skipping strace comparison: strace cannot run"]
        );
    }

    #[test]
    fn a_skip_line_after_libtests_progress_is_a_skip() {
        let t = tally(
            "test compare_runs_every_method ... skipping compare: needs root\n\
             ok\n\
             [debian-bullseye 5.10.0-35-cloud-amd64] test io_uring_send_zc ... skipping \
             io_uring_send_zc: IORING_OP_SEND_ZC appeared in 6.0\n\
             test a_test_named_skipping ... ok\n",
        );
        assert_eq!(
            t.skips.iter().collect::<Vec<_>>(),
            [
                "skipping compare: needs root",
                "skipping io_uring_send_zc: IORING_OP_SEND_ZC appeared in 6.0"
            ]
        );
    }

    #[test]
    fn skips_count_once_per_distinct_line() {
        let t = tally(
            "skipping vmsplice: loading eBPF programs needs root\n\
             skipping vmsplice: loading eBPF programs needs root\n\
             skipping tee: loading eBPF programs needs root\n\
             skipping is not a skip line without a reason\n\
             not skipping x: y\n",
        );
        assert_eq!(t.skips.len(), 2);
    }

    #[test]
    fn lines_split_across_reads_are_still_read() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(3).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let text = "test result: ok. 7 passed; 0 failed; 0 ignored; 0 measured; 0 filtered \
                    out; finished in 0.01s\nskipping a: b";
        let mut shown = Vec::new();
        let mut t = Tally::default();
        tee(Trickle(text.as_bytes()), &mut shown, |line| {
            t.read_line(line);
        });
        assert_eq!(shown, text.as_bytes(), "everything is shown");
        assert_eq!((t.passed, t.failed, t.skips.len()), (7, 0, 1));
    }

    #[test]
    fn timed_tests_are_read_and_the_slowest_named_first() {
        let t = tally(
            "[debian-sid 7.2.0-1-cloud-amd64] init: took kernel::veth_sg_off 88.4 s\r\n\
             init: took ledger::splice 3.0 s\n\
             init: took ledger::tee 12.5 s\n\
             init: took not a time s\n",
        );
        assert_eq!(t.took.len(), 3);
        let suite = Suite {
            name: "vm sid".into(),
            tally: t,
            ok: true,
            seconds: 1.0,
            note: None,
        };
        let text = slowest(&[suite], 2);
        assert_eq!(
            text,
            "slowest tests of 3 timed:\n    88.4 s  kernel::veth_sg_off  (vm sid)\n    12.5 s  ledger::tee  (vm sid)\n"
        );
    }

    #[test]
    fn other_lines_are_not_results() {
        for line in [
            "test result_lines_add_up ... ok",
            "test result: ok. many passed; 0 failed",
            "[label] test result: ok.",
            "",
        ] {
            assert_eq!(tally(line), Tally::default(), "{line:?}");
        }
    }

    #[test]
    fn a_failed_suite_without_a_failed_test_counts_one_and_closes_the_summary() {
        let ok = Suite {
            name: "unit".into(),
            tally: tally(
                "test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\nskipping a: b\n",
            ),
            ok: true,
            seconds: 1.25,
            note: None,
        };
        let crashed = Suite {
            name: "vm debian-bullseye".into(),
            tally: Tally::default(),
            ok: false,
            seconds: 60.0,
            note: Some("no verdict".into()),
        };
        let skipped = Suite::not_run("vm matrix", "needs root", false);
        let suites = [ok, crashed, skipped];
        assert_eq!(totals(&suites), (4, 1, 2));
        let text = render(&suites);
        assert!(
            text.ends_with("\n4 passed, 1 failed, 2 skipped\n"),
            "{text}"
        );
        assert!(text.contains("vm debian-bullseye: no verdict"), "{text}");
    }
}
