//! Concatenation (`OP_CONCAT`): each input is `[rows, chunk_j]` (`rows = steps × outer`), the
//! output `[rows, Σ chunk_j]`, all in one quantization. Exact by construction.
//!
//! The kernel places one input at a time (`concat_part`), so a caller can borrow each input
//! separately from the arena.

/// Writes input `x [rows, chunk]` (bytes) into columns `col .. col + chunk` of
/// `y [rows, row_bytes]`. Returns without writing if the slices do not match.
pub fn concat_part(rows: usize, chunk: usize, col: usize, x: &[u8], y: &mut [u8]) {
    if rows == 0 || chunk == 0 || y.len() % rows != 0 {
        return;
    }
    let row_bytes = y.len() / rows;
    let ok = Some(x.len()) == rows.checked_mul(chunk)
        && col.checked_add(chunk).is_some_and(|e| e <= row_bytes);
    if !ok {
        return;
    }
    super::for_rows(x, chunk, y, row_bytes, |xr, yr| {
        if let Some(dst) = yr.get_mut(col..).and_then(|r| r.get_mut(..xr.len())) {
            dst.copy_from_slice(xr);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_interleaves_rows() {
        let mut y = [0u8; 10];
        concat_part(2, 2, 0, &[1, 2, 3, 4], &mut y);
        concat_part(2, 3, 2, &[5, 6, 7, 8, 9, 10], &mut y);
        assert_eq!(y, [1, 2, 5, 6, 7, 3, 4, 8, 9, 10]);
        // A part that does not fit writes nothing.
        let mut z = [0u8; 10];
        concat_part(2, 3, 3, &[5, 6, 7, 8, 9, 10], &mut z);
        assert_eq!(z, [0; 10]);
    }
}
