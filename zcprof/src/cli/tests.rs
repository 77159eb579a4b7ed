use super::*;
use crate::{
    options::{Cache, Net, Workload},
    workload::Method,
};

fn parse_args(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("zcprof").chain(args.iter().copied()))
}

#[test]
fn run_defaults() {
    let cli = parse_args(&["run", "--method", "sendfile"]).unwrap();
    let Command::Run(run) = cli.command else {
        panic!("not run")
    };
    assert_eq!(run.method, Method::Sendfile);
    assert_eq!(run.workload.block_size, 64 << 10);
    assert_eq!(run.workload.size, None);
    assert_eq!(run.workload.format, Format::Table);
}

#[test]
fn every_method_name_parses() {
    for m in Method::ALL {
        let cli = parse_args(&["run", "--method", m.name()]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.method, m);
    }
}

#[test]
fn bad_input_is_one_line() {
    for args in [
        &["run", "--method", "carrier-pigeon"][..],
        &["run", "--method", "sendfile", "--size", "0"],
        &["run", "--method", "sendfile", "--size", "lots"],
        &["compare", "--block-size", "0"],
        // doctor prints checks, not rows of runs: no csv or markdown (issue 17 item 5).
        &["doctor", "--format", "csv"],
        &["doctor", "--format", "markdown"],
    ] {
        let err = parse_args(args).unwrap_err();
        let line = one_line(&err.render().to_string());
        assert!(
            !line.contains('\n') && line.starts_with("error:"),
            "{args:?}: {line}"
        );
    }
    let line = one_line(
        &parse_args(&["run", "--method", "nope"])
            .unwrap_err()
            .render()
            .to_string(),
    );
    assert!(
        line.contains("read-write") && line.contains("tee"),
        "{line}"
    );
}

fn compare_workload(args: &[&str]) -> Result<Workload, UsageError> {
    let cli = parse_args(args).unwrap();
    let Command::Compare(cmp) = cli.command else {
        panic!("not compare")
    };
    let methods = cmp.resolved_methods();
    cmp.workload.validate(methods, true)
}

#[test]
fn compare_keeps_the_notes_methods_and_all_adds_the_others() {
    let names = |w: Workload| -> Vec<&'static str> { w.methods.iter().map(|m| m.name()).collect() };
    let default = compare_workload(&["compare"]).unwrap();
    assert_eq!(
        names(default),
        [
            "read-write",
            "direct-io",
            "mmap-write",
            "sendfile",
            "splice",
            "tee"
        ]
    );
    let all = compare_workload(&["compare", "--methods", "all"]).unwrap();
    assert_eq!(all.methods, Method::ALL);
    let listed = compare_workload(&["compare", "--methods", "vmsplice,all,sendfile"]).unwrap();
    assert_eq!(listed.methods.len(), Method::ALL.len(), "each once");
    assert_eq!(listed.methods[0], Method::Vmsplice, "in the order given");
    let one = compare_workload(&["compare", "--methods", "msg-zerocopy"]).unwrap();
    assert_eq!(one.methods, [Method::MsgZerocopy]);
    let rings = compare_workload(&[
        "compare",
        "--methods",
        "io-uring,io-uring-splice,io-uring-send-zc",
    ])
    .unwrap();
    assert_eq!(
        rings.methods,
        [
            Method::IoUring,
            Method::IoUringSplice,
            Method::IoUringSendZc
        ]
    );
    assert!(Method::ALL.contains(&Method::IoUringSendZc));
    assert!(!Method::NOTE.contains(&Method::IoUring), "not by default");
}

