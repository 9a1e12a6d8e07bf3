//! Op decoding and dispatch: turns an op entry into a kernel call.
//!
//! [`decode`] is the single place that knows each op's tensor list and parameter layout. It
//! checks counts, dtypes, kinds, byte sizes against the parameters, requantization ranges and
//! arena overlap, and produces the kernel parameters plus the arena regions to borrow. `parse`
//! runs it on every op once; the session runs it again per op (it is a handful of integer
//! checks), so that executing can never index out of bounds even in principle.
//!
//! [`carve`] hands out disjoint `&[u8]` / `&mut [u8]` regions of the one arena with
//! `split_at_mut`, no `unsafe`: reads may overlap each other, writes may overlap nothing.
//!
//! Some inputs may also be constants in the file ([`Src`]): ADD's `a` and `b`, CONCAT's
//! inputs and ATTENTION's `q`, `k`, `v` (the quantizer writes CLS tokens and positional
//! embeddings that way). A constant source takes an empty region in `carve` and in the overlap
//! check, and its bytes come straight from the file.

use crate::error::Error;
use crate::format::{
    unit16_kp, DType, TensorKind, ACT_TABLE_LEN, OP_ADD, OP_ATTENTION, OP_CONCAT, OP_COPY, OP_FC,
    OP_GRU, OP_LAYERNORM, OP_LSTM, OP_LUT8, OP_MEAN, OP_REQUANT, OP_RNN, OP_SELECT_LAST,
    OP_SOFTMAX, UNIT16_SCRATCH_PER_UNIT,
};
use crate::kernels::reference::{
    add::{add_i8, AddParams},
    attention::{attention_i8, AttentionParams, EXP2_LEN, MAX_DH, MAX_TK},
    concat::concat_part,
    copy::{copy_strided, select_last, CopyParams},
    fc::{fc_i8, FcParams},
    gru::{gru_i8, GruParams},
    layernorm::{self, layernorm_i8, LayerNormParams},
    lstm::{lstm_i8, LstmParams},
    lstm16::{lstm16_i8, Unit16Weights},
    lut::lut8_i8,
    mean::{self, mean_i8, MeanParams},
    requant::{requant_i8, RequantParams},
    rnn::{rnn_i8, RnnParams},
    softmax::{softmax_i8, SoftmaxParams},
    ActTable, ActTables, GateWeights,
};
use crate::model::{Model, OpInfo, TensorInfo};
use zerocopy::little_endian::{I16, I32, U16};
use zerocopy::FromBytes;

/// Longest dot product: `K · 128 · 128 < 2^31`.
const MAX_DOT: usize = 1 << 17;

/// An arena byte range: `len` bytes used by this run (a prefix in streaming mode), `full` bytes
/// of the tensor (for the overlap check).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region {
    pub off: usize,
    pub len: usize,
    pub full: usize,
}

impl Region {
    /// The region a constant source takes: empty, so it overlaps nothing (in [`carve`] and in
    /// the overlap check).
    const EMPTY: Region = Region {
        off: 0,
        len: 0,
        full: 0,
    };
}

/// A read operand: an arena tensor (activation or state), or a constant in the file.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Src<'a> {
    Arena(Region),
    Const(&'a [u8]),
}

impl<'a> Src<'a> {
    /// The arena region to borrow ([`Region::EMPTY`] for a constant).
    fn region(&self) -> Region {
        match self {
            Src::Arena(r) => *r,
            Src::Const(_) => Region::EMPTY,
        }
    }

    /// The operand's bytes: `carved` (what `carve` gave for [`region`](Self::region)) for an
    /// arena tensor, the file's bytes for a constant.
    fn pick<'b>(&self, carved: &'b [u8]) -> &'b [u8]
    where
        'a: 'b,
    {
        match self {
            Src::Arena(_) => carved,
            Src::Const(c) => c,
        }
    }
}

/// An LSTM's gate operands in the file's layout (`OP_FLAG_UNIT16` or not).
#[derive(Debug, Clone, Copy)]
pub(crate) enum LstmWeights<'a> {
    /// Row-major int8 (`docs/format.md`, LSTM).
    Int8(GateWeights<'a>),
    /// The unit16 layout (`docs/format.md`, "LSTM, unit16 layout").
    Unit16(Unit16Weights<'a>),
}

/// A decoded op, ready to run.
pub(crate) enum Exec<'a> {
    Fc {
        p: FcParams,
        x: Region,
        w: &'a [i8],
        bias: &'a [I32],
        rq: &'a [I32],
        y: Region,
    },
    Lstm {
        p: LstmParams,
        wt: LstmWeights<'a>,
        tabs: ActTables<'a>,
        x: Region,
        h: Region,
        c: Region,
        y: Region,
        scratch: Region,
    },
    Gru {
        p: GruParams,
        wt: GateWeights<'a>,
        tabs: ActTables<'a>,
        x: Region,
        h: Region,
        y: Region,
        scratch: Region,
        h16: Region,
    },
    Rnn {
        p: RnnParams,
        wt: GateWeights<'a>,
        tanh: &'a ActTable,
        x: Region,
        h: Region,
        y: Region,
    },
    Lut8 {
        table: &'a [i8; 256],
        x: Region,
        y: Region,
    },
    Add {
        p: AddParams,
        a: Src<'a>,
        b: Src<'a>,
        y: Region,
    },
    Softmax {
        p: SoftmaxParams,
        table: &'a [I32; 256],
        x: Region,
        y: Region,
    },
    Copy {
        p: CopyParams,
        x: Region,
        y: Region,
    },
    SelectLast {
        steps: usize,
        x: Region,
        y: Region,
    },
    Concat {
        rows: usize,
        elem: usize,
        inputs: &'a [U16],
        chunks: &'a [I32],
        y: Region,
    },
    Requant {
        p: RequantParams,
        x: Region,
        y: Region,
    },
    LayerNorm {
        p: LayerNormParams,
        gamma_rq: &'a [I32],
        beta: &'a [I32],
        x: Region,
        y: Region,
    },
    Attention {
        p: AttentionParams,
        exp2: &'a [I32; EXP2_LEN],
        q: Src<'a>,
        k: Src<'a>,
        v: Src<'a>,
        y: Region,
        scores: Region,
    },
    Mean {
        p: MeanParams,
        x: Region,
        y: Region,
    },
}

impl Exec<'_> {
    /// Calls `f` with every arena region the op writes (outputs, state, scratch), for the
    /// parse-time check that every model output is written by some op.
    pub(crate) fn for_each_write(&self, mut f: impl FnMut(Region)) {
        match self {
            Exec::Fc { y, .. }
            | Exec::Lut8 { y, .. }
            | Exec::Add { y, .. }
            | Exec::Softmax { y, .. }
            | Exec::Copy { y, .. }
            | Exec::SelectLast { y, .. }
            | Exec::Concat { y, .. }
            | Exec::Requant { y, .. }
            | Exec::LayerNorm { y, .. }
            | Exec::Mean { y, .. } => f(*y),
            Exec::Lstm {
                h, c, y, scratch, ..
            } => [h, c, y, scratch].into_iter().for_each(|r| f(*r)),
            Exec::Gru {
                h, y, scratch, h16, ..
            } => [h, y, scratch, h16].into_iter().for_each(|r| f(*r)),
            Exec::Rnn { h, y, .. } => [h, y].into_iter().for_each(|r| f(*r)),
            Exec::Attention { y, scores, .. } => [y, scores].into_iter().for_each(|r| f(*r)),
        }
    }
}

