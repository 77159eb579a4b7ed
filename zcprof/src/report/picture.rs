//! The data-path picture of `--svg`: the note's stations (disk, page cache, user buffer, socket
//! buffer, device; the receiver apart) with what was measured on each arrow, DMA transfers, CPU
//! copies by path (the copy ledger) and page references in distinct styles, the textbook's
//! figure beside each, and the mode and scheduler switches of one step as a user/kernel
//! timeline. One lane per run, so that compare's methods line up.
#![expect(
    clippy::cast_precision_loss,
    reason = "counts of lanes, arcs and marks used as coordinates"
)]
use svg::{
    Document,
    node::element::{Circle, Definitions, Group, Line, Marker, Path, Polyline, Rectangle, Text},
};

use super::{cells::in_blocks, row_label};
use crate::{
    model::{FigureId, RunReport, Station},
    units::format_bytes,
    workload::Method,
};

/// The stations of the sender, left to right, and the receiver's two, apart.
const STATIONS: [(&str, &str); 5] = [
    ("disk", "disk"),
    ("page-cache", "page cache"),
    ("user-buffer", "user buffer"),
    ("socket-buffer", "socket buffer"),
    ("device", "device"),
];
const RECEIVER: [(&str, &str); 2] = [
    ("receiver-socket", "socket buffer"),
    ("receiver-user", "user buffer"),
];
/// A station for copies into the kernel that are neither page cache nor socket (pipes, devices).
const OTHER: (&str, &str) = ("other", "other kernel buffer");

const WIDTH: f64 = 1240.0;
const LANE: f64 = 345.0;
const BOX_W: f64 = 130.0;
const BOX_H: f64 = 40.0;
/// The stations' row inside a lane.
const ROW: f64 = 120.0;

fn x_of(id: &str) -> f64 {
    match id {
        "disk" => 80.0,
        "page-cache" => 250.0,
        "user-buffer" | "other" => 420.0,
        "socket-buffer" => 590.0,
        "device" => 760.0,
        "receiver-socket" => 960.0,
        _ => 1140.0,
    }
}

fn y_of(id: &str) -> f64 {
    if id == "other" { ROW + 80.0 } else { ROW }
}

/// The picture's node for a station of the ledger: packets are drawn at the device that takes
/// them, stations the picture has no node for (pipes, devices, the kernel at large) at "other".
fn station(end: Station) -> &'static str {
    match end {
        Station::PageCache | Station::MappedPageCache => "page-cache",
        Station::UserBuffer => "user-buffer",
        Station::SocketBuffer => "socket-buffer",
        Station::Packet => "device",
        Station::ReceiverUserBuffer => "receiver-user",
        Station::Kernel | Station::PipeBuffer | Station::Device => OTHER.0,
    }
}

/// What the arrows are, each drawn in its own style.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dma,
    CpuCopy,
    PageRef,
    Network,
}

impl Kind {
    fn class(self) -> &'static str {
        match self {
            Kind::Dma => "dma",
            Kind::CpuCopy => "cpu-copy",
            Kind::PageRef => "page-ref",
            Kind::Network => "network",
        }
    }

    /// Stroke, width, dash; CPU copies arc above the stations, the others below.
    fn style(self) -> (&'static str, f64, &'static str, f64) {
        match self {
            Kind::Dma => ("#1f5fbf", 3.0, "none", 1.0),
            Kind::CpuCopy => ("#c0392b", 3.0, "none", -1.0),
            Kind::PageRef => ("#2e8b57", 2.0, "6 4", 1.0),
            Kind::Network => ("#777777", 1.5, "2 3", 1.0),
        }
    }
}

/// One arrow: from, to, what it is, and its label (measured, then the textbook's figure).
struct Arrow {
    from: &'static str,
    to: &'static str,
    kind: Kind,
    label: String,
    path: String,
}

