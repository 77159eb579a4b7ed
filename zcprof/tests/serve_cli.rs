//! `zcprof serve`'s bad input as a user meets it, without root: a port in use, an unknown
//! cgroup, a bad name, no privileges: one line each, a non-zero exit, nothing left running.
use std::process::Command;

fn zcprof() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zcprof"))
}

/// Runs zcprof, expects failure with `code`, and returns its single stderr line.
fn fails(cmd: &mut Command, code: i32) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got: {stderr}");
    lines[0].to_owned()
}

#[test]
fn serve_on_a_port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let line = fails(zcprof().args(["serve", "--listen", &addr]), 1);
    assert_eq!(
        line,
        format!("zcprof: cannot listen on {addr}: address already in use (os error 98)")
    );
}

#[test]
fn serve_an_unknown_cgroup() {
    let line = fails(
        zcprof().args(["serve", "--cgroup", "system.slice/no-such-zcprof.service"]),
        2,
    );
    // Where /sys/fs/cgroup is not the v2 hierarchy, the line also says where that is.
    assert!(
        line.starts_with(
            "zcprof: --cgroup system.slice/no-such-zcprof.service: no such cgroup \
             (/sys/fs/cgroup/system.slice/no-such-zcprof.service does not exist"
        ),
        "{line}"
    );
    let line = fails(zcprof().args(["serve", "--cgroup", "/tmp"]), 2);
    assert!(line.contains("not in a cgroup v2 file system"), "{line}");
}

#[test]
fn serve_a_name_the_kernel_cannot_hold() {
    let line = fails(
        zcprof().args(["serve", "--comm", "a-name-of-twenty-bytes"]),
        2,
    );
    assert!(line.contains("longer than 15 bytes"), "{line}");
}

#[test]
fn serve_an_unknown_pid_and_a_bad_address() {
    // Beyond the kernel's largest pid_max (2^22).
    let line = fails(zcprof().args(["serve", "--pid", "4194305"]), 2);
    assert_eq!(line, "zcprof: --pid 4194305: no such process");
    let line = fails(zcprof().args(["serve", "--listen", "localhost"]), 2);
    assert!(line.contains("ADDR:PORT"), "{line}");
}

/// A web config that cannot be used is refused in one line, exit 2, before the port is bound
/// or privileges are looked at: a missing file, a setting zcprof does not implement (client
/// certificates must not quietly accept anyone), a password that is not a bcrypt hash, a
/// certificate file that is not there.
#[test]
fn serve_a_web_config_it_cannot_use() {
    let dir = std::env::temp_dir().join(format!("zcprof-webcfg-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let web = dir.join("web.yml");
    let missing = dir.join("missing.yml");
    let line = fails(
        zcprof().args(["serve", "--web.config.file"]).arg(&missing),
        2,
    );
    assert!(line.starts_with("zcprof: --web.config.file "), "{line}");
    assert!(line.contains("missing.yml"), "{line}");
    for (text, says) in [
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: RequireAndVerifyClientCert\n",
            "client_auth_type is not implemented",
        ),
        ("basic_auth_users:\n  alice: hunter2\n", "not a bcrypt hash"),
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n",
            "a.crt",
        ),
        ("tls_server_config: [\n", "web.yml"),
    ] {
        std::fs::write(&web, text).unwrap();
        let line = fails(zcprof().args(["serve", "--web.config.file"]).arg(&web), 2);
        assert!(line.contains(says), "{text}: {line}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Without privileges: one line naming what is missing, exit 1, and the port free again.
#[test]
fn serve_without_privileges() {
    let mut cmd = if nix::unistd::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_zcprof"));
        c
    } else {
        zcprof()
    };
    let line = fails(cmd.args(["serve", "--listen", "127.0.0.1:0"]), 1);
    assert!(line.contains("needs root"), "{line}");
}

/// `zcprof top`'s bad input: an interval too short to mean a rate, no intervals, an unknown
/// process, an unknown row kind: one line each, exit 2, before anything is loaded.
#[test]
fn top_refuses_bad_input_in_one_line() {
    let line = fails(zcprof().args(["top", "--interval", "10ms"]), 2);
    assert!(line.contains("shorter than 100ms"), "{line}");
    let line = fails(zcprof().args(["top", "--count", "0"]), 2);
    assert!(line.contains("--count"), "{line}");
    let line = fails(zcprof().args(["top", "--by", "nope"]), 2);
    assert!(
        line.contains("possible values: process, command, cgroup"),
        "{line}"
    );
    let line = fails(zcprof().args(["top", "--pid", "4194304"]), 2);
    assert_eq!(line, "zcprof: --pid 4194304: no such process");
}
