//! Compile-time kernel selection for targets without run-time CPU detection.
//!
//! Sets `cfg(kinglet_dsp)` (the Cortex-M DSP-extension `smlad` kernel) when the target has the
//! DSP extension:
//!
//! - every `thumbv7em-*` target (Armv7E-M: Cortex-M4 / M7, DSP is part of the architecture);
//! - `thumbv8m.main-*` when the build enables `dsp`: `-C target-feature=+dsp`, or a
//!   `-C target-cpu` whose LLVM definition includes DSP (cortex-m33, m35p, m52, m55, m85).
//!
//! Stable rustc does not report the (unstable) `dsp` feature in `CARGO_CFG_TARGET_FEATURE`,
//! so the flags are read from `CARGO_ENCODED_RUSTFLAGS` as well. `KINGLET_NO_DSP=1` in the
//! environment forces the reference kernel (e.g. for a Cortex-M33 built without DSP).

//!
//! With `kinglet_dsp` on Armv8-M it also sets `cfg(kinglet_v8m)`: the kernel's `global_asm!`
//! names the core (`.cpu`), which must match the architecture.
//!
//! Sets `cfg(kinglet_avx512)` when the compiler is at least 1.89, which stabilised the AVX-512
//! intrinsics of the VNNI kernel (the crate's MSRV is older), and with it, on x86-64,
//! `cfg(kinglet_prep)`: the sessions' prepared operands (`Model::prepared_bytes`), which no other
//! target keeps and which are compiled out there (not a byte or an instruction on a
//! microcontroller).

use std::env;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kinglet_dsp)");
    println!("cargo::rustc-check-cfg=cfg(kinglet_avx512)");
    println!("cargo::rustc-check-cfg=cfg(kinglet_v8m)");
    println!("cargo::rustc-check-cfg=cfg(kinglet_prep)");
    if rustc_minor().is_some_and(|m| m >= 89) {
        println!("cargo::rustc-cfg=kinglet_avx512");
        if env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64") {
            println!("cargo::rustc-cfg=kinglet_prep");
        }
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=KINGLET_NO_DSP");
    let target = env::var("TARGET").unwrap_or_default();
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let rustflags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let flags: Vec<&str> = rustflags.split('\x1f').collect();
    if target_has_dsp(&target, &features, &flags) && env::var_os("KINGLET_NO_DSP").is_none() {
        println!("cargo::rustc-cfg=kinglet_dsp");
        // The DSP kernel's module-level assembly names the core (see `kernels/dsp.rs`).
        if target.starts_with("thumbv8m") {
            println!("cargo::rustc-cfg=kinglet_v8m");
        }
    }
}

/// The minor version of the compiler cargo builds with (`1.<minor>.x`).
fn rustc_minor() -> Option<u32> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc).arg("-vV").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let release = text.lines().find_map(|l| l.strip_prefix("release: "))?;
    let mut parts = release.split('.');
    (parts.next()? == "1").then_some(())?;
    parts.next()?.parse().ok()
}

fn target_has_dsp(target: &str, features: &str, flags: &[&str]) -> bool {
    if target.starts_with("thumbv7em") {
        return true;
    }
    if !target.starts_with("thumbv8m.main") {
        return false;
    }
    if features.split(',').any(|f| f == "dsp") {
        return true;
    }
    // `-C target-feature=+a,-b` or `-Ctarget-feature=...`, possibly split across two args;
    // the last mention of `dsp` wins, as in rustc.
    let mut dsp = None;
    let mut cpu = None;
    let mut next_is_codegen = false;
    for f in flags {
        let opt = if next_is_codegen {
            next_is_codegen = false;
            *f
        } else if *f == "-C" || *f == "--codegen" {
            next_is_codegen = true;
            continue;
        } else if let Some(o) = f
            .strip_prefix("-C")
            .or_else(|| f.strip_prefix("--codegen="))
        {
            o
        } else {
            continue;
        };
        if let Some(list) = opt.strip_prefix("target-feature=") {
            for feat in list.split(',') {
                match feat {
                    "+dsp" => dsp = Some(true),
                    "-dsp" => dsp = Some(false),
                    _ => {}
                }
            }
        } else if let Some(c) = opt.strip_prefix("target-cpu=") {
            cpu = Some(c.to_string());
        }
    }
    let dsp_cpu = matches!(
        cpu.as_deref(),
        Some("cortex-m33" | "cortex-m35p" | "cortex-m52" | "cortex-m55" | "cortex-m85")
    );
    dsp.unwrap_or(dsp_cpu)
}
