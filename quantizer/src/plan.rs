//! Static memory plan: one offset in the arena for every buffer, decided once on the host.
//!
//! Greedy by size (the scheme of TFLM's greedy planner): buffers are placed largest first, each
//! at the lowest 16-aligned offset where it overlaps no already-placed buffer whose lifetime
//! overlaps its own. State buffers live for the whole program and are never shared.

use crate::quantize::QModel;
use kinglet::format::ARENA_ALIGN;

fn align(n: usize) -> usize {
    n.div_ceil(ARENA_ALIGN) * ARENA_ALIGN
}

/// Places every buffer of `m`; returns the arena bytes the plan needs.
pub fn plan(m: &mut QModel) -> usize {
    let n = m.buffers.len();
    let life = |i: usize, m: &QModel| -> (i64, i64) {
        let b = &m.buffers[i];
        if b.state || b.first > b.last {
            (i64::MIN, i64::MAX)
        } else {
            (b.first, b.last)
        }
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| m.buffers[b].size.cmp(&m.buffers[a].size).then(a.cmp(&b)));
    let mut placed: Vec<usize> = Vec::new();
    let mut total = 0usize;
    for &i in &order {
        let (f, l) = life(i, m);
        let size = align(m.buffers[i].size.max(1));
        // Intervals in use by buffers alive at the same time, sorted by offset.
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| {
                let (fj, lj) = life(j, m);
                fj <= l && f <= lj
            })
            .map(|&j| {
                (
                    m.buffers[j].offset,
                    m.buffers[j].offset + align(m.buffers[j].size.max(1)),
                )
            })
            .collect();
        busy.sort();
        let mut off = 0usize;
        for (s, e) in busy {
            if off + size <= s {
                break;
            }
            off = off.max(e);
        }
        m.buffers[i].offset = off;
        total = total.max(off + size);
        placed.push(i);
    }
    total
}

/// Bytes a naive plan (every buffer its own space) would need, for comparison in reports.
pub fn naive_bytes(m: &QModel) -> usize {
    m.buffers.iter().map(|b| align(b.size.max(1))).sum()
}
