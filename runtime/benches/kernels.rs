//! Matrix-vector throughput of every kernel level this CPU has, in MACs/s (criterion reports
//! "elements" per second; one element is one int8 multiply-accumulate).
//!
//! Shapes: 64×64, 256×256, and one recurrent step of a 64-unit cell on 40 inputs (the
//! keyword-spotting front-end's mel bands), with `W` and `R` stacked: LSTM `4H × (I + H)` =
//! 256×104 and GRU `3H × (I + H)` = 192×104; and two short products: the forecasters' one-column
//! input product (256×1) and a fixture-sized 64×7.
//!
//! `cargo bench -p kinglet --bench kernels`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kinglet::kernels::matvec::{matvec_i8_with, Isa};
use std::hint::black_box;

fn operands(rows: usize, cols: usize) -> (Vec<i8>, Vec<i8>) {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s as i8
    };
    let m = (0..rows * cols).map(|_| next()).collect();
    let v = (0..cols).map(|_| next()).collect();
    (m, v)
}

fn matvec(c: &mut Criterion) {
    let shapes = [
        ("64x64", 64, 64),
        ("256x256", 256, 256),
        ("lstm64_step_256x104", 256, 104),
        ("gru64_step_192x104", 192, 104),
        // The forecasters' one-column input product, and a fixture-sized short product.
        ("forecast_input_256x1", 256, 1),
        ("short_64x7", 64, 7),
    ];
    for (name, rows, cols) in shapes {
        let (m, v) = operands(rows, cols);
        let mut acc = vec![0i32; rows];
        let mut g = c.benchmark_group(format!("matvec_i8/{name}"));
        g.throughput(Throughput::Elements((rows * cols) as u64));
        for isa in Isa::ALL {
            if !isa.is_available() {
                eprintln!(
                    "matvec_i8/{name}: skipping {} (not on this CPU)",
                    isa.name()
                );
                continue;
            }
            g.bench_function(BenchmarkId::from_parameter(isa.name()), |b| {
                b.iter(|| {
                    matvec_i8_with(isa, black_box(&m), black_box(&v), &mut acc);
                    black_box(&acc);
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, matvec);
criterion_main!(benches);