#[test]
fn options_that_mean_nothing_for_a_method_are_refused() {
    for (args, flag) in [
        (
            &["compare", "--methods", "copy-file-range", "--net", "veth"][..],
            "--net veth",
        ),
        (
            &["compare", "--methods", "all", "--to", "192.0.2.7:9465"],
            "--to",
        ),
        (
            &[
                "compare",
                "--methods",
                "copy-file-range",
                "--net",
                "veth",
                "--sg",
                "off",
            ],
            "--net veth",
        ),
        (
            &["compare", "--methods", "vmsplice", "--cache", "cold"],
            "--cache cold",
        ),
        (
            &["compare", "--methods", "msg-zerocopy", "--cache", "cold"],
            "--cache cold",
        ),
        (
            &[
                "compare",
                "--methods",
                "io-uring-send-zc",
                "--cache",
                "cold",
            ],
            "--cache cold",
        ),
    ] {
        let err = compare_workload(args).unwrap_err();
        assert!(
            err.0.starts_with(flag) && !err.0.contains('\n') && !err.0.contains("  "),
            "{args:?}: {}",
            err.0
        );
    }
    assert!(
        compare_workload(&["compare", "--methods", "copy-file-range", "--cache", "cold"]).is_ok()
    );
    assert!(
        compare_workload(&[
            "compare",
            "--methods",
            "msg-zerocopy,vmsplice",
            "--net",
            "veth"
        ])
        .is_ok()
    );
    // io-uring and io-uring-splice read the file inside the window and send to a socket:
    // every option applies.
    assert!(
        compare_workload(&[
            "compare",
            "--methods",
            "io-uring,io-uring-splice",
            "--cache",
            "cold",
            "--net",
            "veth",
            "--sg",
            "off",
        ])
        .is_ok()
    );
    assert!(parse_args(&["compare", "--methods", "everything"]).is_err());
}

#[test]
fn sg_needs_veth() {
    let workload = |args: &[&str]| {
        let cli = parse_args(args).unwrap();
        let Command::Compare(cmp) = cli.command else {
            panic!("not compare")
        };
        let methods = cmp.resolved_methods();
        cmp.workload.validate(methods, true)
    };
    let err = workload(&["compare", "--sg", "off"]).unwrap_err();
    assert!(err.0.contains("--sg needs --net veth"), "{}", err.0);
    let w = workload(&["compare", "--net", "veth", "--methods", "sendfile"]).unwrap();
    assert_eq!(w.runs.len(), 2, "sendfile with SG off and on");
    let w = workload(&[
        "compare",
        "--net",
        "veth",
        "--sg",
        "off",
        "--methods",
        "sendfile",
    ])
    .unwrap();
    assert_eq!(w.runs.len(), 1);
    assert!(parse_args(&["run", "--method", "sendfile", "--net", "wifi"]).is_err());
}

#[test]
fn to_takes_a_host_and_port_and_refuses_veth() {
    let workload = |args: &[&str]| {
        let cli = parse_args(args)?;
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        Ok::<_, clap::Error>(run.workload.validate(vec![run.method], false))
    };
    for (given, meant) in [
        ("192.0.2.7:9000", "192.0.2.7:9000"),
        ("192.0.2.7", "192.0.2.7:9465"),
        ("[2001:db8::1]:9000", "[2001:db8::1]:9000"),
        ("2001:db8::1", "[2001:db8::1]:9465"),
        ("receiver.example:9000", "receiver.example:9000"),
        ("receiver", "receiver:9465"),
    ] {
        let w = workload(&["run", "--method", "sendfile", "--to", given])
            .unwrap()
            .unwrap();
        assert_eq!(w.to.as_deref(), Some(meant), "{given}");
        assert_eq!(w.runs[0].scatter_gather, None);
    }
    for bad in [
        "",
        ":9000",
        "host:",
        "host:0",
        "host:70000",
        "a b:1",
        "host:port",
    ] {
        assert!(
            workload(&["run", "--method", "sendfile", "--to", bad]).is_err(),
            "{bad:?}"
        );
    }
    for extra in [
        &["--net", "veth"][..],
        &["--sg", "on"],
        &["--net", "veth", "--sg", "off"],
    ] {
        let mut args = vec!["run", "--method", "sendfile", "--to", "192.0.2.7"];
        args.extend(extra);
        let err = workload(&args).unwrap().unwrap_err();
        assert!(
            err.0.starts_with("--to sends to a remote sink"),
            "{}",
            err.0
        );
    }
}

