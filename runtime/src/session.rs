//! [`Session`]: runs a parsed [`Model`] in a caller-provided arena, whole sequences (`run`,
//! `invoke`) or one time step at a time (`step`, `invoke_step`).

use crate::error::Error;
use crate::exec::run_op;
use crate::format::{DType, TensorKind, ARENA_ALIGN};
use crate::model::{Model, TensorInfo};
use zerocopy::FromBytes;

/// An inference session: a model plus its arena. All memory is the caller's.
#[derive(Debug)]
pub struct Session<'m, 'a> {
    model: &'m Model<'m>,
    /// The 16-aligned part of the caller's buffer, exactly the plan's `arena_bytes` long.
    arena: &'a mut [u8],
    /// The recurrent ops' prepared operands ([`Model::prepared_bytes`]), 64-aligned, past the
    /// plan in the caller's buffer; empty when it has no room for them. (x86-64 only.)
    #[cfg(kinglet_prep)]
    pub(crate) prep: &'a [u8],
}

impl<'m, 'a> Session<'m, 'a> {
    /// Creates a session. `arena` must be at least [`Model::arena_bytes`] long (whatever its
    /// address: the session aligns its base to 16 inside it). The arena is zeroed and the
    /// recurrent state reset. With [`Model::prepared_bytes`] more, the session also prepares
    /// the recurrent ops' weights here, once, instead of at every call (same results).
    pub fn new(model: &'m Model<'m>, arena: &'a mut [u8]) -> Result<Self, Error> {
        let needed = model.arena_bytes();
        if arena.len() < needed {
            return Err(Error::ArenaTooSmall {
                needed,
                got: arena.len(),
            });
        }
        let got = arena.len();
        let pad = (ARENA_ALIGN - arena.as_ptr() as usize % ARENA_ALIGN) % ARENA_ALIGN;
        // `pad + plan_bytes ≤ arena_bytes ≤ got`: never `None`, but `get` keeps it panic-free.
        // Two forms: with prepared operands the buffer is split (the rest holds them); without,
        // the plain slice, which keeps the microcontroller builds' code as it was.
        #[cfg(kinglet_prep)]
        let mut s = {
            let (arena, rest) = arena
                .get_mut(pad..)
                .and_then(|a| a.split_at_mut_checked(model.plan_bytes()))
                .ok_or(Error::ArenaTooSmall { needed, got })?;
            arena.fill(0);
            let prep = prep_region(model, rest);
            crate::exec::prepare(model, prep);
            Session { model, arena, prep }
        };
        #[cfg(not(kinglet_prep))]
        let mut s = {
            let arena = arena
                .get_mut(pad..)
                .and_then(|a| a.get_mut(..model.plan_bytes()))
                .ok_or(Error::ArenaTooSmall { needed, got })?;
            arena.fill(0);
            Session { model, arena }
        };
        s.reset();
        Ok(s)
    }

