//! The note's table over a real driver: QEMU's emulated e1000 NIC, which the generic kernel's
//! e1000 driver feeds through the DMA API, and a virtio disk. The `nic` VMs of `cargo xtask
//! vm-test` (xtask/src/vm.rs) run these tests, sending to a `zcprof sink` on the host through
//! QEMU's user network; they name the NIC and the sink in `ZCPROF_NIC` and `ZCPROF_NIC_SINK`.
//! Anywhere else each test skips, saying so.
//!
//! Each cell is checked twice: against the note's figure (where the kernel departs from it, the
//! figure it really shows, and the note that says why), and against evidence that does not come
//! from zcprof's hooks: the driver's own counters (`/sys/class/net/*/statistics`), the block
//! layer's (`/sys/block/*/stat`) and, where the kernel has them (6.12 on), the DMA API's own
//! `dma:dma_map_*` events read through tracefs.
use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;
use zcprof_tests::{privileged, scratch_dir, skip};

/// Bytes each run sends: the file, read cold from the virtio disk.
const SIZE: u64 = 4 << 20;

/// At most this many bytes of headers per packet the driver mapped or sent: Ethernet (14), IPv4
/// (20 + 40 of options) and TCP (20 + 40 of options). Payload is never beyond it.
const HEADERS: u64 = 134;

/// The NIC under test and the sink it reaches.
struct Nic {
    name: String,
    sink: String,
    /// The NIC's PCI address, as the DMA API names the device.
    pci: String,
}

fn nic(test: &str) -> Option<Nic> {
    if !privileged(test) {
        return None;
    }
    let (Ok(name), Ok(sink)) = (
        std::env::var("ZCPROF_NIC"),
        std::env::var("ZCPROF_NIC_SINK"),
    ) else {
        skip(
            test,
            "needs an emulated NIC that does DMA and a sink behind it: it runs in the nic VMs of \
             `cargo xtask vm-test` (ZCPROF_NIC and ZCPROF_NIC_SINK unset)",
        );
        return None;
    };
    let pci = fs::read_link(format!("/sys/class/net/{name}/device"))
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_else(|| panic!("{name} has no device behind it: not a physical NIC"));
    Some(Nic { name, sink, pci })
}

/// Turns the NIC's scatter-gather on or off with ethtool (its TCP segmentation offload follows).
fn set_sg(nic: &Nic, on: bool) {
    let out = Command::new("ethtool")
        .args(["-K", &nic.name, "sg", if on { "on" } else { "off" }])
        .output()
        .expect("ethtool runs");
    assert!(
        out.status.success(),
        "ethtool -K {} sg: {}",
        nic.name,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The DMA API's map events of one device, read through tracefs (`None` where the kernel has no
/// `dma:` events, before 6.12).
struct DmaTrace {
    root: PathBuf,
    events: Vec<PathBuf>,
    mounted: bool,
}

impl DmaTrace {
    fn start() -> Option<Self> {
        let root = PathBuf::from("/sys/kernel/tracing");
        let mounted = !root.join("events").exists()
            && Command::new("mount")
                .args(["-t", "tracefs", "tracefs"])
                .arg(&root)
                .status()
                .is_ok_and(|s| s.success());
        let events: Vec<PathBuf> = ["dma_map_page", "dma_map_phys"]
            .iter()
            .map(|e| root.join("events/dma").join(e))
            .filter(|p| p.exists())
            .collect();
        let trace = Self {
            root,
            events,
            mounted,
        };
        if trace.events.is_empty() {
            return None;
        }
        fs::write(trace.root.join("buffer_size_kb"), "16384").expect("tracefs buffer");
        Some(trace)
    }

    fn arm(&self) {
        fs::write(self.root.join("trace"), "").expect("clearing the trace");
        for e in &self.events {
            fs::write(e.join("enable"), "1").expect("enabling a dma event");
        }
    }

    /// Bytes and maps the DMA API mapped towards `device` (`TO_DEVICE`) since `arm`.
    fn mapped(&self, device: &str) -> (u64, u64) {
        for e in &self.events {
            fs::write(e.join("enable"), "0").expect("disabling a dma event");
        }
        let stats = fs::read_to_string(self.root.join("per_cpu/cpu0/stats")).unwrap_or_default();
        assert!(
            stats.contains("overrun: 0"),
            "the trace buffer lost events: {stats}"
        );
        let text = fs::read_to_string(self.root.join("trace")).expect("reading the trace");
        text.lines()
            .filter(|l| l.contains(&format!(" {device} ")) && l.contains("dir=TO_DEVICE"))
            .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("size=")))
            .filter_map(|s| s.parse::<u64>().ok())
            .fold((0, 0), |(bytes, maps), size| (bytes + size, maps + 1))
    }
}

