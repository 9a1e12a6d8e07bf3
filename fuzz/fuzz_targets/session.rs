//! Parse (with `file_len` and the CRC fixed up, as in `parse`), then `Session::new`, `invoke`,
//! `invoke_step`, `run` and `step` with inputs taken from the fuzz input. After a successful
//! parse every session call must succeed (docs/format.md): an `Err` is a bug too. A second
//! session with room for the prepared operands (`Model::prepared_bytes`, x86-64) must give the
//! same output bytes.
#![no_main]

use kinglet::{Model, Session};
use libfuzzer_sys::fuzz_target;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
const MAX_ARENA: usize = 16 << 20;

fn fixed(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 64 {
        return None;
    }
    let mut b = data.to_vec();
    let len = b.len() as u32;
    b[8..12].copy_from_slice(&len.to_le_bytes());
    let mut d = CRC.digest();
    d.update(&b[..12]);
    d.update(&b[16..]);
    let c = d.finalize();
    b[12..16].copy_from_slice(&c.to_le_bytes());
    Some(b)
}

fuzz_target!(|data: &[u8]| {
    let Some(b) = fixed(data) else { return };
    let Ok(m) = Model::parse(&b) else { return };
    let need = m.arena_bytes();
    if need > MAX_ARENA {
        return;
    }
    // Input values: the fuzz input itself, cycled (so mutations of weights and inputs mix).
    let mut src = data.iter().rev().cycle().map(|&v| v as i8);
    let mut arena = vec![0u8; need];
    let mut s = Session::new(&m, &mut arena).expect("Session::new on a parsed model");
    let mut inputs = Vec::new();
    for i in 0..m.n_inputs() {
        let x = s.input_mut(i).expect("input");
        for v in x.iter_mut() {
            *v = src.next().unwrap_or(0);
        }
        inputs.push(x.to_vec());
    }
    s.invoke().expect("invoke on a parsed model");
    if m.prepared_bytes() > 0 && need + m.prepared_bytes() <= MAX_ARENA {
        let mut arena2 = vec![0u8; need + m.prepared_bytes()];
        let mut p = Session::new(&m, &mut arena2).expect("Session::new, prepared");
        for (i, x) in inputs.iter().enumerate() {
            p.input_mut(i).expect("input").copy_from_slice(x);
        }
        p.invoke().expect("invoke, prepared");
        for i in 0..m.n_outputs() {
            assert_eq!(
                p.output(i).expect("output"),
                s.output(i).expect("output"),
                "output {i}: prepared operands change the result"
            );
        }
    }
    if m.is_streamable() {
        s.reset();
        for _ in 0..m.seq_len().min(4) {
            for i in 0..m.n_inputs() {
                for v in s.input_frame_mut(i).expect("frame").iter_mut() {
                    *v = src.next().unwrap_or(0);
                }
            }
            s.invoke_step().expect("invoke_step on a parsed model");
        }
    }
    if m.n_inputs() == 1 && m.n_outputs() == 1 {
        let (x, y) = (m.input(0).unwrap(), m.output(0).unwrap());
        let input: Vec<i8> = (0..x.nbytes()).map(|_| src.next().unwrap_or(0)).collect();
        let mut out = vec![0i8; y.nbytes()];
        s.run(&input, &mut out).expect("run on a parsed model");
        if m.is_streamable() {
            let t = m.seq_len();
            let mut fo = vec![0i8; y.step_bytes(t)];
            s.step(&input[..x.step_bytes(t)], &mut fo)
                .expect("step on a parsed model");
        }
    }
});
