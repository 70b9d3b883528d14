"""The built-in operators `tex-tune` knows by name, each with a NumPy reference.

    task = task_for("matmul", (1024, 1024, 64))      # Task "matmul 1024,1024,64"
    op, shape, dtype = parse_task_name(task.name)      # ("matmul", (1024, 1024, 64), "float32")

`OPS` maps a name to an `Op`: its shape parameters, `declare(*shape,
dtype=...)` giving the kernel's tensors as `tex.build` takes them (inputs,
then outputs) and `reference(*inputs)` giving the expected outputs (computed
in float64, cast back to the inputs' dtype). Some operators have trailing
optional parameters (conv2d's kernel size, stride and padding).

A task's name is the operator and its shape, "conv2d 1,64,56,56,64", with
trailing parameters left out where they equal their defaults and the dtype
appended when it is not float32 ("matmul 64,64,64 float64"). Tuning logs keep
that name, so `parse_task_name` and `task_for` can declare the workload again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import tex
from autotune.errors import TuneError
from autotune.task import Task

#: The dtypes the operators are declared in (all of them are floating-point math).
DTYPES = ("float16", "float32", "float64")


@dataclass(frozen=True)
class Op:
    """An operator declaration: shape parameters, tensors, and a NumPy reference.

    `defaults` gives the values of the last `len(defaults)` parameters, which
    may then be left out. `options` names the parameters the reference cannot
    read from its inputs' shapes (a convolution's stride and padding); it takes
    them as keywords.
    """

    name: str
    params: tuple[str, ...]
    doc: str
    _declare: Callable = field(repr=False)
    _reference: Callable = field(repr=False)
    defaults: tuple[int, ...] = ()
    options: tuple[str, ...] = ()

    @property
    def usage(self) -> str:
        """The parameters as a user writes them: "N,C,H,W,K[,R,S,stride,pad]"."""
        required = len(self.params) - len(self.defaults)
        text = ",".join(self.params[:required])
        if self.defaults:
            text += "[," + ",".join(self.params[required:]) + "]"
        return text

    def full_shape(self, shape) -> tuple[int, ...]:
        """`shape` with defaults filled in; TuneError for a wrong count or a size < 1."""
        shape = tuple(shape)
        required = len(self.params) - len(self.defaults)
        if not required <= len(shape) <= len(self.params):
            count = f"{required}" if not self.defaults else f"{required} to {len(self.params)}"
            raise TuneError(f"{self.name} takes {count} shape values ({self.usage}), got "
                            f"{len(shape)}: {','.join(map(str, shape)) or '(none)'}")
        for param, value in zip(self.params, shape):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TuneError(f"{self.name}: {param} must be an integer, got {value!r}")
            if value < (0 if param == "pad" else 1):
                least = "0 or more" if param == "pad" else "positive"
                raise TuneError(f"{self.name}: {param} must be {least}, got {value}")
        missing = len(self.params) - len(shape)
        return tuple(int(v) for v in shape) + self.defaults[len(self.defaults) - missing:]

    def short_shape(self, shape) -> tuple[int, ...]:
        """The full shape less the trailing parameters that equal their defaults."""
        shape = self.full_shape(shape)
        required = len(self.params) - len(self.defaults)
        while len(shape) > required and shape[-1] == self.defaults[len(shape) - 1 - required]:
            shape = shape[:-1]
        return shape

    def declare(self, *shape, dtype: str = "float32") -> list:
        """The kernel's tensors (inputs, then outputs), the arguments of `tex.build`."""
        if dtype not in DTYPES:
            raise TuneError(f"{self.name}: dtype must be one of {', '.join(DTYPES)}, "
                            f"got {dtype!r}")
        return list(self._declare(*self.full_shape(shape), dtype=dtype))

    def declare_symbolic(self, dtype: str = "float32") -> tuple[list, list]:
        """(tensors, size variables): the kernel's tensors (as `declare` gives them) with
        every shape parameter a `tex.size_var` named after it, in `params` order.
        TuneError when the declaration needs constant sizes (conv2d's padding stage and
        output size, layernorm's division by the row length as a float constant)."""
        sizes = [tex.size_var(param) for param in self.params]
        try:
            return list(self._declare(*sizes, dtype=dtype)), sizes
        except (tex.TexError, TypeError, AttributeError, ValueError) as err:
            raise TuneError(f"{self.name} is declared for constant sizes only "
                            f"({type(err).__name__}: {err})") from None

    def reference(self, *inputs, **options) -> np.ndarray:
        """The output for `inputs` (NumPy arrays), computed in float64 and cast to their dtype.

        `options` are the parameters named in `self.options` (default: their defaults).
        """
        unknown = set(options) - set(self.options)
        if unknown:
            raise TuneError(f"{self.name}.reference takes no {sorted(unknown)}; its options "
                            f"are {list(self.options)}")
        result = self._reference(*(np.asarray(x, dtype=np.float64) for x in inputs), **options)
        return np.asarray(result).astype(np.asarray(inputs[0]).dtype)

    def bound_reference(self, shape):
        """`reference` with the options of `shape` (a full or short shape) filled in."""
        options = self._options_of(shape)
        return lambda *inputs: self.reference(*inputs, **options)

    def numpy_version(self, shape):
        """The NumPy code of the reference for `shape`, computing in its inputs' dtype
        (float32 stays float32): what tex is timed against."""
        options = self._options_of(shape)
        return lambda *inputs: self._reference(*inputs, **options)

    def _options_of(self, shape) -> dict:
        full = self.full_shape(shape)
        return {name: full[self.params.index(name)] for name in self.options}


