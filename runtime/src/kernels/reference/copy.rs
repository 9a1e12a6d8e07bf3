//! Byte-moving ops: the strided copy (`OP_COPY`: transpose, slice, gather) and `SELECT_LAST`.
//! Exact by construction (no arithmetic on values).
//!
//! COPY: for each step `s` and index `(i0, i1, i2, i3)` of the per-step output shape
//! `out_dims`, in row-major output order,
//! `y[s, i] = x[s · in_step + in_offset + Σ i_k · in_strides[k]]` (elements of `elem_size`
//! bytes). SELECT_LAST: `y = x[(steps - 1) · row ..][.. row]`.

/// Parameters of a strided copy (all in elements except `elem_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyParams {
    /// Steps processed.
    pub steps: usize,
    /// Bytes per element (1, 2 or 4).
    pub elem_size: usize,
    /// Input elements between steps.
    pub in_step: usize,
    /// First input element.
    pub in_offset: usize,
    /// Per-step output shape, outermost first.
    pub out_dims: [usize; 4],
    /// Input stride of each output axis.
    pub in_strides: [usize; 4],
}

impl CopyParams {
    /// Elements of `y` per step.
    pub fn out_len(&self) -> Option<usize> {
        self.out_dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    /// One past the largest input element index the copy reads, or `None` on overflow. 0 when
    /// the output is empty.
    pub fn in_extent(&self) -> Option<usize> {
        if self.steps == 0 || self.out_dims.contains(&0) {
            return Some(0);
        }
        let mut last = (self.steps - 1)
            .checked_mul(self.in_step)?
            .checked_add(self.in_offset)?;
        for (&d, &st) in self.out_dims.iter().zip(&self.in_strides) {
            last = last.checked_add((d - 1).checked_mul(st)?)?;
        }
        last.checked_add(1)
    }
}

/// Strided copy of `x` into `y` (byte slices). Returns without writing if the slices do not
/// match `p` (the output must be exactly `steps · Π out_dims` elements and every index read
/// must lie in `x`).
pub fn copy_strided(p: &CopyParams, x: &[u8], y: &mut [u8]) {
    let es = p.elem_size;
    let ok = es > 0
        && p.out_len()
            .and_then(|n| n.checked_mul(p.steps))
            .and_then(|n| n.checked_mul(es))
            == Some(y.len())
        && p.in_extent()
            .and_then(|n| n.checked_mul(es))
            .is_some_and(|n| n <= x.len());
    if !ok {
        return;
    }
    let [d0, d1, d2, d3] = p.out_dims;
    let [s0, s1, s2, s3] = p.in_strides;
    // Every index is below `in_extent` (checked above), so this arithmetic cannot overflow;
    // wrapping ops say so without a debug-build overflow check.
    let mut out = y.chunks_exact_mut(es);
    for s in 0..p.steps {
        let base = s.wrapping_mul(p.in_step).wrapping_add(p.in_offset);
        for i0 in 0..d0 {
            for i1 in 0..d1 {
                for i2 in 0..d2 {
                    let row = base
                        .wrapping_add(i0.wrapping_mul(s0))
                        .wrapping_add(i1.wrapping_mul(s1))
                        .wrapping_add(i2.wrapping_mul(s2));
                    for i3 in 0..d3 {
                        let src = row.wrapping_add(i3.wrapping_mul(s3)).wrapping_mul(es);
                        let v = x.get(src..).and_then(|r| r.get(..es)).unwrap_or(&[]);
                        if let Some(o) = out.next() {
                            for (d, &b) in o.iter_mut().zip(v) {
                                *d = b;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y = x[(steps - 1) · y.len() ..][.. y.len()]`. Returns without writing if `x` is not
/// `steps · y.len()` bytes.
pub fn select_last(steps: usize, x: &[u8], y: &mut [u8]) {
    let row = y.len();
    if steps == 0 || Some(x.len()) != steps.checked_mul(row) {
        return;
    }
    if let Some(last) = x.get((steps - 1) * row..).filter(|l| l.len() == row) {
        y.copy_from_slice(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn copy_transposes_and_slices() {
        // x [2, 3] (i16), transpose to [3, 2].
        let x: Vec<u8> = [0i16, 1, 2, 10, 11, 12]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let p = CopyParams {
            steps: 1,
            elem_size: 2,
            in_step: 0,
            in_offset: 0,
            out_dims: [1, 1, 3, 2],
            in_strides: [0, 0, 1, 3],
        };
        let mut y = [0u8; 12];
        copy_strided(&p, &x, &mut y);
        let got: Vec<i16> = y
            .chunks(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(got, [0, 10, 1, 11, 2, 12]);
        // Slice columns 1..3 of each row, two steps of one row each.
        let p = CopyParams {
            steps: 2,
            elem_size: 1,
            in_step: 3,
            in_offset: 1,
            out_dims: [1, 1, 1, 2],
            in_strides: [0, 0, 0, 1],
        };
        let mut y = [0u8; 4];
        copy_strided(&p, &[0, 1, 2, 3, 4, 5], &mut y);
        assert_eq!(y, [1, 2, 4, 5]);
        // Reading past the input writes nothing.
        let mut y = [9u8; 4];
        copy_strided(&p, &[0, 1, 2, 3, 4], &mut y);
        assert_eq!(y, [9; 4]);
    }

    #[test]
    fn select_last_picks_the_last_row() {
        let mut y = [0u8; 2];
        select_last(3, &[1, 2, 3, 4, 5, 6], &mut y);
        assert_eq!(y, [5, 6]);
        select_last(1, &[7, 8], &mut y);
        assert_eq!(y, [7, 8]);
    }
}
