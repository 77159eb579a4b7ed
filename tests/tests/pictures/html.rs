//! The `--html` page in a real browser (Debian's chromium, headless, network refused): the DOM
//! holds the cost table with a row per method, the data-path pictures with a lane per method,
//! the notes and the provenance, and a screenshot of it is a real image. The page is written by
//! a measured compare (root) and again from its trace by `zcprof report`.
use std::{path::Path, process::Command};

use zcprof_tests::{privileged, run, scratch_dir, skip};

const TEST: &str = "the_page_opens_in_a_browser_without_network";

/// Runs headless chromium on `page` with `args`, every host name unresolvable.
fn chromium(page: &Path, profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs")
}

fn check_page(page: &Path, dir: &Path, methods: &[&str]) {
    let text = std::fs::read_to_string(page).expect("the page was written");
    // Nothing to fetch: no src or href, no URL but the SVG namespace's name.
    assert!(!text.contains(" src=") && !text.contains(" href="));
    assert!(
        !text
            .replace("http://www.w3.org/2000/svg", "")
            .contains("http"),
        "a URL in the page"
    );
    let profile = dir.join("chromium-profile");
    let out = chromium(page, &profile, &["--dump-dom"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("<table id=\"costs\">"), "{dom}");
    for m in methods {
        assert!(
            dom.contains(&format!("<tr class=\"run\" data-row=\"{m}\">")),
            "{m}: no row"
        );
        assert!(
            dom.contains(&format!("class=\"lane\" data-row=\"{m}\"")),
            "{m}: no lane"
        );
        assert!(
            dom.contains(&format!("class=\"provenance\" data-row=\"{m}\"")),
            "{m}: no provenance"
        );
    }
    assert!(dom.contains("<svg") && dom.contains("class=\"arrow dma\""));
    assert!(dom.contains("<ol id=\"notes\">"));
    let shot = dir.join("page.png");
    let out = chromium(
        page,
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}

#[test]
fn the_page_opens_in_a_browser_without_network() {
    if !privileged(TEST) {
        return;
    }
    if Command::new("chromium").arg("--version").output().is_err() {
        skip(TEST, "chromium is not installed (apt-get install chromium)");
        return;
    }
    let dir = scratch_dir("html", env!("CARGO_TARGET_TMPDIR"));
    let (page, trace) = (dir.join("costs.html"), dir.join("t.json"));
    let methods = ["read-write", "sendfile"];
    let out = run(&[
        "compare",
        "--methods",
        &methods.join(","),
        "--size",
        "4M",
        "--dir",
        dir.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_page(&page, &dir, &methods);
    // The same page from the saved trace, as a class would make it.
    let again = dir.join("again.html");
    let out = run(&[
        "report",
        trace.to_str().unwrap(),
        "--html",
        again.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_page(&again, &dir, &methods);
    let _ = std::fs::remove_dir_all(&dir);
}