# --- declarations ------------------------------------------------------------------------

def _matmul(M, N, K, dtype):
    A = tex.placeholder((M, K), dtype, name="A")
    B = tex.placeholder((K, N), dtype, name="B")
    k = tex.reduce_axis((0, K), name="k")
    C = tex.compute((M, N), lambda i, j: tex.sum(A[i, k] * B[k, j], axis=k), name="C")
    return A, B, C


def _batch_matmul(Bt, M, N, K, dtype):
    A = tex.placeholder((Bt, M, K), dtype, name="A")
    B = tex.placeholder((Bt, K, N), dtype, name="B")
    k = tex.reduce_axis((0, K), name="k")
    C = tex.compute((Bt, M, N), lambda b, i, j: tex.sum(A[b, i, k] * B[b, k, j], axis=k),
                    name="C")
    return A, B, C


def _conv_output(H, W, R, S, stride, pad, name):
    """(P, Q): the output's height and width; TuneError if the kernel does not fit."""
    if H + 2 * pad < R or W + 2 * pad < S:
        raise TuneError(f"{name}: a {R}x{S} kernel does not fit the {H}x{W} input padded by "
                        f"{pad}; use a larger input, more padding or a smaller kernel")
    return (H + 2 * pad - R) // stride + 1, (W + 2 * pad - S) // stride + 1


def _padded(X, pad, name="X_pad"):
    """X (NCHW) padded with zeros on both sides of its last two axes, as a compute stage."""
    n, c, h, w = (d.value for d in X.shape)
    return tex.compute((n, c, h + 2 * pad, w + 2 * pad), lambda b, ci, y, x: tex.if_then_else(
        tex.all(y >= pad, y < h + pad, x >= pad, x < w + pad),
        X[b, ci, y - pad, x - pad], 0.0), name=name)


def _conv2d(N, C, H, W, K, R, S, stride, pad, dtype):
    P, Q = _conv_output(H, W, R, S, stride, pad, "conv2d")
    X = tex.placeholder((N, C, H, W), dtype, name="X")
    Wt = tex.placeholder((K, C, R, S), dtype, name="W")
    Xp = _padded(X, pad)
    rc = tex.reduce_axis((0, C), name="rc")
    ry, rx = tex.reduce_axis((0, R), name="ry"), tex.reduce_axis((0, S), name="rx")
    Y = tex.compute((N, K, P, Q), lambda b, f, y, x: tex.sum(
        Xp[b, rc, y * stride + ry, x * stride + rx] * Wt[f, rc, ry, rx], axis=[rc, ry, rx]),
        name="Y")
    return X, Wt, Y


def _depthwise_conv2d(N, C, H, W, R, S, stride, pad, dtype):
    P, Q = _conv_output(H, W, R, S, stride, pad, "depthwise_conv2d")
    X = tex.placeholder((N, C, H, W), dtype, name="X")
    Wt = tex.placeholder((C, R, S), dtype, name="W")
    Xp = _padded(X, pad)
    ry, rx = tex.reduce_axis((0, R), name="ry"), tex.reduce_axis((0, S), name="rx")
    Y = tex.compute((N, C, P, Q), lambda b, c, y, x: tex.sum(
        Xp[b, c, y * stride + ry, x * stride + rx] * Wt[c, ry, rx], axis=[ry, rx]), name="Y")
    return X, Wt, Y