#[test]
fn sink_listens_on_this_host_by_default() {
    let Command::Sink { listen, runs, .. } = parse_args(&["sink"]).unwrap().command else {
        panic!("not sink")
    };
    assert_eq!(listen.to_string(), "127.0.0.1:9465");
    assert_eq!(runs, None);
    let Command::Sink { listen, runs, .. } =
        parse_args(&["sink", "--listen", "0.0.0.0:9000", "--runs", "3"])
            .unwrap()
            .command
    else {
        panic!("not sink")
    };
    assert_eq!(listen.to_string(), "0.0.0.0:9000");
    assert_eq!(runs, Some(3));
    for bad in [
        &["sink", "--listen", "localhost"][..],
        &["sink", "--listen", "0.0.0.0:99999"],
        &["sink", "--runs", "0"],
    ] {
        let line = one_line(&parse_args(bad).unwrap_err().render().to_string());
        assert!(
            line.starts_with("error:") && !line.contains('\n'),
            "{bad:?}: {line}"
        );
    }
}

/// Workload arguments as a bare `run` gives them: 1 MiB in 4 KiB blocks over loopback.
fn plain_args() -> WorkloadArgs {
    WorkloadArgs {
        size: Some(1 << 20),
        block_size: 4096,
        file: None,
        dir: None,
        cache: Cache::Warm,
        format: Format::Table,
        net: Net::Loopback,
        sg: None,
        to: None,
        token_file: None,
        repeat: 1,
        warmup: 0,
    }
}

#[test]
fn validation() {
    let w = |size: Option<u64>, block: u64, methods: Vec<Method>| {
        WorkloadArgs {
            size,
            block_size: block,
            ..plain_args()
        }
        .validate(methods, false)
    };
    assert!(
        w(Some(4096), 8192, vec![Method::Sendfile])
            .unwrap_err()
            .0
            .contains("larger than the file")
    );
    assert!(
        w(Some(1 << 20), 1000, vec![Method::DirectIo])
            .unwrap_err()
            .0
            .contains("multiple of 4096")
    );
    assert!(w(Some(1 << 20), 1000, vec![Method::Sendfile]).is_ok());
    let token_without_to = WorkloadArgs {
        token_file: Some("/etc/hostname".into()),
        ..plain_args()
    };
    assert!(
        token_without_to
            .validate(vec![Method::Sendfile], false)
            .unwrap_err()
            .0
            .contains("--token-file is for --to")
    );
    let args = WorkloadArgs {
        size: None,
        dir: Some("/nonexistent/zcprof".into()),
        ..plain_args()
    };
    assert!(
        args.validate(vec![Method::Splice], false)
            .unwrap_err()
            .0
            .contains("not a directory")
    );
}

/// The transfer child's interface is written once: what the parent puts in its argv, clap
/// parses back into the same options, with and without the optional ones.
#[test]
fn the_transfer_childs_options_round_trip_through_its_argv() {
    use crate::workload::transfer::TransferArgs;
    let bare = TransferArgs {
        method: Method::CopyFileRange,
        path: "/tmp/zcprof src".into(),
        size: 1 << 20,
        block_size: 65_536,
        addr: None,
        port: None,
        token: None,
        dest: Some("/tmp/dest".into()),
        report_fd: None,
    };
    let full = TransferArgs {
        method: Method::IoUringSendZc,
        addr: Some("10.77.0.2".parse().unwrap()),
        port: Some(40_123),
        token: Some("c0ffee".into()),
        dest: None,
        report_fd: Some(7),
        ..bare.clone()
    };
    for args in [bare, full] {
        let argv = args.to_argv();
        let parsed = Cli::try_parse_from(std::iter::once("zcprof".to_owned()).chain(argv))
            .unwrap()
            .command;
        let Command::Transfer(back) = parsed else {
            panic!("not the transfer subcommand: {parsed:?}");
        };
        assert_eq!(back, args);
    }
}