fn arrow_node(a: &Arrow, nth: usize, top: f64) -> Group {
    let (stroke, width, dash, side) = a.kind.style();
    let (x1, x2) = (x_of(a.from), x_of(a.to));
    let (y1, y2) = (top + y_of(a.from), top + y_of(a.to));
    // Leave and enter at the box's edge on the arrow's side; arcs of one side nest by `nth`.
    let edge = BOX_H / 2.0 * side;
    let lift = (30.0 + 18.0 * nth as f64) * side;
    let (sx, ex) = if a.from == a.to {
        (x1 - BOX_W / 4.0, x2 + BOX_W / 4.0)
    } else {
        (x1, x2)
    };
    let (d, cx, label_y, anchor) = if y1 < y2 {
        // Down to the station under the row: straight, labelled beside it.
        let (sy, ey) = (y1 + BOX_H / 2.0, y2 - BOX_H / 2.0);
        (
            format!("M {x1:.1} {sy:.1} L {x2:.1} {ey:.1}"),
            x1 + 8.0,
            f64::midpoint(sy, ey) + 4.0,
            "start",
        )
    } else {
        let (sy, ey) = (y1 + edge, y2 + edge);
        let (cx, cy) = (f64::midpoint(sx, ex), sy.min(ey) + lift * 1.6);
        let apex = (sy + 2.0 * cy + ey) / 4.0;
        (
            format!("M {sx:.1} {sy:.1} Q {cx:.1} {cy:.1} {ex:.1} {ey:.1}"),
            cx,
            apex + if side < 0.0 { -5.0 } else { 13.0 },
            "middle",
        )
    };
    Group::new()
        .set("class", format!("arrow {}", a.kind.class()))
        .set("data-from", a.from)
        .set("data-to", a.to)
        .set("data-path", a.path.as_str())
        .add(
            Path::new()
                .set("d", d)
                .set("fill", "none")
                .set("stroke", stroke)
                .set("stroke-width", width)
                .set("stroke-dasharray", dash)
                .set("marker-end", format!("url(#head-{})", a.kind.class())),
        )
        .add(
            Text::new(a.label.as_str())
                .set("x", cx)
                .set("y", label_y)
                .set("text-anchor", anchor)
                .set("font-size", 11)
                .set("fill", stroke),
        )
}

fn station_node(id: &str, name: &str, top: f64) -> Group {
    let (x, y) = (x_of(id), top + y_of(id));
    Group::new()
        .set("class", "station")
        .set("data-station", id)
        .add(
            Rectangle::new()
                .set("x", x - BOX_W / 2.0)
                .set("y", y - BOX_H / 2.0)
                .set("width", BOX_W)
                .set("height", BOX_H)
                .set("rx", 6)
                .set("fill", "#f4f4f4")
                .set("stroke", "#333333"),
        )
        .add(
            Text::new(name)
                .set("x", x)
                .set("y", y + 4.0)
                .set("text-anchor", "middle")
                .set("font-size", 12),
        )
}

/// Bytes per step as blocks and bytes, and the textbook's figure beside them.
fn amount(per_step: Option<f64>, block_size: u64, textbook: Option<f64>) -> String {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "display"
    )]
    let measured = per_step.map_or_else(
        || "n/a".to_owned(),
        |b| {
            format!(
                "{} ({}/step)",
                in_blocks(b, block_size),
                format_bytes(b.round() as u64)
            )
        },
    );
    match textbook {
        Some(t) => format!("{measured}, tb {t}"),
        None => measured,
    }
}

/// The textbook's CPU copies of a path for a method (the note names them per technique).
fn textbook_copy(r: &RunReport, method: Option<Method>, from: &str, to: &str) -> Option<f64> {
    let total = r.textbook.cpu_copies?;
    let named = match method? {
        Method::ReadWrite => {
            (from, to) == ("page-cache", "user-buffer")
                || (from, to) == ("user-buffer", "socket-buffer")
        }
        Method::MmapWrite | Method::Sendfile => (from, to) == ("page-cache", "socket-buffer"),
        _ => false,
    };
    Some(if named { total.min(1.0) } else { 0.0 })
}