    /// The prepared operands' bytes (none but on x86-64).
    pub(crate) fn prep(&self) -> &'a [u8] {
        #[cfg(kinglet_prep)]
        return self.prep;
        #[cfg(not(kinglet_prep))]
        return &[];
    }

    /// The model.
    pub fn model(&self) -> &'m Model<'m> {
        self.model
    }

    /// Resets the recurrent state: int8 state tensors to their zero point, others to 0.
    pub fn reset(&mut self) {
        for i in 0..self.model.n_tensors() {
            let Some(t) = self.model.tensor(i) else {
                continue;
            };
            if t.kind() != TensorKind::State {
                continue;
            }
            let fill = if t.dtype() == DType::I8 {
                t.zero_point() as i8 as u8
            } else {
                0
            };
            if let Some(b) = self.arena.get_mut(t.offset()..t.offset() + t.nbytes()) {
                b.fill(fill);
            }
        }
    }

    /// The arena bytes of an I/O tensor (its first `len` bytes, or all of it).
    fn io_range(
        t: Option<TensorInfo<'_>>,
        index: usize,
        len: Option<usize>,
    ) -> Result<(usize, usize), Error> {
        let t = t.ok_or(Error::NoSuchTensor { index })?;
        if t.dtype() != DType::I8 || t.kind() == TensorKind::Const {
            return Err(Error::BadIoTensor { index: t.index() });
        }
        let len = len.unwrap_or(t.nbytes()).min(t.nbytes());
        Ok((t.offset(), t.offset() + len))
    }

    fn io_mut(
        &mut self,
        t: Option<TensorInfo<'_>>,
        index: usize,
        len: Option<usize>,
    ) -> Result<&mut [i8], Error> {
        let (a, b) = Self::io_range(t, index, len)?;
        let bad = Error::BadIoTensor {
            index: t.map_or(index, |t| t.index()),
        };
        let bytes = self.arena.get_mut(a..b).ok_or(bad)?;
        <[i8]>::mut_from_bytes(bytes).map_err(|_| bad)
    }

    fn io_ref(
        &self,
        t: Option<TensorInfo<'_>>,
        index: usize,
        len: Option<usize>,
    ) -> Result<&[i8], Error> {
        let (a, b) = Self::io_range(t, index, len)?;
        let bad = Error::BadIoTensor {
            index: t.map_or(index, |t| t.index()),
        };
        let bytes = self.arena.get(a..b).ok_or(bad)?;
        <[i8]>::ref_from_bytes(bytes).map_err(|_| bad)
    }

    /// The whole of model input `i`, to fill before [`invoke`](Self::invoke).
    pub fn input_mut(&mut self, i: usize) -> Result<&mut [i8], Error> {
        self.io_mut(self.model.input(i), i, None)
    }

    /// Model output `i`, whole, as left by the last `invoke` / `invoke_step`.
    pub fn output(&self, i: usize) -> Result<&[i8], Error> {
        self.io_ref(self.model.output(i), i, None)
    }

    /// One time step of model input `i` (its first step slot; the whole input if it has no time
    /// axis), to fill before [`invoke_step`](Self::invoke_step).
    pub fn input_frame_mut(&mut self, i: usize) -> Result<&mut [i8], Error> {
        let t = self.model.input(i);
        let len = t.map(|t| t.step_bytes(self.model.seq_len()));
        self.io_mut(t, i, len)
    }

    /// One time step of model output `i` as left by the last `invoke_step` (the whole output
    /// if it has no time axis).
    pub fn output_frame(&self, i: usize) -> Result<&[i8], Error> {
        let t = self.model.output(i);
        let len = t.map(|t| t.step_bytes(self.model.seq_len()));
        self.io_ref(t, i, len)
    }

    /// Runs the whole model: resets the state, then every op with its full `steps`.
    pub fn invoke(&mut self) -> Result<(), Error> {
        self.reset();
        for i in 0..self.model.n_ops() {
            run_op(self.model, self.arena, self.prep(), i, false)?;
        }
        Ok(())
    }

    /// [`invoke`](Self::invoke), calling `after_op(i, arena)` after op `i` with the whole
    /// (aligned, plan-sized) arena, so a host tool can read every activation while it is live
    /// (the plan reuses memory, so after the run most are overwritten). Tensor `t` of the
    /// model is at `arena[t.offset()..t.offset() + t.nbytes()]`. Same results as `invoke`.
    pub fn invoke_observed(&mut self, mut after_op: impl FnMut(usize, &[u8])) -> Result<(), Error> {
        self.reset();
        for i in 0..self.model.n_ops() {
            run_op(self.model, self.arena, self.prep(), i, false)?;
            after_op(i, self.arena);
        }
        Ok(())
    }

    /// Runs one time step (streaming): ops flagged `PER_STEP` run with `steps = 1` on the first
    /// step slot of their tensors; the state carries over from the previous call.
    pub fn invoke_step(&mut self) -> Result<(), Error> {
        if !self.model.is_streamable() {
            return Err(Error::NotStreamable);
        }
        for i in 0..self.model.n_ops() {
            run_op(self.model, self.arena, self.prep(), i, true)?;
        }
        Ok(())
    }

    fn single_io(&self) -> Result<(TensorInfo<'m>, TensorInfo<'m>), Error> {
        let (ni, no) = (self.model.n_inputs(), self.model.n_outputs());
        match (ni, no, self.model.input(0), self.model.output(0)) {
            (1, 1, Some(x), Some(y)) => Ok((x, y)),
            _ => Err(Error::IoCount {
                inputs: ni,
                outputs: no,
            }),
        }
    }

    /// Single-input, single-output convenience: copies `input` into the model input, runs the
    /// whole model (state reset first) and copies the model output into `output`.
    pub fn run(&mut self, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
        let (x, y) = self.single_io()?;
        if input.len() != x.nbytes() {
            return Err(Error::InputLen {
                index: 0,
                expected: x.nbytes(),
                got: input.len(),
            });
        }
        if output.len() != y.nbytes() {
            return Err(Error::OutputLen {
                index: 0,
                expected: y.nbytes(),
                got: output.len(),
            });
        }
        copy_exact(self.input_mut(0)?, input)?;
        self.invoke()?;
        copy_exact(output, self.output(0)?)
    }

    /// Single-input, single-output streaming: `frame` is one time step of the input
    /// (`nbytes / seq_len` bytes, or the whole input if it has no time axis); `output` receives
    /// one step of a time-axis output, or the whole output if it has none. After
    /// [`reset`](Self::reset), `T` calls give exactly the bytes of [`run`](Self::run).
    pub fn step(&mut self, frame: &[i8], output: &mut [i8]) -> Result<(), Error> {
        if !self.model.is_streamable() {
            return Err(Error::NotStreamable);
        }
        let (x, y) = self.single_io()?;
        let t = self.model.seq_len();
        if frame.len() != x.step_bytes(t) {
            return Err(Error::InputLen {
                index: 0,
                expected: x.step_bytes(t),
                got: frame.len(),
            });
        }
        if output.len() != y.step_bytes(t) {
            return Err(Error::OutputLen {
                index: 0,
                expected: y.step_bytes(t),
                got: output.len(),
            });
        }
        copy_exact(self.input_frame_mut(0)?, frame)?;
        self.invoke_step()?;
        copy_exact(output, self.output_frame(0)?)
    }
}

/// The prepared operands' bytes in `rest` (the caller's buffer past the plan): the
/// [`Model::prepared_bytes`] less their alignment slack, from the first 64-aligned byte; empty
/// when `rest` is shorter or the model prepares nothing on this CPU.
#[cfg(kinglet_prep)]
fn prep_region<'a>(model: &Model<'_>, rest: &'a mut [u8]) -> &'a mut [u8] {
    let (align, want) = (crate::exec::PREP_ALIGN, model.prepared_bytes());
    let Some(len) = want.checked_sub(align).filter(|_| want > 0) else {
        return &mut [];
    };
    let pad = (align - rest.as_ptr() as usize % align) % align;
    rest.get_mut(pad..)
        .and_then(|r| r.get_mut(..len))
        .unwrap_or_default()
}

/// `dst.copy_from_slice(src)` without its length-mismatch panic: the callers have checked both
/// lengths against the same tensor, so the error is unreachable, but the optimizer cannot see
/// that through the arena lookups.
fn copy_exact(dst: &mut [i8], src: &[i8]) -> Result<(), Error> {
    if dst.len() != src.len() {
        return Err(Error::Arena { op: usize::MAX });
    }
    dst.copy_from_slice(src);
    Ok(())
}
