//! Rebuilds the eBPF object when the linker changes; fails early with a hint when it is missing.
fn main() {
    match which::which("bpf-linker") {
        Ok(linker) => println!("cargo:rerun-if-changed={}", linker.display()),
        Err(err) => panic!("bpf-linker not found ({err}): run `cargo xtask setup`"),
    }
}