/// The arrows of one run.
fn arrows(r: &RunReport) -> Vec<Arrow> {
    let method = Method::ALL.iter().copied().find(|m| m.name() == r.method);
    let per_step = |k: FigureId| r.figures.get(&k).and_then(|f| f.per_transfer);
    let dma_tb = r.textbook.dma_copies.map(|_| 1.0);
    let mut out = Vec::new();
    // The device's transfers into memory: into the user buffer with O_DIRECT.
    let into = if method == Some(Method::DirectIo) {
        "user-buffer"
    } else {
        "page-cache"
    };
    out.push(Arrow {
        from: "disk",
        to: into,
        kind: Kind::Dma,
        label: format!(
            "DMA {}",
            amount(per_step(FigureId::DiskReadBytes), r.block_size, dma_tb)
        ),
        path: "disk -> memory".to_owned(),
    });
    out.extend(copy_arrows(r, method));
    out.extend(reference_arrows(r));
    let nic = per_step(FigureId::NicDmaBytes);
    out.push(Arrow {
        from: "socket-buffer",
        to: "device",
        kind: Kind::Dma,
        label: format!("DMA {}", amount(nic, r.block_size, dma_tb)),
        path: "socket buffer -> device".to_owned(),
    });
    out.extend(receiver_arrows(r));
    out
}

/// The sender's CPU copies, one arrow per path of the ledger that counts.
fn copy_arrows(r: &RunReport, method: Option<Method>) -> Vec<Arrow> {
    r.copies
        .iter()
        .filter(|p| !p.contradicted && p.bytes > 0)
        .map(|p| {
            let (from, to) = (station(p.path.from), station(p.path.to));
            Arrow {
                from,
                to,
                kind: Kind::CpuCopy,
                label: format!(
                    "CPU copy {} {}",
                    p.short,
                    amount(
                        p.per_transfer,
                        r.block_size,
                        textbook_copy(r, method, from, to)
                    )
                ),
                path: p.path.to_string(),
            }
        })
        .collect()
}

/// Pages passed by reference: spliced into sockets, or mapped into the process.
fn reference_arrows(r: &RunReport) -> Vec<Arrow> {
    let spliced = r
        .figures
        .get(&FigureId::SocketSpliceBytes)
        .and_then(|f| f.per_transfer)
        .filter(|&b| b > 0.0);
    let mut out = Vec::new();
    if let Some(bytes) = spliced {
        out.push(Arrow {
            from: "page-cache",
            to: "socket-buffer",
            kind: Kind::PageRef,
            label: format!("page reference {}", amount(Some(bytes), r.block_size, None)),
            path: "page cache -> socket buffer (by reference)".to_owned(),
        });
    }
    if r.copies
        .iter()
        .any(|p| p.path.from == Station::MappedPageCache)
    {
        out.push(Arrow {
            from: "page-cache",
            to: "user-buffer",
            kind: Kind::PageRef,
            label: "mapped: the user buffer is the page cache".to_owned(),
            path: "page cache -> user buffer (mapping)".to_owned(),
        });
    }
    out
}

/// The network to the receiver, and the receiver's own copies.
fn receiver_arrows(r: &RunReport) -> Vec<Arrow> {
    let mut out = Vec::new();
    if !r.receiver_copies.is_empty() || !r.received.is_empty() {
        out.push(Arrow {
            from: "device",
            to: "receiver-socket",
            kind: Kind::Network,
            label: r.net.as_ref().map_or_else(
                || "network".to_owned(),
                |n| format!("{} ({})", n.kind, n.device),
            ),
            path: "device -> receiver".to_owned(),
        });
    }
    out.extend(r.receiver_copies.iter().map(|p| Arrow {
        from: "receiver-socket",
        to: "receiver-user",
        kind: Kind::CpuCopy,
        label: format!(
            "CPU copy (receiver) {}",
            amount(p.per_transfer, r.block_size, None)
        ),
        path: p.path.to_string(),
    }));
    out
}

