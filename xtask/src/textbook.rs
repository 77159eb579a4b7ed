//! `cargo xtask textbook`: the note's table measured on real drivers. Boots the `nic` VMs (an
//! emulated e1000 NIC and a virtio disk, xtask/src/vm.rs), whose tests run `zcprof compare` of
//! the note's methods with the NIC's scatter-gather on and off and keep the reports, and writes
//! docs/textbook.md from them: the note's figure and the measured one side by side, cell by cell,
//! with the kernel, the devices, the command and the data-path pictures. The reports and pictures
//! are kept beside it in docs/textbook/, and the page names them, so that its test can check
//! each cell against the report it came from.
use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{summary, vm};

/// The page, and the directory of its reports and pictures (relative to the page).
const PAGE: &str = "docs/textbook.md";
const DATA: &str = "textbook";

/// The two settings of each VM, in the page's order.
const SETTINGS: [(&str, &str); 2] = [("sg-on", "on"), ("sg-off", "off")];

/// Runs the textbook VMs and writes the page.
///
/// # Errors
/// When a VM fails, or none could run.
pub fn textbook(root: &Path) -> Result<()> {
    let reports = root.join("target/textbook");
    let _ = fs::remove_dir_all(&reports);
    let targets = vm::textbook_targets();
    let suites = vm::run_targets(root, &targets, Some(&reports))?;
    let ok = summary::print(&suites);
    if !ok {
        bail!("a textbook VM failed: {PAGE} is left as it was");
    }
    let measured: Vec<Section> = targets
        .iter()
        .filter_map(|t| Section::read(&reports.join(t.label), t.label).transpose())
        .collect::<Result<_>>()?;
    if measured.is_empty() {
        bail!("no textbook VM could run (see the skips above): {PAGE} is left as it was");
    }
    let data = root.join("docs").join(DATA);
    let _ = fs::remove_dir_all(&data);
    fs::create_dir_all(&data)?;
    for s in &measured {
        s.publish(&reports.join(&s.label), &data)?;
    }
    fs::write(root.join(PAGE), page(&measured))?;
    eprintln!("textbook: wrote {PAGE} and {}", data.display());
    Ok(())
}

/// One VM's measurements: its compare reports, SG on and off.
struct Section {
    label: String,
    about: Value,
    /// Per setting: the file stem, the SG word, the report, the command.
    runs: Vec<(String, String, Value, String)>,
}

impl Section {
    /// The VM's kept reports, or none when it did not run (its kernel could not be fetched).
    fn read(dir: &Path, label: &str) -> Result<Option<Self>> {
        if !dir.join("about.json").exists() {
            eprintln!("textbook: SKIPPING {label}: it left no reports");
            return Ok(None);
        }
        let json = |p: PathBuf| -> Result<Value> {
            let text = fs::read_to_string(&p).with_context(|| p.display().to_string())?;
            serde_json::from_str(&text).with_context(|| p.display().to_string())
        };
        let mut runs = Vec::new();
        for (stem, sg) in SETTINGS {
            let report = json(dir.join(format!("{stem}.json")))?;
            let cmd = fs::read_to_string(dir.join(format!("{stem}.cmd")))?;
            runs.push((
                stem.to_owned(),
                sg.to_owned(),
                report,
                cmd.trim().to_owned(),
            ));
        }
        Ok(Some(Self {
            label: label.to_owned(),
            about: json(dir.join("about.json"))?,
            runs,
        }))
    }

    /// Copies the reports and pictures into docs/textbook/, named by VM and setting.
    fn publish(&self, from: &Path, data: &Path) -> Result<()> {
        for (stem, ..) in &self.runs {
            for ext in ["json", "svg"] {
                fs::copy(
                    from.join(format!("{stem}.{ext}")),
                    data.join(self.file(stem, ext)),
                )?;
            }
        }
        Ok(())
    }

    fn file(&self, stem: &str, ext: &str) -> String {
        format!("{}-{stem}.{ext}", self.label)
    }
}