const READ: &[TensorKind] = &[TensorKind::Activation, TensorKind::State];
const WRITE: &[TensorKind] = &[TensorKind::Activation];
const STATE: &[TensorKind] = &[TensorKind::State];

struct Ctx<'m, 'a> {
    m: &'m Model<'a>,
    op: OpInfo<'a>,
    streaming: bool,
    /// Whether to check the values inside constant tensors (requantization pairs, ATTENTION's
    /// `exp2` table): on parse, not on every run ([`Decode`]).
    contents: bool,
}

/// What [`decode`] checks: everything (`Model::parse`), or everything that depends on the call
/// (`run_op`: the shapes for streaming, the arena regions), not the values inside constant
/// tensors again. Those are the file's bytes, which `Model::parse` checked and the `Model`
/// borrows immutably for as long as it lives, so they are the values parse saw. Re-checking
/// them cost every inference a pass over every requantization pair (about 4 % of a kws hop on
/// Cortex-M4, 1 % of an mnist_lstm inference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decode {
    /// `Model::parse`: every check.
    Parse,
    /// A run of an op of a parsed model.
    Run,
}

impl<'a> Ctx<'_, 'a> {
    fn bad(&self, what: &'static str) -> Error {
        Error::BadOp {
            op: self.op.index(),
            what,
        }
    }

    fn counts(&self, tensors: usize, params: usize) -> Result<(), Error> {
        if self.op.n_tensors() != tensors {
            return Err(self.bad("wrong number of tensors"));
        }
        if self.op.n_params() != params {
            return Err(self.bad("wrong number of parameters"));
        }
        Ok(())
    }

    fn p(&self, i: usize) -> i32 {
        self.op.param(i).unwrap_or(0)
    }

    /// Parameter `i` as a size `≥ 1`.
    fn size(&self, i: usize, what: &'static str) -> Result<usize, Error> {
        match usize::try_from(self.p(i)) {
            Ok(v) if v >= 1 => Ok(v),
            _ => Err(self.bad(what)),
        }
    }

    /// Parameter `i` as a dot-product length in `[1, 2^17)`.
    fn size_dot(&self, i: usize, what: &'static str) -> Result<usize, Error> {
        let v = self.size(i, what)?;
        if v >= MAX_DOT {
            return Err(self.bad(what));
        }
        Ok(v)
    }

    /// Parameter `i` as a non-negative count (0 allowed).
    fn count(&self, i: usize, what: &'static str) -> Result<usize, Error> {
        usize::try_from(self.p(i)).map_err(|_| self.bad(what))
    }

    fn zp(&self, i: usize) -> Result<i32, Error> {
        let v = self.p(i);
        if !(-128..=127).contains(&v) {
            return Err(self.bad("zero point outside [-128, 127]"));
        }
        Ok(v)
    }

    fn flag(&self, i: usize, what: &'static str) -> Result<bool, Error> {
        match self.p(i) {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.bad(what)),
        }
    }

    fn act_range(&self, i: usize) -> Result<(i32, i32), Error> {
        let (lo, hi) = (self.p(i), self.p(i + 1));
        if !(-128 <= lo && lo <= hi && hi <= 127) {
            return Err(self.bad("activation range outside [-128, 127] or empty"));
        }
        Ok((lo, hi))
    }

    fn pair(&self, i: usize) -> Result<(i32, i32), Error> {
        let (m, s) = (self.p(i), self.p(i + 1));
        if m < 0 || !(-30..=31).contains(&s) {
            return Err(self.bad("requantization pair out of range"));
        }
        Ok((m, s))
    }

    /// `(steps in the file, steps this run)`.
    fn steps(&self) -> Result<(usize, usize), Error> {
        let steps = self.size(0, "steps must be ≥ 1")?;
        let run = if self.streaming && self.op.per_step() {
            1
        } else {
            steps
        };
        Ok((steps, run))
    }

    fn mul(&self, a: usize, b: usize) -> Result<usize, Error> {
        a.checked_mul(b).ok_or(self.bad("size overflow"))
    }

    fn tensor(&self, slot: usize) -> Result<TensorInfo<'a>, Error> {
        self.op
            .tensor(slot)
            .and_then(|t| self.m.tensor(t))
            .ok_or(self.bad("tensor index out of range"))
    }

    /// An arena tensor of `dtype`, one of `kinds`, exactly `nbytes` bytes, of which this run
    /// uses the first `run` bytes.
    fn arena(
        &self,
        slot: usize,
        dtype: DType,
        kinds: &[TensorKind],
        nbytes: usize,
        run: usize,
        what: &'static str,
    ) -> Result<Region, Error> {
        let t = self.tensor(slot)?;
        if t.dtype() != dtype || !kinds.contains(&t.kind()) || t.nbytes() != nbytes || run > nbytes
        {
            return Err(self.bad(what));
        }
        Ok(Region {
            off: t.offset(),
            len: run,
            full: nbytes,
        })
    }

    /// A read operand of `dtype`, exactly `nbytes` bytes, of which this run uses the first
    /// `run`: an arena tensor (activation or state) or a constant in the file.
    fn source(
        &self,
        slot: usize,
        dtype: DType,
        nbytes: usize,
        run: usize,
        what: &'static str,
    ) -> Result<Src<'a>, Error> {
        let t = self.tensor(slot)?;
        if t.kind() != TensorKind::Const {
            return self
                .arena(slot, dtype, READ, nbytes, run, what)
                .map(Src::Arena);
        }
        if t.dtype() != dtype || t.nbytes() != nbytes || run > nbytes {
            return Err(self.bad(what));
        }
        let bytes = self.m.const_data(&t).ok_or(self.bad(what))?;
        bytes.get(..run).map(Src::Const).ok_or(self.bad(what))
    }

    fn konst(
        &self,
        slot: usize,
        dtype: DType,
        elems: usize,
        what: &'static str,
    ) -> Result<&'a [u8], Error> {
        let t = self.tensor(slot)?;
        if t.dtype() != dtype
            || t.kind() != TensorKind::Const
            || Some(t.nbytes()) != elems.checked_mul(dtype.size())
        {
            return Err(self.bad(what));
        }
        self.m.const_data(&t).ok_or(self.bad(what))
    }

    fn konst_i8(&self, slot: usize, elems: usize, what: &'static str) -> Result<&'a [i8], Error> {
        let b = self.konst(slot, DType::I8, elems, what)?;
        <[i8]>::ref_from_bytes(b).map_err(|_| self.bad(what))
    }

    fn konst_i32(&self, slot: usize, elems: usize, what: &'static str) -> Result<&'a [I32], Error> {
        let b = self.konst(slot, DType::I32, elems, what)?;
        <[I32]>::ref_from_bytes(b).map_err(|_| self.bad(what))
    }

    /// `[n, 2]` requantization pairs, each with `mult ∈ [0, 2^31)` and `shift ∈ [-30, 31]`.
    fn konst_rq(&self, slot: usize, n: usize, what: &'static str) -> Result<&'a [I32], Error> {
        self.konst_pairs(slot, n, 0, what)
    }

    /// `[n, 2]` requantization pairs with `mult ∈ [min_mult, 2^31)` and `shift ∈ [-30, 31]`.
    fn konst_pairs(
        &self,
        slot: usize,
        n: usize,
        min_mult: i32,
        what: &'static str,
    ) -> Result<&'a [I32], Error> {
        let pairs = self.konst_i32(slot, self.mul(n, 2)?, what)?;
        if !self.contents {
            return Ok(pairs);
        }
        for p in pairs.chunks_exact(2) {
            if p[0].get() < min_mult || !(-30..=31).contains(&p[1].get()) {
                return Err(self.bad("requantization pair out of range"));
            }
        }
        Ok(pairs)
    }

    /// Parameter `i` as a size in `[1, max]`.
    fn size_max(&self, i: usize, max: usize, what: &'static str) -> Result<usize, Error> {
        let v = self.size(i, what)?;
        if v > max {
            return Err(self.bad(what));
        }
        Ok(v)
    }

    fn table16(&self, slot: usize, what: &'static str) -> Result<&'a ActTable, Error> {
        let b = self.konst(slot, DType::I16, ACT_TABLE_LEN, what)?;
        <ActTable>::ref_from_bytes(b).map_err(|_| self.bad(what))
    }

    /// Writes must not overlap each other or any read (a state tensor is only listed as a
    /// write: its op reads and writes it, which is its purpose).
    fn disjoint(&self, writes: &[Region], reads: &[Region]) -> Result<(), Error> {
        let hit = |a: &Region, b: &Region| a.off < b.off + b.full && b.off < a.off + a.full;
        let mut rest = writes;
        while let Some((w, later)) = rest.split_first() {
            if reads.iter().any(|r| hit(w, r)) {
                return Err(self.bad("an output overlaps an input in the arena"));
            }
            if later.iter().any(|v| hit(w, v)) {
                return Err(self.bad("two outputs overlap in the arena"));
            }
            rest = later;
        }
        Ok(())
    }

    fn gate_weights(
        &self,
        gates: usize,
        input: usize,
        hidden: usize,
    ) -> Result<GateWeights<'a>, Error> {
        let gh = self.mul(gates, hidden)?;
        Ok(GateWeights {
            w: self.konst_i8(1, self.mul(gh, input)?, "w must be int8 constant [G·H, I]")?,
            r: self.konst_i8(2, self.mul(gh, hidden)?, "r must be int8 constant [G·H, H]")?,
            bias_x: self.konst_i32(3, gh, "bias_x must be int32 constant [G·H]")?,
            bias_h: self.konst_i32(4, gh, "bias_h must be int32 constant [G·H]")?,
            rq_x: self.konst_rq(5, gh, "rq_x must be int32 constant [G·H, 2]")?,
            rq_h: self.konst_rq(6, gh, "rq_h must be int32 constant [G·H, 2]")?,
            #[cfg(kinglet_prep)]
            prep: None,
        })
    }

    /// A unit16 LSTM's gate operands (`format::OP_FLAG_UNIT16`): int16 `w [4H, Kp(I)]` and
    /// `r [4H, Kp(H)]`, the rest as in the int8 layout (their row order is not visible here).
    fn unit16_weights(&self, input: usize, hidden: usize) -> Result<Unit16Weights<'a>, Error> {
        let g = self.mul(4, hidden)?;
        let w16 = |slot, k, what| {
            let b = self.konst(slot, DType::I16, self.mul(g, unit16_kp(k))?, what)?;
            <[I16]>::ref_from_bytes(b).map_err(|_| self.bad(what))
        };
        Ok(Unit16Weights {
            w: w16(1, input, "unit16 w must be int16 constant [4H, Kp(I)]")?,
            r: w16(2, hidden, "unit16 r must be int16 constant [4H, Kp(H)]")?,
            bias_x: self.konst_i32(3, g, "bias_x must be int32 constant [G·H]")?,
            bias_h: self.konst_i32(4, g, "bias_h must be int32 constant [G·H]")?,
            rq_x: self.konst_rq(5, g, "rq_x must be int32 constant [G·H, 2]")?,
            rq_h: self.konst_rq(6, g, "rq_h must be int32 constant [G·H, 2]")?,
        })
    }

    /// The common recurrent prefix: `(steps, run, input, hidden, reverse, h_zp)` and `x`, `y`
    /// regions (`y` in tensor slot `y_slot`).
    #[allow(clippy::type_complexity)]
    fn recurrent(
        &self,
        y_slot: usize,
    ) -> Result<(usize, usize, usize, usize, bool, i32, Region, Region), Error> {
        let (steps, run) = self.steps()?;
        let input = self.size_dot(1, "input size must be in [1, 2^17)")?;
        let hidden = self.size_dot(2, "hidden size must be in [1, 2^17)")?;
        let reverse = self.flag(3, "reverse must be 0 or 1")?;
        let h_zp = self.zp(4)?;
        let x = self.arena(
            0,
            DType::I8,
            READ,
            self.mul(steps, input)?,
            self.mul(run, input)?,
            "x must be int8 [steps, input]",
        )?;
        let y = self.arena(
            y_slot,
            DType::I8,
            WRITE,
            self.mul(steps, hidden)?,
            self.mul(run, hidden)?,
            "y must be an int8 activation [steps, hidden]",
        )?;
        Ok((steps, run, input, hidden, reverse, h_zp, x, y))
    }

    fn h_state(&self, slot: usize, hidden: usize, h_zp: i32) -> Result<Region, Error> {
        let h = self.arena(
            slot,
            DType::I8,
            STATE,
            hidden,
            hidden,
            "h must be int8 state [hidden]",
        )?;
        if self.tensor(slot)?.zero_point() != h_zp {
            return Err(self.bad("h state's zero point differs from h_zp"));
        }
        Ok(h)
    }
}