/// The user/kernel timeline of one step: the mode switches as a line between the two levels,
/// the scheduler switches as dots on the kernel's.
fn timeline(r: &RunReport, top: f64) -> Group {
    let per_step = |k: FigureId| r.figures.get(&k).and_then(|f| f.per_transfer);
    let (user, kernel) = (top + 250.0, top + 280.0);
    let (x0, x1) = (80.0, 700.0);
    let mode = per_step(FigureId::ModeSwitches).unwrap_or(0.0);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a count of marks"
    )]
    let (n, dots) = (
        (mode.round() as usize).min(24),
        (per_step(FigureId::ContextSwitches).unwrap_or(0.0).round() as usize).min(24),
    );
    let points = mode_line(n, (x0, x1), (user, kernel));
    let mut g = Group::new()
        .set("class", "timeline")
        .add(
            Text::new("user")
                .set("x", 30)
                .set("y", user + 4.0)
                .set("font-size", 11),
        )
        .add(
            Text::new("kernel")
                .set("x", 30)
                .set("y", kernel + 4.0)
                .set("font-size", 11),
        )
        .add(
            Line::new()
                .set("x1", x0)
                .set("y1", kernel)
                .set("x2", x1)
                .set("y2", kernel)
                .set("stroke", "#cccccc"),
        )
        .add(
            Polyline::new()
                .set("points", points)
                .set("fill", "none")
                .set("stroke", "#333333")
                .set("stroke-width", 1.5),
        );
    for i in 0..dots {
        g = g.add(
            Circle::new()
                .set("cx", x0 + (x1 - x0) * (i as f64 + 0.5) / dots as f64)
                .set("cy", kernel)
                .set("r", 4)
                .set("fill", "#e67e22"),
        );
    }
    g.add(
        Text::new(timeline_caption(r, mode.round() > n as f64, n))
            .set("x", x0)
            .set("y", kernel + 22.0)
            .set("font-size", 11)
            .set("class", "switches"),
    )
}

