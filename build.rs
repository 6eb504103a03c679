//! Compiles the kernel fast path's BPF program (bpf/fastpath.bpf.c) with clang into
//! OUT_DIR, where `src/fastpath/program.rs` embeds it. No object file is checked in.
//!
//! Without clang the build still succeeds (the socket path needs no BPF): it embeds an
//! empty object and `FastPath::load` then fails with a reason naming clang.
//! `scripts/install-test-deps.sh` installs clang, so the tests always have the program.
use std::{env, path::PathBuf, process::Command};

fn main() {
    let src = "bpf/fastpath.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("fastpath.bpf.o");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // The BPF target has no <asm/...> of its own: take the host's (Debian's multiarch).
    let multiarch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(["-c", src, "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed on {src} ({s})"),
        Err(e) => {
            println!("cargo:warning=no BPF fast path: cannot run {clang} ({e})");
            std::fs::write(&out, b"").unwrap();
        }
    }
}
