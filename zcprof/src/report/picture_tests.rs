//! Tests of the data-path picture: well-formed SVG with the stations, one arrow per measured
//! path with its values as text, no CPU-copy arrow where nothing was copied, the timeline.
use super::*;
use crate::model::tests::{read_write_counts, report};

/// A lane: its row, its stations, its arrows as (kind, path, text).
type Lane = (String, Vec<String>, Vec<(String, String, String)>);

/// The lanes of a picture by row, and each lane's stations and arrows.
fn parse(text: &str) -> Vec<Lane> {
    let doc = roxmltree::Document::parse(text).expect("the SVG is well-formed XML");
    let class = |n: &roxmltree::Node, c: &str| {
        n.attribute("class")
            .is_some_and(|v| v.split(' ').any(|w| w == c))
    };
    doc.descendants()
        .filter(|n| class(n, "lane"))
        .map(|lane| {
            let stations = lane
                .descendants()
                .filter(|n| class(n, "station"))
                .map(|n| n.attribute("data-station").unwrap().to_owned())
                .collect();
            let arrows = lane
                .descendants()
                .filter(|n| class(n, "arrow"))
                .map(|n| {
                    let kind = n.attribute("class").unwrap().replace("arrow ", "");
                    let path = n.attribute("data-path").unwrap().to_owned();
                    let text: String = n
                        .descendants()
                        .filter(|t| t.has_tag_name("text"))
                        .filter_map(|t| t.text())
                        .collect();
                    (kind, path, text)
                })
                .collect();
            (
                lane.attribute("data-row").unwrap().to_owned(),
                stations,
                arrows,
            )
        })
        .collect()
}

#[test]
fn each_lane_has_the_stations_and_the_measured_arrows() {
    let rw = report(Method::ReadWrite, &read_write_counts(), true);
    let mut splice = report(Method::Splice, &read_write_counts(), true);
    // A run whose ledger holds no copy, as splice over loopback measures.
    splice.copies.clear();
    let lanes = parse(&svg(&[rw.clone(), splice]));
    assert_eq!(lanes.len(), 2);
    let (row, stations, arrows) = &lanes[0];
    assert_eq!(row, "read-write");
    for s in [
        "disk",
        "page-cache",
        "user-buffer",
        "socket-buffer",
        "device",
        "receiver-socket",
        "receiver-user",
    ] {
        assert!(stations.iter().any(|x| x == s), "{s} in {stations:?}");
    }
    let copies: Vec<_> = arrows.iter().filter(|a| a.0 == "cpu-copy").collect();
    // One arrow per ledger path, with its measured blocks and bytes per step as text, the
    // textbook's figure beside them.
    assert_eq!(copies.len(), rw.copies.len(), "{arrows:?}");
    let pc_user = copies
        .iter()
        .find(|a| a.1 == "page cache -> user buffer")
        .expect("the page cache -> user buffer copy");
    assert!(
        pc_user.2.contains("1.00 (64 KiB/step), tb 1"),
        "{pc_user:?}"
    );
    assert_eq!(
        arrows.iter().filter(|a| a.0 == "dma").count(),
        2,
        "{arrows:?}"
    );
    let (row, _, arrows) = &lanes[1];
    assert_eq!(row, "splice");
    assert!(
        !arrows.iter().any(|a| a.0 == "cpu-copy"),
        "zero CPU copies, yet a CPU-copy arrow: {arrows:?}"
    );
    assert!(arrows.iter().any(|a| a.0 == "dma"));
}

/// A program's report (exec, attach) has no receiver of zcprof's: nothing is drawn apart;
/// a copy into neither page cache nor socket goes to a station of its own.
#[test]
fn a_program_has_no_receiver_and_its_other_copies_a_station() {
    let mut r = report(Method::ReadWrite, &read_write_counts(), true);
    r.received.clear();
    r.receiver_copies.clear();
    let lanes = parse(&svg(&[r]));
    let (_, stations, arrows) = &lanes[0];
    assert!(
        !stations.iter().any(|s| s.starts_with("receiver")),
        "{stations:?}"
    );
    // The fake ledger's write went to "user buffer -> kernel".
    assert!(stations.iter().any(|s| s == "other"), "{stations:?}");
    assert!(
        arrows.iter().any(|a| a.1 == "user buffer -> kernel"),
        "{arrows:?}"
    );
}

#[test]
fn the_timeline_gives_the_switches_of_one_step() {
    let rw = report(Method::ReadWrite, &read_write_counts(), true);
    let text = svg(&[rw]);
    let doc = roxmltree::Document::parse(&text).unwrap();
    let switches = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("switches"))
        .and_then(|n| n.text())
        .expect("the switches caption");
    assert!(switches.contains("4.06 mode switches (tb 4)"), "{switches}");
    assert!(switches.contains("0.25 scheduler switches"), "{switches}");
    // Four mode switches: the line crosses between user and kernel four times.
    let points = doc
        .descendants()
        .find(|n| n.has_tag_name("polyline"))
        .and_then(|n| n.attribute("points"))
        .unwrap();
    assert_eq!(points.split(' ').count(), 2 + 2 * 4, "{points}");
}