def _row_reduction(reducer, name):
    def declare(rows, cols, dtype):
        A = tex.placeholder((rows, cols), dtype, name="A")
        k = tex.reduce_axis((0, cols), name="k")
        out = tex.compute((rows,), lambda i: reducer(A[i, k], axis=k), name=name)
        return A, out
    return declare


def _full_sum(n, dtype):
    A = tex.placeholder((n,), dtype, name="A")
    k = tex.reduce_axis((0, n), name="k")
    out = tex.compute((1,), lambda i: tex.sum(A[k], axis=k), name="total")
    return A, out


def _softmax(rows, cols, dtype):
    A = tex.placeholder((rows, cols), dtype, name="A")
    k1, k2 = tex.reduce_axis((0, cols), name="k1"), tex.reduce_axis((0, cols), name="k2")
    row_max = tex.compute((rows,), lambda i: tex.max(A[i, k1], axis=k1), name="row_max")
    e = tex.compute((rows, cols), lambda i, j: tex.exp(A[i, j] - row_max[i]), name="e")
    row_sum = tex.compute((rows,), lambda i: tex.sum(e[i, k2], axis=k2), name="row_sum")
    out = tex.compute((rows, cols), lambda i, j: e[i, j] / row_sum[i], name="softmax")
    return A, out


LAYERNORM_EPS = 1e-5


def _layernorm(rows, cols, dtype):
    A = tex.placeholder((rows, cols), dtype, name="A")
    gamma = tex.placeholder((cols,), dtype, name="gamma")
    beta = tex.placeholder((cols,), dtype, name="beta")
    k1, k2 = tex.reduce_axis((0, cols), name="k1"), tex.reduce_axis((0, cols), name="k2")
    total = tex.compute((rows,), lambda i: tex.sum(A[i, k1], axis=k1), name="total")
    mean = tex.compute((rows,), lambda i: total[i] / float(cols), name="mean")
    squares = tex.compute((rows,), lambda i: tex.sum(
        (A[i, k2] - mean[i]) * (A[i, k2] - mean[i]), axis=k2), name="squares")
    out = tex.compute((rows, cols), lambda i, j: (A[i, j] - mean[i]) * tex.rsqrt(
        squares[i] / float(cols) + LAYERNORM_EPS) * gamma[j] + beta[j], name="out")
    return A, gamma, beta, out


def _elementwise(n, dtype):
    a, b, c = (tex.placeholder((n,), dtype, name=name) for name in "abc")
    out = tex.compute((n,), lambda i: tex.max(a[i] * b[i] + c[i], 0.0), name="out")
    return a, b, c, out


def _matmul_bias_relu(M, N, K, dtype):
    A = tex.placeholder((M, K), dtype, name="A")
    B = tex.placeholder((K, N), dtype, name="B")
    bias = tex.placeholder((N,), dtype, name="bias")
    k = tex.reduce_axis((0, K), name="k")
    C = tex.compute((M, N), lambda i, j: tex.sum(A[i, k] * B[k, j], axis=k), name="C")
    out = tex.compute((M, N), lambda i, j: tex.max(C[i, j] + bias[j], 0.0), name="out")
    return A, B, bias, out


# --- references (float64 in, float64 out) ------------------------------------------------