impl Drop for DmaTrace {
    fn drop(&mut self) {
        for e in &self.events {
            let _ = fs::write(e.join("enable"), "0");
        }
        let _ = fs::write(self.root.join("trace"), "");
        if self.mounted {
            let _ = Command::new("umount").arg(&self.root).status();
        }
    }
}

/// The driver's and the block layer's own counters.
#[derive(Clone, Copy, Debug)]
struct Counters {
    tx_bytes: u64,
    tx_packets: u64,
    sectors_read: u64,
}

fn read_u64(path: &Path) -> u64 {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The block device holding `dir`: /sys/dev/block/MAJOR:MINOR.
fn disk_of(dir: &Path) -> PathBuf {
    let st = nix::sys::stat::stat(dir).expect("stat of the scratch dir");
    let dev = st.st_dev;
    PathBuf::from(format!(
        "/sys/dev/block/{}:{}",
        libc::major(dev),
        libc::minor(dev)
    ))
}

fn counters(nic: &Nic, disk: &Path) -> Counters {
    let stats = Path::new("/sys/class/net")
        .join(&nic.name)
        .join("statistics");
    let stat = fs::read_to_string(disk.join("stat")).expect("the disk's stat");
    Counters {
        tx_bytes: read_u64(&stats.join("tx_bytes")),
        tx_packets: read_u64(&stats.join("tx_packets")),
        // Fields: reads, reads merged, sectors read, ... (Documentation/block/stat.rst).
        sectors_read: stat
            .split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .expect("sectors read"),
    }
}

fn figure(run: &Value, key: &str) -> u64 {
    run["figures"][key]["value"]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} unmeasured: {}", run["figures"][key]))
}

fn per_step(run: &Value, key: &str) -> f64 {
    run["figures"][key]["per_transfer"]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} has no per-step figure: {}", run["figures"][key]))
}