/// The mode switches of one step as a line between the user and kernel levels (`ys`), `n`
/// crossings across `xs`.
#[expect(clippy::cast_precision_loss, reason = "a count of marks")]
fn mode_line(n: usize, (x0, x1): (f64, f64), (user, kernel): (f64, f64)) -> String {
    let step = (x1 - x0) / (n + 1) as f64;
    let mut points = vec![(x0, user)];
    let (mut level, mut in_kernel) = (user, false);
    for i in 1..=n {
        let x = x0 + step * i as f64;
        points.push((x, level));
        in_kernel = !in_kernel;
        level = if in_kernel { kernel } else { user };
        points.push((x, level));
    }
    points.push((x1, level));
    points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The timeline's caption: one step's switches and syscalls, with the textbook's.
fn timeline_caption(r: &RunReport, cut: bool, n: usize) -> String {
    let per_step = |k: FigureId| r.figures.get(&k).and_then(|f| f.per_transfer);
    let fmt = |k: FigureId| per_step(k).map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"));
    let tb = |v: Option<f64>| v.map_or_else(String::new, |t| format!(" (tb {t})"));
    format!(
        "one step: {} mode switches{} (line{}), {} scheduler switches ({} voluntary, {} \
         involuntary; dots), {} syscalls{}",
        fmt(FigureId::ModeSwitches),
        tb(r.textbook.mode_switches),
        if cut {
            format!(": the first {n}")
        } else {
            String::new()
        },
        fmt(FigureId::ContextSwitches),
        fmt(FigureId::ContextSwitchesVoluntary),
        fmt(FigureId::ContextSwitchesInvoluntary),
        fmt(FigureId::Syscalls),
        tb(r.textbook.syscalls)
    )
}

fn lane(r: &RunReport, top: f64) -> Group {
    let mut g = Group::new()
        .set("class", "lane")
        .set("data-row", row_label(r))
        .add(
            Text::new(format!(
                "{} ({} steps of {})",
                row_label(r),
                r.transfers,
                format_bytes(r.block_size)
            ))
            .set("x", 10)
            .set("y", top + 22.0)
            .set("font-size", 15)
            .set("font-weight", "bold"),
        );
    if !r.textbook.note.is_empty() {
        g = g.add(
            Text::new(format!("textbook: {}", r.textbook.note))
                .set("x", 10)
                .set("y", top + 40.0)
                .set("font-size", 11)
                .set("fill", "#555555"),
        );
    }
    let list = arrows(r);
    let mut stations: Vec<(&str, &str)> = STATIONS.to_vec();
    // A program's report has no receiver of zcprof's: nothing to draw apart.
    let receiver = !r.received.is_empty() || !r.receiver_copies.is_empty();
    if receiver {
        stations.extend(RECEIVER);
    }
    if list.iter().any(|a| a.from == OTHER.0 || a.to == OTHER.0) {
        stations.push(OTHER);
    }
    for (id, name) in stations {
        g = g.add(station_node(id, name, top));
    }
    if receiver {
        g = g
            .add(
                Line::new()
                    .set("x1", 860)
                    .set("y1", top + 50.0)
                    .set("x2", 860)
                    .set("y2", top + 220.0)
                    .set("stroke", "#999999")
                    .set("stroke-dasharray", "4 4"),
            )
            .add(
                Text::new("receiver, apart (the note counts the sender)")
                    .set("x", 1050)
                    .set("y", top + 215.0)
                    .set("text-anchor", "middle")
                    .set("font-size", 11)
                    .set("fill", "#555555"),
            );
    }
    // Arcs on one side nest: the nth arc on a side is lifted further.
    let (mut above, mut below) = (0, 0);
    for a in &list {
        let nth = if a.kind.style().3 < 0.0 {
            above += 1;
            above - 1
        } else {
            below += 1;
            below - 1
        };
        g = g.add(arrow_node(a, nth, top));
    }
    g.add(timeline(r, top))
}

fn marker(kind: Kind) -> Marker {
    Marker::new()
        .set("id", format!("head-{}", kind.class()))
        .set("viewBox", "0 0 10 10")
        .set("refX", 9)
        .set("refY", 5)
        .set("markerWidth", 7)
        .set("markerHeight", 7)
        .set("orient", "auto")
        .add(
            Path::new()
                .set("d", "M 0 0 L 10 5 L 0 10 z")
                .set("fill", kind.style().0),
        )
}

/// The picture of `runs`, one lane each, as an SVG document.
#[must_use]
pub fn svg(runs: &[RunReport]) -> String {
    let height = LANE * runs.len().max(1) as f64 + 40.0;
    let mut defs = Definitions::new();
    for kind in [Kind::Dma, Kind::CpuCopy, Kind::PageRef, Kind::Network] {
        defs = defs.add(marker(kind));
    }
    let mut doc = Document::new()
        .set("viewBox", (0, 0, WIDTH, height))
        .set("width", WIDTH)
        .set("height", height)
        .set("font-family", "sans-serif")
        .add(defs)
        .add(
            Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "white"),
        );
    for (i, r) in runs.iter().enumerate() {
        doc = doc.add(lane(r, LANE * i as f64));
    }
    doc = doc.add(
        Text::new(
            "blue: DMA by a device; red: CPU copy (copy ledger); green dashed: page reference, no \
             copy; figures in blocks per step, tb: the textbook's",
        )
        .set("x", 10)
        .set("y", height - 14.0)
        .set("font-size", 11),
    );
    doc.to_string()
}

#[cfg(test)]
#[path = "picture_tests.rs"]
mod tests;
