//! Kinglet's float graph: what the ONNX importer produces and the calibrator runs.
//!
//! The importer lowers an ONNX graph to these few fused ops (constant and shape-only subgraphs
//! are folded away, MatMul/Gemm + bias become [`Op::Fc`], LSTM/GRU/RNN are split per direction).
//! Every value has a static shape (batch 1). Values are row-major f32.

/// Index of a value in [`Graph::values`].
pub type ValueId = usize;

/// A tensor-valued edge of the graph.
#[derive(Debug, Clone)]
pub struct Value {
    /// ONNX name (or a derived name like `lstm_0/fwd`).
    pub name: String,
    /// Static shape, outermost first (batch dims of 1 included as ONNX has them).
    pub shape: Vec<usize>,
}

impl Value {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Pointwise nonlinearity, evaluated exactly in float; becomes a 256-entry int8 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unary {
    /// tanh
    Tanh,
    /// logistic sigmoid
    Sigmoid,
    /// max(x, 0)
    Relu,
    /// x · Φ(x) (exact erf form)
    Gelu,
}

impl Unary {
    /// The float function.
    pub fn eval(self, x: f32) -> f32 {
        match self {
            Unary::Tanh => x.tanh(),
            Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Unary::Relu => x.max(0.0),
            Unary::Gelu => {
                let x = x as f64;
                (0.5 * x * (1.0 + libm_erf(x / std::f64::consts::SQRT_2))) as f32
            }
        }
    }
}

/// erf by Abramowitz-Stegun 7.1.26 refined: max error 1.5e-7, enough for int8 tables.
fn libm_erf(x: f64) -> f64 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    sign * y
}

/// Activation of a vanilla RNN cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RnnAct {
    /// tanh (PyTorch's default)
    Tanh,
    /// relu
    Relu,
}

/// One fused op.
#[derive(Debug, Clone)]
pub enum Op {
    /// `y[.., n] = Σ_k x[.., k] · w[n, k] + b[n]` over the last axis of `x`; optional ReLU.
    /// `w` is `[n, k]` row-major.
    Fc {
        /// `[n, k]` row-major.
        w: Vec<f32>,
        /// `[n]`.
        b: Vec<f32>,
        /// Output features.
        n: usize,
        /// Input features.
        k: usize,
        /// Fused ReLU.
        relu: bool,
    },
    /// One LSTM direction. Input viewed as `[T, input]` rows (all other dims 1), output
    /// `[T, hidden]` (shape recorded on the output value, typically `[T, 1, 1, H]`).
    /// Gate order ONNX `i, o, f, c`. Initial state zero.
    Lstm {
        /// `[4H, I]`.
        w: Vec<f32>,
        /// `[4H, H]`.
        r: Vec<f32>,
        /// `[4H]` input bias.
        bw: Vec<f32>,
        /// `[4H]` recurrent bias.
        br: Vec<f32>,
        /// Input features.
        input: usize,
        /// Hidden units.
        hidden: usize,
        /// Runs from the last step to the first.
        reverse: bool,
    },
    /// One GRU direction, ONNX gate order `z, r, h`, `linear_before_reset = 1`.
    Gru {
        /// `[3H, I]`.
        w: Vec<f32>,
        /// `[3H, H]`.
        r: Vec<f32>,
        /// `[3H]`.
        bw: Vec<f32>,
        /// `[3H]`.
        br: Vec<f32>,
        /// Input features.
        input: usize,
        /// Hidden units.
        hidden: usize,
        /// Runs from the last step to the first.
        reverse: bool,
    },
    /// One vanilla RNN direction: `h' = act(W x + bw + R h + br)`.
    Rnn {
        /// `[H, I]`.
        w: Vec<f32>,
        /// `[H, H]`.
        r: Vec<f32>,
        /// `[H]`.
        bw: Vec<f32>,
        /// `[H]`.
        br: Vec<f32>,
        /// Input features.
        input: usize,
        /// Hidden units.
        hidden: usize,
        /// Runs from the last step to the first.
        reverse: bool,
        /// Cell activation.
        act: RnnAct,
    },
    /// Pointwise function.
    Unary(Unary),
    /// `a + b`, with `b` either the same shape as `a` or a suffix of it (numpy broadcasting of
    /// leading dims). Two inputs.
    Add,
    /// Softmax over the last axis.
    Softmax,
    /// Same data, new shape (Reshape, Flatten, Squeeze, Unsqueeze, size-1 transposes).
    Reshape,
    /// Permute axes: output dim `i` is input dim `perm[i]`.
    Transpose {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// `x[.., start..end, ..]` along `axis` with step 1 (Slice, Gather with a scalar index
    /// followed by a Reshape that drops the axis).
    Slice {
        /// Axis sliced.
        axis: usize,
        /// First index.
        start: usize,
        /// One past the last index.
        end: usize,
    },
    /// Concatenation along `axis` of all inputs.
    Concat {
        /// Axis joined.
        axis: usize,
    },
    /// A constant tensor used as an activation (CLS token, positional embedding): no inputs;
    /// its data is the output value's contents.
    Constant {
        /// Row-major data, shape of the output value.
        data: Vec<f32>,
    },
    /// LayerNorm over the last axis: `(x - mean) / sqrt(var + eps) * gamma + beta`.
    LayerNorm {
        /// `[d]`.
        gamma: Vec<f32>,
        /// `[d]`.
        beta: Vec<f32>,
        /// Epsilon inside the square root.
        eps: f32,
    },
    /// Multi-head scaled dot-product attention on already projected inputs `[q, k, v]`, each
    /// viewed as rows `[tokens, heads · head_dim]` (head `h` owns columns
    /// `h·head_dim..(h+1)·head_dim`); output `[tokens_q, heads · head_dim]`, heads concatenated
    /// (the input of the output projection).
    Attention {
        /// Number of heads.
        heads: usize,
        /// Logit scale, usually `1/sqrt(head_dim)`.
        scale: f32,
        /// Query `i` attends only to keys `j ≤ i`.
        causal: bool,
    },
    /// Mean over one axis (ReduceMean with a single axis; keepdims is a reshape away).
    Mean {
        /// Axis reduced.
        axis: usize,
    },
}

/// A node: an op applied to input values, producing one output value.
#[derive(Debug, Clone)]
pub struct Node {
    /// ONNX node name (or derived), for messages.
    pub name: String,
    /// The op.
    pub op: Op,
    /// Input values (activations only; weights live inside the op).
    pub inputs: Vec<ValueId>,
    /// The output value.
    pub output: ValueId,
}

/// A whole model: nodes in topological order.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// All values.
    pub values: Vec<Value>,
    /// Nodes, topologically sorted.
    pub nodes: Vec<Node>,
    /// Graph inputs (float32 on the ONNX side, or float16 for half models).
    pub inputs: Vec<ValueId>,
    /// Graph outputs.
    pub outputs: Vec<ValueId>,
}