def _windows(x, r, s, stride, pad):
    """(dy, dx, the NCHW input seen by kernel tap (dy, dx) at every output point)."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    p, q = (xp.shape[2] - r) // stride + 1, (xp.shape[3] - s) // stride + 1
    for dy in range(r):
        for dx in range(s):
            yield dy, dx, xp[:, :, dy:dy + stride * (p - 1) + 1:stride,
                             dx:dx + stride * (q - 1) + 1:stride]


def _conv2d_ref(x, w, stride=1, pad=1):
    return sum(np.einsum("nchw,kc->nkhw", patch, w[:, :, dy, dx])
               for dy, dx, patch in _windows(x, *w.shape[2:], stride, pad))


def _depthwise_ref(x, w, stride=1, pad=1):
    return sum(patch * w[None, :, dy, dx, None, None]
               for dy, dx, patch in _windows(x, *w.shape[1:], stride, pad))


def _softmax_ref(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _layernorm_ref(a, gamma, beta):
    mean = a.mean(axis=1, keepdims=True)
    var = ((a - mean) ** 2).mean(axis=1, keepdims=True)
    return (a - mean) / np.sqrt(var + LAYERNORM_EPS) * gamma + beta


OPS: dict[str, Op] = {op.name: op for op in [
    Op("matmul", ("M", "N", "K"), "C[M,N] = A[M,K] @ B[K,N]",
       _matmul, lambda a, b: a @ b),
    Op("batch_matmul", ("B", "M", "N", "K"), "C[B,M,N] = A[B,M,K] @ B[B,K,N]",
       _batch_matmul, lambda a, b: a @ b),
    Op("conv2d", ("N", "C", "H", "W", "K", "R", "S", "stride", "pad"),
       "Y = X (NCHW) convolved with W (KCRS), zero padding as a stage of its own",
       _conv2d, _conv2d_ref, defaults=(3, 3, 1, 1), options=("stride", "pad")),
    Op("depthwise_conv2d", ("N", "C", "H", "W", "R", "S", "stride", "pad"),
       "Y = each channel of X (NCHW) convolved with its own filter of W (CRS)",
       _depthwise_conv2d, _depthwise_ref, defaults=(3, 3, 1, 1), options=("stride", "pad")),
    Op("reduce_sum", ("rows", "cols"), "out[rows] = sum of A[rows,cols] over the last axis",
       _row_reduction(tex.sum, "row_sum"), lambda a: a.sum(axis=1)),
    Op("reduce_max", ("rows", "cols"), "out[rows] = max of A[rows,cols] over the last axis",
       _row_reduction(tex.max, "row_max"), lambda a: a.max(axis=1)),
    Op("full_sum", ("n",), "out[1] = sum of all of A[n]",
       _full_sum, lambda a: a.sum(keepdims=True)),
    Op("softmax", ("rows", "cols"), "softmax of A[rows,cols] over the last axis "
       "(row max, exp, row sum, divide)", _softmax, _softmax_ref),
    Op("layernorm", ("rows", "cols"), "layer norm of A[rows,cols] over the last axis, "
       "times gamma[cols] plus beta[cols]", _layernorm, _layernorm_ref),
    Op("elementwise", ("n",), "out[n] = max(a*b + c, 0)",
       _elementwise, lambda a, b, c: np.maximum(a * b + c, 0)),
    Op("matmul_bias_relu", ("M", "N", "K"), "out[M,N] = max(A @ B + bias[N], 0)",
       _matmul_bias_relu, lambda a, b, bias: np.maximum(a @ b + bias, 0)),
]}


def get_op(name: str) -> Op:
    """The operator called `name`; TuneError listing the known ones if there is none."""
    try:
        return OPS[name]
    except KeyError:
        raise TuneError(f"unknown operator {name!r}; the known ones are "
                        f"{', '.join(sorted(OPS))}") from None


def parse_shape(text: str) -> tuple[int, ...]:
    """"1024,1024,64" -> (1024, 1024, 64); TuneError if a value is not an integer."""
    values = []
    for part in text.split(","):
        try:
            values.append(int(part.strip()))
        except ValueError:
            raise TuneError(f"a shape is integers separated by commas, such as 1024,1024,64; "
                            f"got {text!r}") from None
    return tuple(values)


def task_name(op_name: str, shape, dtype: str = "float32") -> str:
    """"matmul 64,64,64", with the dtype appended when it is not float32."""
    op = get_op(op_name)
    name = f"{op.name} {','.join(map(str, op.short_shape(shape)))}"
    return name if dtype == "float32" else f"{name} {dtype}"


def task_for(op_name: str, shape, target="llvm", dtype: str = "float32") -> Task:
    """The tuning task of a registry operator: generated space, reference, canonical name.

    `shape` is a sequence of ints or a string such as "1024,1024,64".
    """
    op = get_op(op_name)
    if isinstance(shape, str):
        shape = parse_shape(shape)
    args = op.declare(*shape, dtype=dtype)
    return Task.from_compute(args, target, name=task_name(op_name, shape, dtype),
                             reference=op.bound_reference(shape))


def parse_task_name(name: str) -> tuple[str, tuple[int, ...], str]:
    """(op, shape, dtype) of a registry task's name; the inverse of `task_name`.

    The shape is as written in the name (short: defaults left out). TuneError if
    the name is not of a registry operator ("my_template" from a user's file).
    """
    words = name.split()
    if len(words) not in (2, 3) or words[0] not in OPS:
        raise TuneError(f"{name!r} is not the name of a registry operator's task "
                        f"(\"OP SHAPE [DTYPE]\", such as \"matmul 64,64,64\")")
    dtype = words[2] if len(words) == 3 else "float32"
    if dtype not in DTYPES:
        raise TuneError(f"task {name!r}: unknown dtype {dtype!r}")
    shape = parse_shape(words[1])
    OPS[words[0]].full_shape(shape)  # checks the count and the sizes
    return words[0], shape, dtype
