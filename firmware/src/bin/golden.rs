//! Golden hashes on the device: the models named at build time (`KINGLET_GOLDEN_MODELS`, names
//! of `runtime/tests/golden.txt`), each run on the golden input (`kinglet::golden`: SplitMix64
//! bytes from the seed, `Session::invoke`, FNV-1a 64 of every output) and compared with the
//! committed hash — the same file the host (x86 SIMD and reference) and aarch64 (QEMU) tests
//! check, so a match proves the device computes the same bytes. `golden.sh` runs every
//! committed model this way, in groups that fit each board's flash.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use kinglet::Model;
use kinglet_firmware::{self as fw, hprintln};

fw::handlers!();

mod set {
    include!(concat!(env!("OUT_DIR"), "/golden_models.rs"));
}

#[entry]
fn main() -> ! {
    static mut ARENA: fw::Aligned<[u8; set::ARENA_BYTES]> = fw::Aligned([0; set::ARENA_BYTES]);
    hprintln!(
        "golden on {}: {} models",
        fw::board::BOARD,
        set::MODELS.len()
    );
    let mut ok = !set::MODELS.is_empty();
    for &(name, bytes, seed, want) in set::MODELS {
        let model = fw::check(Model::parse(bytes), "model");
        let got = fw::check(
            kinglet::golden::hash_model(&model, &mut ARENA.0, seed),
            name,
        );
        let same = got == want;
        ok &= same;
        hprintln!(
            "golden {} {:016x} {}",
            name,
            got,
            if same { "OK" } else { "MISMATCH" }
        );
    }
    fw::exit(ok)
}