/// Decodes and validates op `i` of `m`. `streaming`: the op runs as part of `step` (ops with
/// `PER_STEP` get `steps = 1`). Sizes are always checked against the file's `steps`; `mode`
/// says whether the values inside constant tensors are checked too ([`Decode`]).
pub(crate) fn decode<'a>(
    m: &Model<'a>,
    i: usize,
    streaming: bool,
    mode: Decode,
) -> Result<Exec<'a>, Error> {
    let op = m.op(i).ok_or(Error::BadOp {
        op: i,
        what: "op entry out of range",
    })?;
    let c = Ctx {
        m,
        op,
        streaming,
        contents: mode == Decode::Parse,
    };
    match op.opcode() {
        OP_FC => {
            c.counts(5, 7)?;
            let (steps, run) = c.steps()?;
            let rows_ps = c.size(1, "rows_per_step must be ≥ 1")?;
            let k = c.size_dot(2, "k must be in [1, 2^17)")?;
            let n = c.size(3, "n must be ≥ 1")?;
            let y_zp = c.zp(4)?;
            let (act_min, act_max) = c.act_range(5)?;
            let (rows, rows_run) = (c.mul(steps, rows_ps)?, c.mul(run, rows_ps)?);
            let x = c.arena(
                0,
                DType::I8,
                READ,
                c.mul(rows, k)?,
                c.mul(rows_run, k)?,
                "FC x must be int8 [steps·rows, k]",
            )?;
            let w = c.konst_i8(1, c.mul(n, k)?, "FC w must be int8 constant [n, k]")?;
            let bias = c.konst_i32(2, n, "FC bias must be int32 constant [n]")?;
            let rq = c.konst_rq(3, n, "FC rq must be int32 constant [n, 2]")?;
            let y = c.arena(
                4,
                DType::I8,
                WRITE,
                c.mul(rows, n)?,
                c.mul(rows_run, n)?,
                "FC y must be an int8 activation [steps·rows, n]",
            )?;
            c.disjoint(&[y], &[x])?;
            let p = FcParams {
                rows: rows_run,
                k,
                n,
                y_zp,
                act_min,
                act_max,
            };
            Ok(Exec::Fc {
                p,
                x,
                w,
                bias,
                rq,
                y,
            })
        }
        OP_LSTM => {
            c.counts(13, 8)?;
            let (_, run, input, hidden, reverse, h_zp, x, y) = c.recurrent(11)?;
            let cell_exp = c.p(5);
            if !(0..=15).contains(&cell_exp) {
                return Err(c.bad("cell_exp outside [0, 15]"));
            }
            let (hq_mult, hq_shift) = c.pair(6)?;
            let unit16 = c.op.unit16();
            // The weights are decoded last, into the variant: one layout's operands at a time
            // in this frame (decode's frame is part of every op's stack peak).
            let tabs = ActTables {
                sig: c.table16(7, "sigmoid must be an int16 constant [513]")?,
                tanh: c.table16(8, "tanh must be an int16 constant [513]")?,
            };
            let h = c.h_state(9, hidden, h_zp)?;
            let cb = c.mul(hidden, 2)?;
            let cs = c.arena(
                10,
                DType::I16,
                STATE,
                cb,
                cb,
                "c must be int16 state [hidden]",
            )?;
            let per_unit = if unit16 { UNIT16_SCRATCH_PER_UNIT } else { 4 };
            let sb = c.mul(hidden, 2 * per_unit)?;
            let scratch = c.arena(
                12,
                DType::I16,
                WRITE,
                sb,
                sb,
                "scratch must be an int16 activation [4·hidden] ([48·hidden] for unit16)",
            )?;
            c.disjoint(&[h, cs, y, scratch], &[x])?;
            let p = LstmParams {
                steps: run,
                input,
                hidden,
                reverse,
                h_zp,
                cell_exp: cell_exp as u32,
                hq_mult,
                hq_shift,
            };
            let wt = if unit16 {
                LstmWeights::Unit16(c.unit16_weights(input, hidden)?)
            } else {
                LstmWeights::Int8(c.gate_weights(4, input, hidden)?)
            };
            Ok(Exec::Lstm {
                p,
                wt,
                tabs,
                x,
                h,
                c: cs,
                y,
                scratch,
            })
        }
        OP_GRU => {
            c.counts(13, 9)?;
            let (_, run, input, hidden, reverse, h_zp, x, y) = c.recurrent(10)?;
            let (hin_mult, hin_shift) = c.pair(5)?;
            let (hq_mult, hq_shift) = c.pair(7)?;
            let wt = c.gate_weights(3, input, hidden)?;
            let tabs = ActTables {
                sig: c.table16(7, "sigmoid must be an int16 constant [513]")?,
                tanh: c.table16(8, "tanh must be an int16 constant [513]")?,
            };
            let h = c.h_state(9, hidden, h_zp)?;
            let sb = c.mul(hidden, 12)?;
            let scratch = c.arena(
                11,
                DType::I16,
                WRITE,
                sb,
                sb,
                "scratch must be an int16 activation [6·hidden]",
            )?;
            let hb = c.mul(hidden, 2)?;
            let h16 = c.arena(
                12,
                DType::I16,
                STATE,
                hb,
                hb,
                "h16 must be int16 state [hidden]",
            )?;
            c.disjoint(&[h, y, scratch, h16], &[x])?;
            let p = GruParams {
                steps: run,
                input,
                hidden,
                reverse,
                h_zp,
                hin_mult,
                hin_shift,
                hq_mult,
                hq_shift,
            };
            Ok(Exec::Gru {
                p,
                wt,
                tabs,
                x,
                h,
                y,
                scratch,
                h16,
            })
        }
        OP_RNN => {
            c.counts(10, 8)?;
            let (_, run, input, hidden, reverse, h_zp, x, y) = c.recurrent(9)?;
            let (hq_mult, hq_shift) = c.pair(5)?;
            let relu = c.flag(7, "act must be 0 (tanh) or 1 (relu)")?;
            let wt = c.gate_weights(1, input, hidden)?;
            let tanh = c.table16(7, "tanh must be an int16 constant [513]")?;
            let h = c.h_state(8, hidden, h_zp)?;
            c.disjoint(&[h, y], &[x])?;
            let p = RnnParams {
                steps: run,
                input,
                hidden,
                reverse,
                h_zp,
                hq_mult,
                hq_shift,
                relu,
            };
            Ok(Exec::Rnn {
                p,
                wt,
                tanh,
                x,
                h,
                y,
            })
        }
        OP_LUT8 => {
            c.counts(3, 2)?;
            let (steps, run) = c.steps()?;
            let len = c.size(1, "len_per_step must be ≥ 1")?;
            let x = c.arena(
                0,
                DType::I8,
                READ,
                c.mul(steps, len)?,
                c.mul(run, len)?,
                "LUT8 x must be int8 [steps, len]",
            )?;
            let tb = c.konst_i8(1, 256, "LUT8 table must be an int8 constant [256]")?;
            let table = <&[i8; 256]>::try_from(tb).map_err(|_| c.bad("LUT8 table"))?;
            let y = c.arena(
                2,
                DType::I8,
                WRITE,
                c.mul(steps, len)?,
                c.mul(run, len)?,
                "LUT8 y must be an int8 activation [steps, len]",
            )?;
            c.disjoint(&[y], &[x])?;
            Ok(Exec::Lut8 { table, x, y })
        }
        OP_ADD => {
            c.counts(3, 11)?;
            let (steps, run) = c.steps()?;
            let len = c.size(1, "len_per_step must be ≥ 1")?;
            let b_len = c.size(2, "b_len must be ≥ 1")?;
            if len % b_len != 0 {
                return Err(c.bad("b_len does not divide len_per_step"));
            }
            let (a_zp, b_zp, y_zp) = (c.zp(3)?, c.zp(4)?, c.zp(5)?);
            let (a_mult, b_mult) = (c.p(6), c.p(7));
            let shift = c.p(8);
            if !(1..=62).contains(&shift) {
                return Err(c.bad("ADD shift outside [1, 62]"));
            }
            let (act_min, act_max) = c.act_range(9)?;
            let a = c.source(
                0,
                DType::I8,
                c.mul(steps, len)?,
                c.mul(run, len)?,
                "ADD a must be int8 [steps, len]",
            )?;
            let bt = c.tensor(1)?;
            let (b, b_step) = if bt.nbytes() == b_len {
                (
                    c.source(1, DType::I8, b_len, b_len, "ADD b must be int8")?,
                    0,
                )
            } else if b_len == len {
                (
                    c.source(
                        1,
                        DType::I8,
                        c.mul(steps, len)?,
                        c.mul(run, len)?,
                        "ADD b must be int8 [b_len] or [steps, len]",
                    )?,
                    len,
                )
            } else {
                return Err(c.bad("ADD b must be int8 [b_len] or [steps, len]"));
            };
            let y = c.arena(
                2,
                DType::I8,
                WRITE,
                c.mul(steps, len)?,
                c.mul(run, len)?,
                "ADD y must be an int8 activation [steps, len]",
            )?;
            c.disjoint(&[y], &[a.region(), b.region()])?;
            let p = AddParams {
                steps: run,
                len,
                b_len,
                b_step,
                a_zp,
                b_zp,
                y_zp,
                a_mult,
                b_mult,
                shift: shift as u32,
                act_min,
                act_max,
            };
            Ok(Exec::Add { p, a, b, y })
        }
        OP_SOFTMAX => {
            c.counts(3, 3)?;
            let (steps, run) = c.steps()?;
            let rows_ps = c.size(1, "rows_per_step must be ≥ 1")?;
            let len = c.size(2, "len must be ≥ 1")?;
            let (full, part) = (
                c.mul(c.mul(steps, rows_ps)?, len)?,
                c.mul(c.mul(run, rows_ps)?, len)?,
            );
            let x = c.arena(
                0,
                DType::I8,
                READ,
                full,
                part,
                "SOFTMAX x must be int8 [steps·rows, len]",
            )?;
            let tb = c.konst_i32(1, 256, "SOFTMAX table must be an int32 constant [256]")?;
            let table = <&[I32; 256]>::try_from(tb).map_err(|_| c.bad("SOFTMAX table"))?;
            let y = c.arena(
                2,
                DType::I8,
                WRITE,
                full,
                part,
                "SOFTMAX y must be an int8 activation like x",
            )?;
            c.disjoint(&[y], &[x])?;
            Ok(Exec::Softmax {
                p: SoftmaxParams {
                    rows: run * rows_ps,
                    len,
                },
                table,
                x,
                y,
            })
        }
        OP_COPY => {
            c.counts(2, 12)?;
            let (steps, run) = c.steps()?;
            let xt = c.tensor(0)?;
            let dt = xt.dtype();
            let elem_size = c.size(1, "elem_size must match the dtype")?;
            if elem_size != dt.size() {
                return Err(c.bad("elem_size must match the dtype"));
            }
            let mut p = CopyParams {
                steps,
                elem_size,
                in_step: c.count(2, "in_step must be ≥ 0")?,
                in_offset: c.count(3, "in_offset must be ≥ 0")?,
                out_dims: [0; 4],
                in_strides: [0; 4],
            };
            for k in 0..4 {
                p.out_dims[k] = c.size(4 + k, "out_dims must be ≥ 1")?;
                p.in_strides[k] = c.count(8 + k, "in_strides must be ≥ 0")?;
            }
            let extent = p
                .in_extent()
                .and_then(|e| e.checked_mul(elem_size))
                .ok_or(c.bad("size overflow"))?;
            if extent > xt.nbytes() {
                return Err(c.bad("COPY reads past its input"));
            }
            let x = c.arena(
                0,
                dt,
                READ,
                xt.nbytes(),
                xt.nbytes(),
                "COPY x must be an arena tensor",
            )?;
            let per = c.mul(p.out_len().ok_or(c.bad("size overflow"))?, elem_size)?;
            let y = c.arena(
                1,
                dt,
                WRITE,
                c.mul(steps, per)?,
                c.mul(run, per)?,
                "COPY y must be an activation of x's dtype, steps·Π out_dims",
            )?;
            c.disjoint(&[y], &[x])?;
            p.steps = run;
            Ok(Exec::Copy { p, x, y })
        }
        OP_SELECT_LAST => {
            c.counts(2, 2)?;
            let (steps, run) = c.steps()?;
            let row = c.size(1, "row_bytes must be ≥ 1")?;
            let dt = c.tensor(0)?.dtype();
            let x = c.arena(
                0,
                dt,
                READ,
                c.mul(steps, row)?,
                c.mul(run, row)?,
                "SELECT_LAST x must be [steps, row_bytes]",
            )?;
            let y = c.arena(
                1,
                dt,
                WRITE,
                row,
                row,
                "SELECT_LAST y must be an activation of row_bytes, x's dtype",
            )?;
            c.disjoint(&[y], &[x])?;
            Ok(Exec::SelectLast { steps: run, x, y })
        }
        OP_CONCAT => {
            let n = c.size(3, "CONCAT n must be ≥ 1")?;
            c.counts(
                n.checked_add(1).ok_or(c.bad("size overflow"))?,
                n.checked_add(4).ok_or(c.bad("size overflow"))?,
            )?;
            let (steps, run) = c.steps()?;
            let outer = c.size(1, "outer must be ≥ 1")?;
            let dt = c.tensor(n)?.dtype();
            let elem = c.size(2, "elem_size must match the dtype")?;
            if elem != dt.size() {
                return Err(c.bad("elem_size must match the dtype"));
            }
            let (rows, rows_run) = (c.mul(steps, outer)?, c.mul(run, outer)?);
            let mut total = 0usize;
            for j in 0..n {
                let chunk = c.size(4 + j, "chunks must be ≥ 1")?;
                total = total.checked_add(chunk).ok_or(c.bad("size overflow"))?;
            }
            let y = c.arena(
                n,
                dt,
                WRITE,
                c.mul(c.mul(rows, total)?, elem)?,
                c.mul(c.mul(rows_run, total)?, elem)?,
                "CONCAT y must be an activation [steps·outer, Σ chunks]",
            )?;
            for j in 0..n {
                let cb = c.mul(c.size(4 + j, "chunks must be ≥ 1")?, elem)?;
                let x = c.source(
                    j,
                    dt,
                    c.mul(rows, cb)?,
                    c.mul(rows_run, cb)?,
                    "CONCAT inputs must be [steps·outer, chunk] of y's dtype",
                )?;
                c.disjoint(&[y], &[x.region()])?;
            }
            let (inputs, chunks) = (op_tensors(&op, n), op_params(&op, 4, n));
            Ok(Exec::Concat {
                rows: rows_run,
                elem,
                inputs,
                chunks,
                y,
            })
        }
        OP_REQUANT => {
            c.counts(2, 6)?;
            let (steps, run) = c.steps()?;
            let len = c.size(1, "len_per_step must be ≥ 1")?;
            let (x_zp, y_zp) = (c.zp(2)?, c.zp(3)?);
            let (mult, shift) = c.pair(4)?;
            let x = c.arena(
                0,
                DType::I8,
                READ,
                c.mul(steps, len)?,
                c.mul(run, len)?,
                "REQUANT x must be int8 [steps, len]",
            )?;
            let y = c.arena(
                1,
                DType::I8,
                WRITE,
                c.mul(steps, len)?,
                c.mul(run, len)?,
                "REQUANT y must be an int8 activation [steps, len]",
            )?;
            c.disjoint(&[y], &[x])?;
            Ok(Exec::Requant {
                p: RequantParams {
                    x_zp,
                    y_zp,
                    mult,
                    shift,
                },
                x,
                y,
            })
        }
        OP_LAYERNORM => {
            c.counts(4, 6)?;
            let (steps, run) = c.steps()?;
            let rows_ps = c.size(1, "rows_per_step must be ≥ 1")?;
            let d = c.size_max(2, layernorm::MAX_D, "LAYERNORM d must be in [1, 2^15]")?;
            let eps_q = c.p(3);
            if eps_q < 0 {
                return Err(c.bad("LAYERNORM eps_q must be ≥ 0"));
            }
            let (act_min, act_max) = c.act_range(4)?;
            let (rows, rows_run) = (c.mul(steps, rows_ps)?, c.mul(run, rows_ps)?);
            let x = c.arena(
                0,
                DType::I8,
                READ,
                c.mul(rows, d)?,
                c.mul(rows_run, d)?,
                "LAYERNORM x must be int8 [steps·rows, d]",
            )?;
            // γ may be negative: mult ∈ (−2^31, 2^31).
            let gamma_rq = c.konst_pairs(
                1,
                d,
                -i32::MAX,
                "LAYERNORM gamma_rq must be int32 constant [d, 2]",
            )?;
            let beta = c.konst_i32(2, d, "LAYERNORM beta must be int32 constant [d]")?;
            let y = c.arena(
                3,
                DType::I8,
                WRITE,
                c.mul(rows, d)?,
                c.mul(rows_run, d)?,
                "LAYERNORM y must be an int8 activation like x",
            )?;
            c.disjoint(&[y], &[x])?;
            let p = LayerNormParams {
                rows: rows_run,
                d,
                eps_q,
                act_min,
                act_max,
            };
            Ok(Exec::LayerNorm {
                p,
                gamma_rq,
                beta,
                x,
                y,
            })
        }
        OP_ATTENTION => {
            c.counts(6, 14)?;
            let (steps, run) = c.steps()?;
            let tq = c.size(1, "ATTENTION tq must be ≥ 1")?;
            let tk = c.size_max(2, MAX_TK, "ATTENTION tk must be in [1, 4096]")?;
            let heads = c.size(3, "ATTENTION heads must be ≥ 1")?;
            let dh = c.size_max(4, MAX_DH, "ATTENTION dh must be in [1, 256]")?;
            let (q_zp, k_zp, v_zp, y_zp) = (c.zp(5)?, c.zp(6)?, c.zp(7)?, c.zp(8)?);
            let (score_mult, score_shift) = c.pair(9)?;
            let (out_mult, out_shift) = c.pair(11)?;
            let causal = c.flag(13, "ATTENTION causal must be 0 or 1")?;
            let w = c.mul(heads, dh)?;
            let (qb, kb) = (c.mul(tq, w)?, c.mul(tk, w)?);
            let q = c.source(
                0,
                DType::I8,
                c.mul(steps, qb)?,
                c.mul(run, qb)?,
                "ATTENTION q must be int8 [steps·tq, heads·dh]",
            )?;
            let k = c.source(
                1,
                DType::I8,
                c.mul(steps, kb)?,
                c.mul(run, kb)?,
                "ATTENTION k must be int8 [steps·tk, heads·dh]",
            )?;
            let v = c.source(
                2,
                DType::I8,
                c.mul(steps, kb)?,
                c.mul(run, kb)?,
                "ATTENTION v must be int8 [steps·tk, heads·dh]",
            )?;
            let et = c.konst_i32(
                3,
                EXP2_LEN,
                "ATTENTION exp2 must be an int32 constant [1024]",
            )?;
            let exp2 = <&[I32; EXP2_LEN]>::try_from(et).map_err(|_| c.bad("ATTENTION exp2"))?;
            // l ≥ 2^16 (no division by zero) and p_j ≤ 2^16 (the overflow proof) need these.
            if c.contents
                && (exp2[0].get() != 1 << 16
                    || exp2.iter().any(|e| !(0..=1 << 16).contains(&e.get())))
            {
                return Err(c.bad("ATTENTION exp2 must start at 65536 and stay in [0, 65536]"));
            }
            let y = c.arena(
                4,
                DType::I8,
                WRITE,
                c.mul(steps, qb)?,
                c.mul(run, qb)?,
                "ATTENTION y must be an int8 activation [steps·tq, heads·dh]",
            )?;
            let sb = c.mul(tk, 4)?;
            let scores = c.arena(
                5,
                DType::I32,
                WRITE,
                sb,
                sb,
                "ATTENTION scores must be an int32 activation [tk]",
            )?;
            c.disjoint(&[y, scores], &[q.region(), k.region(), v.region()])?;
            let p = AttentionParams {
                steps: run,
                tq,
                tk,
                heads,
                dh,
                q_zp,
                k_zp,
                v_zp,
                y_zp,
                score_mult,
                score_shift,
                out_mult,
                out_shift,
                causal,
            };
            Ok(Exec::Attention {
                p,
                exp2,
                q,
                k,
                v,
                y,
                scores,
            })
        }
        OP_MEAN => {
            c.counts(2, 8)?;
            let (steps, run) = c.steps()?;
            let outer = c.size(1, "MEAN outer must be ≥ 1")?;
            let n = c.size_max(2, mean::MAX_N, "MEAN n must be in [1, 2^23]")?;
            let inner = c.size(3, "MEAN inner must be ≥ 1")?;
            let (x_zp, y_zp) = (c.zp(4)?, c.zp(5)?);
            let (mult, shift) = c.pair(6)?;
            let (rows, rows_run) = (c.mul(steps, outer)?, c.mul(run, outer)?);
            let block = c.mul(n, inner)?;
            let x = c.arena(
                0,
                DType::I8,
                READ,
                c.mul(rows, block)?,
                c.mul(rows_run, block)?,
                "MEAN x must be int8 [steps·outer, n, inner]",
            )?;
            let y = c.arena(
                1,
                DType::I8,
                WRITE,
                c.mul(rows, inner)?,
                c.mul(rows_run, inner)?,
                "MEAN y must be an int8 activation [steps·outer, inner]",
            )?;
            c.disjoint(&[y], &[x])?;
            let p = MeanParams {
                rows: rows_run,
                n,
                inner,
                x_zp,
                y_zp,
                mult,
                shift,
            };
            Ok(Exec::Mean { p, x, y })
        }
        opcode => Err(Error::UnknownOp { op: i, opcode }),
    }
}