/// One run of `method` to the sink, cold, with the evidence around it.
fn run_one(nic: &Nic, dir: &Path, method: &str, dma: Option<&DmaTrace>) -> (Value, Evidence) {
    let disk = disk_of(dir);
    let before = counters(nic, &disk);
    if let Some(t) = dma {
        t.arm();
    }
    let out = Command::new(zcprof_tests::zcprof_bin())
        .args([
            "run", "--method", method, "--cache", "cold", "--to", &nic.sink,
        ])
        .args(["--size", &SIZE.to_string(), "--format", "json", "--dir"])
        .arg(dir)
        .output()
        .expect("zcprof runs");
    let mapped = dma.map(|t| t.mapped(&nic.pci));
    assert!(
        out.status.success(),
        "{method}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = counters(nic, &disk);
    let run: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let evidence = Evidence {
        tx_bytes: after.tx_bytes - before.tx_bytes,
        tx_packets: after.tx_packets - before.tx_packets,
        disk_read: (after.sectors_read - before.sectors_read) * 512,
        mapped,
    };
    (run, evidence)
}

/// What the device counters saw during one run.
#[derive(Debug)]
struct Evidence {
    /// Bytes the driver says it sent, every segment with its own headers.
    tx_bytes: u64,
    tx_packets: u64,
    /// Bytes the block layer read from the disk.
    disk_read: u64,
    /// Bytes and maps the DMA API mapped towards the NIC.
    mapped: Option<(u64, u64)>,
}

/// The DMA cells against the devices' own counters: the disk's DMA is the file, read cold; the
/// NIC's is the bytes the driver mapped (or sent) within the headers.
fn check_dma(what: &str, run: &Value, ev: &Evidence) {
    let disk = figure(run, "disk_read_bytes");
    assert!(
        (SIZE..=SIZE + SIZE / 100).contains(&disk),
        "{what}: the disk DMA is the file, read cold: {disk} B for {SIZE}"
    );
    assert!(
        ev.disk_read.abs_diff(disk) <= SIZE / 100,
        "{what}: the block layer read {} B, zcprof counted {disk} B",
        ev.disk_read
    );
    let nic = figure(run, "nic_dma_bytes");
    // The driver counts each segment on the wire with its headers; zcprof each packet handed to
    // it (a TSO packet once, with one set of headers).
    assert!(
        (SIZE..=ev.tx_bytes).contains(&nic),
        "{what}: NIC DMA {nic} B: between the payload {SIZE} and the driver's {} B",
        ev.tx_bytes
    );
    assert!(
        ev.tx_bytes - SIZE <= ev.tx_packets * HEADERS,
        "{what}: the driver sent {} B in {} packets for {SIZE} B of payload",
        ev.tx_bytes,
        ev.tx_packets
    );
    let row = run["devices"]["net"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["physical"] == true)
        .unwrap_or_else(|| panic!("{what}: no physical NIC row: {}", run["devices"]));
    let zcprof_mapped = row["dma_mapped"]["bytes"].as_u64();
    assert_eq!(
        zcprof_mapped.is_some(),
        ev.mapped.is_some(),
        "{what}: zcprof's DMA API count and tracefs's disagree on whether the kernel has dma: \
         events: {row}"
    );
    if let (Some(zcprof_mapped), Some((mapped, _))) = (zcprof_mapped, ev.mapped) {
        // zcprof counts while it measures; tracefs from before zcprof starts to after it ends.
        assert!(
            (nic..=mapped).contains(&zcprof_mapped),
            "{what}: zcprof saw {zcprof_mapped} B mapped towards the NIC, tracefs {mapped} B, \
             the process's packets were {nic} B"
        );
    }
    if let Some((mapped, maps)) = ev.mapped {
        // Every byte handed to the NIC is mapped for it, headers included; beyond them only the
        // few packets of other sockets (zcprof's talk with the sink, ACKs).
        assert!(
            nic <= mapped && mapped - nic <= SIZE / 100,
            "{what}: the driver mapped {mapped} B in {maps} maps for the device, zcprof counted \
             {nic} B handed to it"
        );
    }
    let dma = per_step(run, "dma_bytes") / run["block_size"].as_f64().unwrap_or(1.0);
    assert!(
        (1.95..=2.2).contains(&dma),
        "{what}: the note's 2 DMA copies per step: {dma:.2}"
    );
}

/// CPU copies per step of each method, SG on and off, and why they depart from the note where
/// they do.
fn expected_cpu_copies(method: &str, sg: bool) -> f64 {
    match (method, sg) {
        ("sendfile", true) => 0.0,
        // Without scatter-gather the stack copies the pages into linear packet data.
        ("sendfile", false) | ("mmap-write", true) => 1.0,
        ("read-write", true) | ("mmap-write", false) => 2.0,
        // The socket's page fragments are copied again into linear packets.
        ("read-write", false) => 3.0,
        _ => unreachable!("{method}"),
    }
}

fn check_cells(what: &str, run: &Value, method: &str, sg: bool) {
    let block = run["block_size"].as_f64().unwrap_or(1.0);
    let copies = per_step(run, "cpu_copy_bytes") / block;
    let want = expected_cpu_copies(method, sg);
    assert!(
        (copies - want).abs() < 0.1,
        "{what}: {copies:.2} CPU copies per step, expected {want}: {}",
        run["figures"]["cpu_copy_bytes"]
    );
    let syscalls = per_step(run, "syscalls");
    let note = run["textbook"]["syscalls"].as_f64().unwrap_or(0.0);
    // mmap + write maps once for the whole file, not once per step as the note counts.
    let want = if method == "mmap-write" { 1.0 } else { note };
    assert!(
        (syscalls - want).abs() < 0.1,
        "{what}: {syscalls:.2} syscalls per step, expected {want}"
    );
    // Where the kernel departs from the note, a note says why.
    let why: &[&str] = match (method, sg) {
        ("mmap-write", true) => &["mapped once"],
        ("mmap-write", false) => &["mapped once", "again into linear packet data"],
        ("read-write", false) => &["again into linear packet data"],
        ("sendfile", false) => &["copies every page into linear packet data"],
        ("sendfile", true) => &["the note's \"SG-DMA\" case"],
        _ => &[],
    };
    let notes: Vec<&str> = run["notes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let notes = notes.join("\n");
    for w in why {
        assert!(notes.contains(w), "{what}: no note says {w:?}: {notes}");
    }
}

#[test]
fn the_notes_table_on_a_real_nic_matches_the_devices_counters() {
    let Some(nic) = nic("nic_table") else {
        return;
    };
    let dir = scratch_dir("nic-table", env!("CARGO_TARGET_TMPDIR"));
    let dma = DmaTrace::start();
    if dma.is_none() {
        skip(
            "nic_table",
            "no dma:dma_map_* events on this kernel (before 6.12): the NIC's DMA is checked \
             against the driver's counters only",
        );
    }
    for sg in [true, false] {
        set_sg(&nic, sg);
        for method in ["read-write", "mmap-write", "sendfile"] {
            let what = format!("{method}, SG {}", if sg { "on" } else { "off" });
            let (run, ev) = run_one(&nic, &dir, method, dma.as_ref());
            // On the console of the VM: the figures beside the devices' own counts.
            let _ = writeln!(
                std::io::stderr(),
                "nic_table: {what}: zcprof NIC {} B (DMA API {}), disk {} B, CPU copies {} B; {ev:?}",
                run["figures"]["nic_dma_bytes"]["value"],
                run["devices"]["net"],
                run["figures"]["disk_read_bytes"]["value"],
                run["figures"]["cpu_copy_bytes"]["value"],
            );
            check_dma(&what, &run, &ev);
            check_cells(&what, &run, method, sg);
        }
    }
    set_sg(&nic, true);
    let _ = fs::remove_dir_all(&dir);
}

/// The methods of the note's table that send a file, as `compare --methods` names them.
const NOTE_METHODS: &str = "read-write,mmap-write,sendfile";

/// `compare` of the note's methods, SG on and off, as `cargo xtask textbook` publishes it: each
/// cell against the note, the disk and NIC DMA of all runs against the devices' counters. With
/// `ZCPROF_TEXTBOOK_OUT` set (the textbook VM), the reports, pictures and commands are kept there.
#[test]
fn compare_of_the_notes_methods_matches_the_note_and_the_devices() {
    let Some(nic) = nic("nic_compare") else {
        return;
    };
    let dir = scratch_dir("nic-compare", env!("CARGO_TARGET_TMPDIR"));
    let out = std::env::var_os("ZCPROF_TEXTBOOK_OUT").map(PathBuf::from);
    for sg in [true, false] {
        set_sg(&nic, sg);
        let name = format!("sg-{}", if sg { "on" } else { "off" });
        let (json, svg) = (
            dir.join(format!("{name}.json")),
            dir.join(format!("{name}.svg")),
        );
        let size = SIZE.to_string();
        let args = [
            "compare",
            "--methods",
            NOTE_METHODS,
            "--cache",
            "cold",
            "--to",
            &nic.sink,
            "--size",
            &size,
        ];
        let disk = disk_of(&dir);
        let before = counters(&nic, &disk);
        let status = Command::new(zcprof_tests::zcprof_bin())
            .args(args)
            .args(["--format", "json", "--dir"])
            .arg(&dir)
            .arg("--output")
            .arg(&json)
            .arg("--svg")
            .arg(&svg)
            .status()
            .expect("zcprof runs");
        assert!(status.success(), "{name}: compare failed");
        let after = counters(&nic, &disk);
        let report: Value =
            serde_json::from_slice(&fs::read(&json).expect("the report")).expect("JSON");
        let runs = report["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 3, "{name}: {}", report["failed"]);
        let (mut nic_sum, mut disk_sum) = (0, 0);
        for run in runs {
            let method = run["method"].as_str().expect("method");
            check_cells(&format!("compare {method}, {name}"), run, method, sg);
            nic_sum += figure(run, "nic_dma_bytes");
            disk_sum += figure(run, "disk_read_bytes");
        }
        let tx = after.tx_bytes - before.tx_bytes;
        assert!(
            (3 * SIZE..=tx).contains(&nic_sum),
            "{name}: NIC DMA {nic_sum} B in all, the driver sent {tx} B"
        );
        let read = (after.sectors_read - before.sectors_read) * 512;
        assert!(
            disk_sum.abs_diff(3 * SIZE) <= SIZE / 100 && read.abs_diff(disk_sum) <= SIZE / 100,
            "{name}: disk DMA {disk_sum} B in all, the block layer read {read} B"
        );
        if let Some(out) = &out {
            keep(out, &name, &[&json, &svg], &args);
            about(out, &nic, &disk);
        }
    }
    set_sg(&nic, true);
    let _ = fs::remove_dir_all(&dir);
}

/// Keeps a compare's report and picture, and the command that made it, for the textbook.
fn keep(out: &Path, name: &str, files: &[&Path], args: &[&str]) {
    fs::create_dir_all(out).expect("the textbook's directory");
    for f in files {
        fs::copy(f, out.join(f.file_name().expect("name"))).expect("keeping a report");
    }
    fs::write(
        out.join(format!("{name}.cmd")),
        format!("zcprof {}\n", args.join(" ")),
    )
    .expect("keeping the command");
}

/// The machine the textbook's tables were measured on: the kernel, the NIC's driver (ethtool -i)
/// and the disk's.
fn about(out: &Path, nic: &Nic, disk: &Path) {
    let driver = |path: PathBuf| {
        fs::read_link(path)
            .ok()
            .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
            .unwrap_or_default()
    };
    let about = serde_json::json!({
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "nic": nic.name,
        "nic_driver": driver(Path::new("/sys/class/net").join(&nic.name).join("device/driver")),
        "disk": fs::read_to_string(disk.join("uevent")).unwrap_or_default().lines().find_map(|l| l.strip_prefix("DEVNAME=")).unwrap_or_default(),
        "disk_driver": driver(disk.join("device/driver")),
    });
    fs::write(out.join("about.json"), about.to_string()).expect("keeping about.json");
}