/// The figure `key` of `run` per step, in blocks where `blocks` (bytes / block size).
fn per_step(run: &Value, key: &str, blocks: bool) -> Option<f64> {
    let v = run["figures"][key]["per_transfer"].as_f64()?;
    let block = run["block_size"].as_f64().unwrap_or(1.0);
    Some(if blocks { v / block.max(1.0) } else { v })
}

/// A cell: the note's figure, then the measured one ("2 → 2.02"); '-' where either is missing.
fn cell(note: Option<f64>, measured: Option<f64>) -> String {
    let fmt = |v: Option<f64>, p: usize| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.p$}"));
    format!("{} → {}", fmt(note, 0), fmt(measured, 2))
}

/// The paths of the CPU copies, in the measured order ("page cache -> user buffer, ...").
fn copy_paths(run: &Value) -> String {
    let paths: Vec<&str> = run["copies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["contradicted"] != true)
        .filter_map(|c| c["path"].as_str())
        .collect();
    if paths.is_empty() {
        "none".to_owned()
    } else {
        paths.join(", ")
    }
}

/// Blocks per step the DMA API mapped towards the physical NIC (device-wide), where the kernel
/// has the `dma:` events.
fn mapped_per_step(run: &Value) -> Option<f64> {
    let bytes = run["devices"]["net"]
        .as_array()?
        .iter()
        .find(|n| n["physical"] == true)?["dma_mapped"]["bytes"]
        .as_f64()?;
    let transfers = run["transfers"].as_f64()?.max(1.0);
    Some(bytes / transfers / run["block_size"].as_f64()?.max(1.0))
}

/// The row of one run: technique, SG, the note's row, then each column's note → measured.
fn row(run: &Value, sg: &str) -> String {
    let tb = &run["textbook"];
    let note_row = tb["note"]
        .as_str()
        .and_then(|n| n.split(':').next())
        .unwrap_or("-");
    let cpu_note = if sg == "on" {
        tb["cpu_copies_with_sg_dma"]
            .as_f64()
            .or(tb["cpu_copies"].as_f64())
    } else {
        tb["cpu_copies"].as_f64()
    };
    let dma = per_step(run, "dma_bytes", true);
    let disk = per_step(run, "disk_read_bytes", true).unwrap_or(0.0);
    let nic = per_step(run, "nic_dma_bytes", true).unwrap_or(0.0);
    let mapped = mapped_per_step(run).map_or_else(
        || "; DMA API: no dma: events".to_owned(),
        |m| format!("; DMA API mapped {m:.2}"),
    );
    format!(
        "| {} | {sg} | {note_row} | {} | {} | {} ({}) | {} (disk {disk:.2} + NIC {nic:.2}{mapped}) |",
        run["method"].as_str().unwrap_or("?"),
        cell(tb["syscalls"].as_f64(), per_step(run, "syscalls", false)),
        cell(
            tb["mode_switches"].as_f64(),
            per_step(run, "mode_switches", false)
        ),
        cell(cpu_note, per_step(run, "cpu_copy_bytes", true)),
        copy_paths(run),
        cell(tb["dma_copies"].as_f64(), dma),
    )
}

/// The table's header; the test reads the columns by position.
const HEADER: &str = "| technique | NIC scatter-gather | the note's row | syscalls | mode switches \
                      | CPU copies (paths) | DMA copies (disk + NIC; the DMA API's own count for the NIC) |\n|---|---|---|---|---|---|---|";

/// How each column was measured, from the first report's sources.
fn sources(run: &Value) -> String {
    let mut out = String::new();
    for (column, key) in [
        ("syscalls", "syscalls"),
        ("mode switches", "mode_switches"),
        ("CPU copies", "cpu_copy_bytes"),
        ("disk DMA", "disk_read_bytes"),
        (
            "NIC DMA (and, from 6.12, what the DMA API mapped towards the NIC)",
            "nic_dma_bytes",
        ),
        ("DMA API maps (device-wide)", "dma_api_maps"),
    ] {
        let f = &run["figures"][key];
        let how = f["source"].as_str().unwrap_or("-");
        let what = f["note"].as_str().unwrap_or("");
        let _ = writeln!(out, "- **{column}**: {how}. {what}");
    }
    out
}

/// Notes that describe the run rather than a departure from the note (the sink's own costs,
/// calls in progress when measuring began): they stay in the reports.
const AFFIDAVITS: [&str; 2] = ["The sink's own costs", "Returns without an entry"];

/// Every note of the section's reports, once each, with the runs that gave it: where and why
/// the kernel departs from the note.
fn notes(section: &Section) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut runs: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for (_, sg, report, _) in &section.runs {
        for run in report["runs"].as_array().into_iter().flatten() {
            for note in run["notes"].as_array().into_iter().flatten() {
                let Some(text) = note.as_str() else { continue };
                if AFFIDAVITS.iter().any(|a| text.starts_with(a)) {
                    continue;
                }
                let method = run["method"].as_str().unwrap_or("?");
                let by = runs.entry(text.to_owned()).or_default();
                if by.is_empty() {
                    order.push(text.to_owned());
                }
                by.push(format!("{method} SG {sg}"));
            }
        }
    }
    let total: usize = section
        .runs
        .iter()
        .map(|(_, _, report, _)| report["runs"].as_array().map_or(0, Vec::len))
        .sum();
    order.iter().fold(String::new(), |mut out, text| {
        let by = &runs[text];
        let which = if by.len() == total {
            "every run".to_owned()
        } else {
            by.join(", ")
        };
        let _ = writeln!(out, "- {which}: {text}");
        out
    })
}