fn op_tensors<'a>(op: &OpInfo<'a>, n: usize) -> &'a [U16] {
    let all = op.raw_tensors();
    all.get(..n).unwrap_or(&[])
}

fn op_params<'a>(op: &OpInfo<'a>, from: usize, n: usize) -> &'a [I32] {
    op.raw_params().get(from..from + n).unwrap_or(&[])
}

/// Read slices and write slices handed out by [`carve`].
pub(crate) type Carved<'b, const R: usize, const W: usize> = ([&'b [u8]; R], [&'b mut [u8]; W]);

/// Borrows `R` read regions (which may overlap each other) and `W` write regions (which may
/// overlap nothing) of `arena` at once. `None` if a region is out of range or overlaps wrongly.
///
/// The arena is cut at the (non-empty) writes, in increasing offset order, with
/// `split_at_mut_checked`; what lies between them is a gap, shared by the reads, and every
/// read must lie inside one gap. No indexing that can panic: every access is `get` /
/// `split_*_checked` (the device build is checked for panics by `nopanic/check.sh`).
pub(crate) fn carve<'b, const R: usize, const W: usize>(
    arena: &'b mut [u8],
    reads: [Region; R],
    writes: [Region; W],
) -> Option<Carved<'b, R, W>> {
    /// More regions than any op borrows at once.
    const MAX: usize = 8;
    if W > MAX {
        return None;
    }
    // Non-empty writes as (offset, length, slot), in increasing offset order.
    let mut order = [(0usize, 0usize, 0usize); MAX];
    let mut nw = 0usize;
    for (slot, r) in writes.iter().enumerate() {
        if r.len == 0 {
            continue;
        }
        *order.get_mut(nw)? = (r.off, r.len, slot);
        nw += 1;
    }
    let order = order.get_mut(..nw)?;
    insertion_sort(order);
    let mut outs: [&'b mut [u8]; W] = core::array::from_fn(|_| <&mut [u8]>::default());
    // Gaps between the writes: (bytes, arena offset); at most one more than the writes.
    let mut gaps: [(&'b [u8], usize); MAX + 1] = [(&[], 0); MAX + 1];
    let mut ng = 0usize;
    let mut rest: &'b mut [u8] = arena;
    let mut cursor = 0usize;
    for &(off, len, slot) in order.iter() {
        // An earlier write ending after this one starts: overlap.
        let gap_len = off.checked_sub(cursor)?;
        let (gap, tail) = core::mem::take(&mut rest).split_at_mut_checked(gap_len)?;
        let (out, tail) = tail.split_at_mut_checked(len)?;
        *gaps.get_mut(ng)? = (gap, cursor);
        ng += 1;
        *outs.get_mut(slot)? = out;
        rest = tail;
        cursor = off.checked_add(len)?;
    }
    *gaps.get_mut(ng)? = (rest, cursor);
    let gaps = gaps.get(..=ng)?;
    let mut ins: [&'b [u8]; R] = [&[]; R];
    for (r, slot) in reads.iter().zip(ins.iter_mut()) {
        if r.len == 0 {
            continue;
        }
        let end = r.off.checked_add(r.len)?;
        *slot = gaps.iter().find_map(|&(g, base)| {
            let s = r.off.checked_sub(base)?;
            g.get(s..end.checked_sub(base)?)
        })?;
    }
    Some((ins, outs))
}

/// Sorts a short slice in place (insertion sort): no recursion and no panic path, unlike
/// core's `sort_unstable` (whose pivot selection recurses and whose small-sort keeps a
/// division-by-zero check). O(n²): used for at most [`crate::format::MAX_STATE_TENSORS`]
/// elements.
pub(crate) fn insertion_sort<T: Ord + Copy>(a: &mut [T]) {
    for i in 1..a.len() {
        let mut j = i;
        while j > 0 {
            match (a.get(j - 1), a.get(j)) {
                (Some(x), Some(y)) if x > y => a.swap(j - 1, j),
                _ => break,
            }
            j -= 1;
        }
    }
}

fn i8s(b: &[u8]) -> &[i8] {
    <[i8]>::ref_from_bytes(b).unwrap_or(&[])
}

fn i16s(b: &mut [u8]) -> Option<&mut [i16]> {
    <[i16]>::mut_from_bytes(b).ok()
}

fn i8s_mut(b: &mut [u8]) -> &mut [i8] {
    <[i8]>::mut_from_bytes(b).unwrap_or_default()
}

fn i32s(b: &mut [u8]) -> Option<&mut [i32]> {
    <[i32]>::mut_from_bytes(b).ok()
}

/// Bytes of one recurrent op's prepared operands on this CPU (0: the active SIMD level keeps
/// none).
#[cfg(kinglet_prep)]
fn prep_slot_bytes() -> usize {
    if crate::kernels::matvec::active_isa() == crate::kernels::Isa::Avx512Vnni {
        return crate::kernels::x86_rnn::RNN_PREP_BYTES;
    }
    0
}

/// Whether op `i` owns a slot of prepared operands: the LSTM and GRU ops, one slot each, in op
/// order.
#[cfg(kinglet_prep)]
fn has_prep_slot(m: &Model<'_>, i: usize) -> bool {
    m.op(i)
        .is_some_and(|o| o.opcode() == OP_LSTM || o.opcode() == OP_GRU)
}

/// [`Model::prepared_bytes`]: a slot per recurrent op, plus room to align the first to 64; 0
/// where the active level keeps none, and on every target but x86-64 (`cfg(kinglet_prep)`,
/// `build.rs`).
pub(crate) fn prepared_bytes(m: &Model<'_>) -> usize {
    #[cfg(kinglet_prep)]
    {
        let slot = prep_slot_bytes();
        if slot == 0 {
            return 0;
        }
        match (0..m.n_ops()).filter(|&i| has_prep_slot(m, i)).count() {
            0 => 0,
            n => n * slot + PREP_ALIGN,
        }
    }
    #[cfg(not(kinglet_prep))]
    {
        let _ = m;
        0
    }
}

/// Alignment of the prepared operands (the packed weights' vectors).
#[cfg(kinglet_prep)]
pub(crate) const PREP_ALIGN: usize = 64;

/// Op `i`'s slot in `prep` (the session's prepared bytes, 64-aligned), if it has one there.
#[cfg(kinglet_prep)]
fn prep_slot<'p>(m: &Model<'_>, prep: &'p [u8], i: usize) -> Option<&'p [u8]> {
    let slot = prep_slot_bytes();
    if slot == 0 || !has_prep_slot(m, i) {
        return None;
    }
    let k = (0..i).filter(|&j| has_prep_slot(m, j)).count();
    prep.get(k * slot..(k + 1) * slot)
}

/// Prepares every recurrent op's operands in `prep` (the session's prepared bytes,
/// 64-aligned), where the active SIMD level keeps them (AVX-512 VNNI); a slot that does not fit
/// or an op that takes the general path stays unprepared. Runs once, when a session is made.
#[cfg(kinglet_prep)]
pub(crate) fn prepare(m: &Model<'_>, prep: &mut [u8]) {
    use crate::kernels::x86_rnn::avx512_rnn_prepare;
    let slot = prep_slot_bytes();
    if slot == 0 {
        return;
    }
    let mut k = 0;
    for i in 0..m.n_ops() {
        if !has_prep_slot(m, i) {
            continue;
        }
        let Some(bytes) = prep.get_mut(k * slot..(k + 1) * slot) else {
            return;
        };
        k += 1;
        match decode(m, i, false, Decode::Run) {
            Ok(Exec::Lstm {
                p,
                wt: LstmWeights::Int8(wt),
                tabs,
                ..
            }) => {
                avx512_rnn_prepare(4, p.input, p.hidden, &wt, &tabs, bytes);
            }
            Ok(Exec::Gru { p, wt, tabs, .. }) => {
                avx512_rnn_prepare(3, p.input, p.hidden, &wt, &tabs, bytes);
            }
            _ => bytes.fill(0),
        }
    }
}

/// Runs op `i` of `m` on the (16-aligned) `arena`, with the session's prepared operands `prep`
/// ([`prepare`]; empty when it keeps none, and always elsewhere than on x86-64).
pub(crate) fn run_op(
    m: &Model<'_>,
    arena: &mut [u8],
    prep: &[u8],
    i: usize,
    streaming: bool,
) -> Result<(), Error> {
    #[cfg(not(kinglet_prep))]
    let _ = prep;
    let err = Error::Arena { op: i };
    match decode(m, i, streaming, Decode::Run)? {
        Exec::Fc {
            p,
            x,
            w,
            bias,
            rq,
            y,
        } => {
            let ([x], [y]) = carve(arena, [x], [y]).ok_or(err)?;
            // Checked by `decode`; repeated so the optimizer can drop `clamp`'s panic.
            if p.act_min > p.act_max {
                return Err(err);
            }
            fc_i8(&p, i8s(x), w, bias, rq, i8s_mut(y));
        }
        Exec::Lstm {
            p,
            wt,
            tabs,
            x,
            h,
            c,
            y,
            scratch,
        } => {
            let ([x], [h, c, y, s]) = carve(arena, [x], [h, c, y, scratch]).ok_or(err)?;
            let c = i16s(c).ok_or(err)?;
            let s = i16s(s).ok_or(err)?;
            let (x, h, y) = (i8s(x), i8s_mut(h), i8s_mut(y));
            match wt {
                #[cfg_attr(not(kinglet_prep), allow(unused_mut))]
                LstmWeights::Int8(mut wt) => {
                    #[cfg(kinglet_prep)]
                    {
                        wt.prep = prep_slot(m, prep, i);
                    }
                    lstm_i8(&p, &wt, &tabs, x, h, c, y, s)
                }
                LstmWeights::Unit16(wt) => lstm16_i8(&p, &wt, &tabs, x, h, c, y, s),
            }
        }
        #[cfg_attr(not(kinglet_prep), allow(unused_mut))]
        Exec::Gru {
            p,
            mut wt,
            tabs,
            x,
            h,
            y,
            scratch,
            h16,
        } => {
            #[cfg(kinglet_prep)]
            {
                wt.prep = prep_slot(m, prep, i);
            }
            let ([x], [h, y, s, h16]) = carve(arena, [x], [h, y, scratch, h16]).ok_or(err)?;
            let s = i16s(s).ok_or(err)?;
            let h16 = i16s(h16).ok_or(err)?;
            gru_i8(&p, &wt, &tabs, i8s(x), i8s_mut(h), h16, i8s_mut(y), s);
        }
        Exec::Rnn {
            p,
            wt,
            tanh,
            x,
            h,
            y,
        } => {
            let ([x], [h, y]) = carve(arena, [x], [h, y]).ok_or(err)?;
            rnn_i8(&p, &wt, tanh, i8s(x), i8s_mut(h), i8s_mut(y));
        }
        Exec::Lut8 { table, x, y } => {
            let ([x], [y]) = carve(arena, [x], [y]).ok_or(err)?;
            lut8_i8(table, i8s(x), i8s_mut(y));
        }
        Exec::Add { p, a, b, y } => {
            let ([ab, bb], [y]) = carve(arena, [a.region(), b.region()], [y]).ok_or(err)?;
            add_i8(&p, i8s(a.pick(ab)), i8s(b.pick(bb)), i8s_mut(y));
        }
        Exec::Softmax { p, table, x, y } => {
            let ([x], [y]) = carve(arena, [x], [y]).ok_or(err)?;
            softmax_i8(&p, table, i8s(x), i8s_mut(y));
        }
        Exec::Copy { p, x, y } => {
            let ([x], [y]) = carve(arena, [x], [y]).ok_or(err)?;
            copy_strided(&p, x, y);
        }
        Exec::SelectLast { steps, x, y } => {
            let ([x], [y]) = carve(arena, [x], [y]).ok_or(err)?;
            select_last(steps, x, y);
        }
        Exec::Concat {
            rows,
            elem,
            inputs,
            chunks,
            y,
        } => {
            let mut col = 0usize;
            for (t, chunk) in inputs.iter().zip(chunks) {
                let info = m.tensor(t.get() as usize).ok_or(err)?;
                let cb = (chunk.get() as usize).checked_mul(elem).ok_or(err)?;
                let len = rows.checked_mul(cb).ok_or(err)?;
                let src = if info.kind() == TensorKind::Const {
                    Src::Const(m.const_data(&info).and_then(|b| b.get(..len)).ok_or(err)?)
                } else {
                    Src::Arena(Region {
                        off: info.offset(),
                        len,
                        full: info.nbytes(),
                    })
                };
                let ([x], [y]) = carve(arena, [src.region()], [y]).ok_or(err)?;
                concat_part(rows, cb, col, src.pick(x), y);
                col += cb;
            }
        }
        Exec::Requant { p, x, y } => {
            let ([x], [y]) = carve(arena, [x], [y]).ok_or(err)?;
            requant_i8(&p, i8s(x), i8s_mut(y));
        }
        Exec::LayerNorm {
            p,
            gamma_rq,
            beta,
            x,
            y,
        } => {
            let ([x], [y]) = carve(arena, [x], [y]).ok_or(err)?;
            layernorm_i8(&p, i8s(x), gamma_rq, beta, i8s_mut(y));
        }
        Exec::Attention {
            p,
            exp2,
            q,
            k,
            v,
            y,
            scores,
        } => {
            let reads = [q.region(), k.region(), v.region()];
            let ([qb, kb, vb], [y, s]) = carve(arena, reads, [y, scores]).ok_or(err)?;
            let s = i32s(s).ok_or(err)?;
            let (q, k, v) = (i8s(q.pick(qb)), i8s(k.pick(kb)), i8s(v.pick(vb)));
            attention_i8(&p, exp2, q, k, v, i8s_mut(y), s);
        }
        Exec::Mean { p, x, y } => {
            let ([x], [y]) = carve(arena, [x], [y]).ok_or(err)?;
            mean_i8(&p, i8s(x), i8s_mut(y));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(off: usize, len: usize) -> Region {
        Region {
            off,
            len,
            full: len,
        }
    }

    #[test]
    fn carve_hands_out_disjoint_regions() {
        let mut arena: [u8; 64] = core::array::from_fn(|i| i as u8);
        let ([a, b], [y, z]) =
            carve(&mut arena, [r(0, 8), r(4, 8)], [r(32, 4), r(16, 16)]).unwrap();
        assert_eq!(a[0], 0);
        assert_eq!(b[0], 4);
        assert_eq!(b.len(), 8);
        y[0] = 99;
        z[15] = 98;
        assert_eq!(arena[32], 99);
        assert_eq!(arena[31], 98);
        // Overlapping write, write over read, out of range.
        assert!(carve(&mut arena, [r(0, 8)], [r(4, 8)]).is_none());
        assert!(carve::<0, 2>(&mut arena, [], [r(0, 8), r(7, 2)]).is_none());
        assert!(carve(&mut arena, [r(60, 8)], [r(0, 1)]).is_none());
        assert!(carve::<1, 0>(&mut arena, [r(usize::MAX, 8)], []).is_none());
    }
}
