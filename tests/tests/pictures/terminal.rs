//! The table in a real terminal (tmux): at 80, 100 and 120 columns nothing runs past the edge,
//! no word of a header, cell, legend or note is broken, a method's row takes at most two lines
//! at 100 columns, the default short form fits one screen (issue 22: `run` at most 20 lines,
//! `compare` of six methods 35, `exec -- dd` 25), and colour shows on the terminal but not in a
//! pipe or with `NO_COLOR`. The measured runs need root; the tables are then re-rendered from
//! their traces without privileges.
use std::{
    collections::BTreeSet,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use zcprof_tests::{privileged, run, scratch_dir, skip, zcprof_bin};

/// The words of a rendering, without the table's borders.
fn words(text: &str) -> BTreeSet<String> {
    text.split_whitespace()
        .filter(|w| !w.chars().all(|c| "│┆╞═╪╡─┼├┤┌┐└┘┬┴╌".contains(c)))
        .map(str::to_owned)
        .collect()
}

/// Lines of each row of the compact table: the lines between two row separators.
fn row_heights(text: &str) -> Vec<usize> {
    let (mut heights, mut body, mut n) = (Vec::new(), false, 0);
    for line in text.lines() {
        if line.starts_with('╞') {
            body = true;
        } else if body && (line.starts_with('├') || line.starts_with('└')) {
            heights.push(n);
            n = 0;
            if line.starts_with('└') {
                break;
            }
        } else if body {
            n += 1;
        }
    }
    heights
}

/// A tmux server of this test's own, removed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// Runs `shell` in a fresh window `width` columns wide and returns the pane's text with
    /// its history once it has finished (`escapes`: with the colour codes tmux keeps).
    fn show(&self, width: u16, shell: &str, escapes: bool) -> String {
        let _ = self.cmd(&["kill-session", "-t", "zcp"]);
        let done = format!("{shell}; echo ZCPROF-DONE; sleep 600");
        let out = self.cmd(&[
            "new-session",
            "-d",
            "-s",
            "zcp",
            "-x",
            &width.to_string(),
            "-y",
            "50",
            "sh",
            "-c",
            &done,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let start = Instant::now();
        loop {
            // -J joins lines the terminal wrapped itself: a line past the edge shows as longer.
            let mut args = vec!["capture-pane", "-p", "-J", "-S", "-", "-t", "zcp"];
            if escapes {
                args.push("-e");
            }
            let text = String::from_utf8_lossy(&self.cmd(&args).stdout).into_owned();
            if text.contains("ZCPROF-DONE") {
                return text[..text.find("ZCPROF-DONE").unwrap()].to_owned();
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no end: {text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn quoted(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// Issue 22: at 100 columns the default output of `compare` (six methods, `trace`), `run
/// --method sendfile` and `exec -- dd` fits one screen: at most 35, 20 and 25 lines.
fn one_screen(tmux: &Tmux, dir: &Path, trace: &Path) {
    let sendfile = dir.join("sendfile.json");
    let out = run(&[
        "run",
        "--method",
        "sendfile",
        "--size",
        "4M",
        "--dir",
        dir.to_str().unwrap(),
        "--trace",
        sendfile.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dd = dir.join("dd.json");
    let out = run(&[
        "exec",
        "--trace",
        dd.to_str().unwrap(),
        "--",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64k",
        "count=256",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (file, most) in [(trace, 35), (sendfile.as_path(), 20), (dd.as_path(), 25)] {
        let shown = tmux.show(
            100,
            &format!(
                "env -u COLUMNS -u ZCPROF_TABLE TERM=xterm-256color {} report {}",
                quoted(&zcprof_bin()),
                quoted(file)
            ),
            false,
        );
        let lines = shown.trim_end().lines().count();
        assert!(
            lines <= most,
            "{}: {lines} lines at 100 columns, more than {most}:\n{shown}",
            file.display()
        );
    }
}

#[test]
fn the_table_fits_the_terminal_and_colours_only_there() {
    if !privileged("the_table_fits_the_terminal_and_colours_only_there") {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        skip(
            "the_table_fits_the_terminal_and_colours_only_there",
            "tmux is not installed (apt-get install tmux)",
        );
        return;
    }
    let dir = scratch_dir("terminal", env!("CARGO_TARGET_TMPDIR"));
    let trace = dir.join("t.json");
    // The note's six methods, compare's default.
    let out = run(&[
        "compare",
        "--size",
        "4M",
        "--dir",
        dir.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    let piped = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!piped.contains('\x1b'), "colour codes in a pipe: {piped:?}");
    assert!(
        piped.contains("syscalls/step"),
        "a pipe gets the full form: {piped}"
    );

    // Every word the compact form writes, unwrapped, short and explained: what the terminal
    // may show.
    let mut known = BTreeSet::new();
    for explain in [false, true] {
        let mut cmd = Command::new(zcprof_bin());
        cmd.args(["report", trace.to_str().unwrap()])
            .env("ZCPROF_TABLE", "compact")
            .env_remove("COLUMNS");
        if explain {
            cmd.arg("--explain");
        }
        let reference = cmd.output().expect("zcprof report runs");
        assert!(reference.status.success());
        known.extend(words(&String::from_utf8_lossy(&reference.stdout)));
    }

    let tmux = Tmux {
        socket: format!("zcprof-test-{}", std::process::id()),
    };
    let report = format!(
        "env -u COLUMNS -u ZCPROF_TABLE TERM=xterm-256color {} report {}",
        quoted(&zcprof_bin()),
        quoted(&trace)
    );
    for (width, explain) in [80u16, 100, 120]
        .into_iter()
        .flat_map(|w| [(w, ""), (w, " --explain")])
    {
        let shown = tmux.show(width, &format!("env -u NO_COLOR {report}{explain}"), false);
        assert!(
            shown.contains("Notes:") != explain.is_empty(),
            "{width} columns{explain}: {shown}"
        );
        for line in shown.lines() {
            assert!(
                line.chars().count() <= usize::from(width),
                "{width} columns: past the edge: {line:?}"
            );
        }
        let broken: Vec<_> = words(&shown).difference(&known).cloned().collect();
        assert!(
            broken.is_empty(),
            "{width} columns: broken words {broken:?}\n{shown}"
        );
        if width == 100 {
            let heights = row_heights(&shown);
            assert_eq!(heights.len(), 6, "{shown}");
            assert!(heights.iter().all(|h| *h <= 2), "{heights:?}\n{shown}");
        }
    }
    one_screen(&tmux, &dir, &trace);
    // Loopback does no DMA where the textbook counts 2: that cell is highlighted.
    let coloured = tmux.show(100, &format!("env -u NO_COLOR {report}"), true);
    assert!(
        coloured.contains('\x1b'),
        "no colour on a terminal: {coloured}"
    );
    let no_color = tmux.show(100, &format!("NO_COLOR=1 {report}"), true);
    assert!(
        !no_color.contains('\x1b'),
        "colour despite NO_COLOR: {no_color:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