fn section(s: &Section) -> String {
    let about = &s.about;
    let text = |k: &str| about[k].as_str().unwrap_or("?").to_owned();
    let mut out = format!(
        "## Linux {} with the {} driver ({})\n\n",
        text("kernel"),
        text("nic_driver"),
        s.label
    );
    let _ = writeln!(
        out,
        "Machine: {}; the NIC is `{}` (driver `{}`), the disk `{}` (driver `{}`). Each run reads \
         a file cold from the disk and sends it through the NIC to a `zcprof sink` on the host.\n",
        vm::NIC_MACHINE,
        text("nic"),
        text("nic_driver"),
        text("disk"),
        text("disk_driver"),
    );
    for (stem, sg, _, cmd) in &s.runs {
        let _ = writeln!(
            out,
            "- SG {sg} (`ethtool -K {} sg {sg}`): `{cmd}`; report [{}]({DATA}/{})",
            text("nic"),
            s.file(stem, "json"),
            s.file(stem, "json"),
        );
    }
    let _ = writeln!(out, "\n{HEADER}");
    for (_, sg, report, _) in &s.runs {
        for run in report["runs"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "{}", row(run, sg));
        }
    }
    let first = &s.runs[0].2["runs"][0];
    let _ = write!(out, "\nHow each column was measured:\n\n{}", sources(first));
    let _ = write!(
        out,
        "\nWhere the kernel departs from the note, and why (zcprof's notes):\n\n{}",
        notes(s)
    );
    for (stem, sg, ..) in &s.runs {
        let _ = writeln!(
            out,
            "\n![The data path of each method, SG {sg}]({DATA}/{})",
            s.file(stem, "svg")
        );
    }
    out
}

/// The page's first line, which its test looks for: the page is made, not written.
pub const BANNER: &str = "<!-- Generated by `cargo xtask textbook`: do not edit. -->";

