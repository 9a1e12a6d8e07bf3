//! `Model::parse` on arbitrary bytes: must return, never panic. Inputs with a bad CRC are
//! refused by the checksum before any structural check, so the target also tries the input
//! with its CRC recomputed (the fuzzer then explores the structural validation).
#![no_main]

use kinglet::Model;
use libfuzzer_sys::fuzz_target;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

fuzz_target!(|data: &[u8]| {
    let _ = Model::parse(data);
    if data.len() >= 64 {
        let mut b = data.to_vec();
        let mut d = CRC.digest();
        d.update(&b[..12]);
        d.update(&b[16..]);
        let c = d.finalize();
        b[12..16].copy_from_slice(&c.to_le_bytes());
        // Also make `file_len` agree with the buffer, or nearly everything is refused there.
        let len = b.len() as u32;
        b[8..12].copy_from_slice(&len.to_le_bytes());
        let mut d = CRC.digest();
        d.update(&b[..12]);
        d.update(&b[16..]);
        let c = d.finalize();
        b[12..16].copy_from_slice(&c.to_le_bytes());
        let _ = Model::parse(&b);
    }
});