fn page(sections: &[Section]) -> String {
    let mut out = format!(
        "{BANNER}\n# The note's claims, measured\n\n\
         The study note zcprof measures (shared/TEXTBOOK.md, from seed-zero-copy-note.txt) gives \
         each way of sending a file its cost per transfer of one buffer. Here each cell is \
         \"the note's figure → zcprof's measurement\", per step (one `--block-size` transfer), on \
         machines with real drivers: an emulated Intel NIC that the kernel's e1000 driver feeds \
         through the DMA API, and a disk. The NIC's scatter-gather is turned on and off, which is \
         what decides between the note's \"sendfile\" and \"sendfile + SG-DMA\" rows. The tests \
         of the same VMs (tests/tests/nic.rs) check every cell against the devices' own counters: \
         the driver's (`/sys/class/net/*/statistics`), the block layer's (`/sys/block/*/stat`) \
         and, from 6.12, the DMA API's `dma:dma_map_*` events.\n\n"
    );
    for s in sections {
        out.push_str(&section(s));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// A number after the arrow of a cell ("2 → 2.02" -> 2.02), or after "disk"/"NIC".
    fn measured(cell: &str) -> f64 {
        let after = cell.split('→').nth(1).unwrap_or(cell);
        after
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no measured figure in {cell:?}"))
    }

    fn labelled(cell: &str, label: &str) -> f64 {
        cell.split(&format!("{label} "))
            .nth(1)
            .and_then(|r| r.split([' ', ')', ';']).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {label} figure in {cell:?}"))
    }

    /// The page parses, every cell agrees with the report it names, and every report and
    /// picture it names is there.
    #[test]
    fn the_textbook_page_agrees_with_the_reports_it_names() {
        let root = workspace();
        let page = fs::read_to_string(root.join(PAGE)).expect("docs/textbook.md");
        assert!(page.starts_with(BANNER), "{PAGE} is not generated");
        let mut report: Option<Value> = None;
        let mut rows = 0;
        for line in page.lines() {
            for target in line.split("](").skip(1) {
                let file = target.split(')').next().unwrap_or_default();
                let path = root.join("docs").join(file);
                assert!(path.exists(), "{PAGE} names {file}, which is missing");
                if path.extension().is_some_and(|e| e == "json") {
                    let text = fs::read_to_string(&path).expect("a report");
                    report = Some(serde_json::from_str(&text).expect("a report in JSON"));
                    // The rows of this report follow its link, in its own section.
                    let after = page.find(line).map_or(&page[..], |at| &page[at..]);
                    check_report(report.as_ref().expect("just read"), after, file);
                }
            }
            rows += usize::from(line.starts_with("| ") && !line.starts_with("| technique"));
        }
        assert!(report.is_some(), "{PAGE} names no report");
        assert!(rows >= 6, "{PAGE} has {rows} rows");
    }

    /// Each run of `report` has its row in `page`, and the row's figures are the report's.
    fn check_report(report: &Value, page: &str, file: &str) {
        let sg = if file.contains("sg-on") { "on" } else { "off" };
        for run in report["runs"].as_array().expect("runs") {
            let method = run["method"].as_str().expect("method");
            let line = page
                .lines()
                .find(|l| l.starts_with(&format!("| {method} | {sg} |")))
                .unwrap_or_else(|| panic!("no row for {method}, SG {sg} ({file})"));
            let cells: Vec<&str> = line.split(" | ").collect();
            assert_eq!(cells.len(), 7, "{line}");
            let agree = |cell: &str, key: &str, blocks: bool| {
                let want = per_step(run, key, blocks).expect(key);
                assert!(
                    (measured(cell) - want).abs() < 0.006,
                    "{method}, SG {sg}: {key} is {want:.3} in {file}, the page says {cell:?}"
                );
            };
            agree(cells[3], "syscalls", false);
            agree(cells[4], "mode_switches", false);
            agree(cells[5], "cpu_copy_bytes", true);
            agree(cells[6], "dma_bytes", true);
            let disk = per_step(run, "disk_read_bytes", true).expect("disk");
            let nic = per_step(run, "nic_dma_bytes", true).expect("nic");
            assert!((labelled(cells[6], "disk") - disk).abs() < 0.006, "{line}");
            assert!((labelled(cells[6], "NIC") - nic).abs() < 0.006, "{line}");
            if let Some(mapped) = mapped_per_step(run) {
                assert!(
                    (labelled(cells[6], "mapped") - mapped).abs() < 0.006,
                    "{line}"
                );
            }
        }
    }
}
