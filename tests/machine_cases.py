"""Kernels built for one CPU target, run by `tests/test_machines.py` in a fresh interpreter.

    python tests/machine_cases.py TARGET CASE [--export DIR]

CASE is `casts` (every dtype to every other, scalar and vectorized) or
`kernels` (a vectorized matmul, a softmax, an int8 sum with rfactor, float16
math). The kernels are built for TARGET and compared with NumPy on random
data, with sizes the splits do not divide. A fresh interpreter per case means
no earlier kernel or import can have defined a routine that this one needs.

For a target of another machine (-mtriple) the kernels are built, their
assembly printed and calling them must raise DeviceError. With --export DIR
they are also exported to DIR/cases.so with the cross compiler, and
DIR/cases.npz holds their inputs and the expected outputs, for
tests/test_machines.py to run the library under an emulator and compare.
"""
from __future__ import annotations

import argparse
import pathlib
import platform
import sys

import ml_dtypes
import numpy as np

import tex

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "bfloat16", "float32", "float64"]
RNG = np.random.default_rng(7)
N = 301  # not a multiple of any vector width


def numpy_dtype(name: str):
    return ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)


def is_float(name: str) -> bool:
    return name.startswith("float") or name == "bfloat16"


def cast_source(name: str) -> np.ndarray:
    """Values of `name` that every other dtype can hold after NumPy's conversion, so that
    the expected result is defined: small integers, and floats of mixed magnitudes
    (subnormal, ties, overflow of float16) within int8 wherever an int is cast to."""
    if name == "bool":
        return RNG.random(N) < 0.5
    if not is_float(name):
        info = np.iinfo(name)
        return RNG.integers(max(info.min, -100), min(info.max, 100), N).astype(name)
    return (RNG.standard_normal(N) * 40).astype(numpy_dtype(name))


def float_extremes(name: str) -> np.ndarray:
    """Float values whose conversion to narrower floats is delicate: subnormals, ties
    and the edges of float16's range, infinities and NaN."""
    values = [0.0, -0.0, 65504.0, 65519.0, 65520.0, 1e5, 2.0**-24, 2.0**-25, 3 * 2.0**-26,
              1 + 2.0**-11, 1 + 3 * 2.0**-11, 1 + 2.0**-8 + 2.0**-40, 1e-40, 3e38,
              np.inf, -np.inf, np.nan]
    return np.array(values * 19, dtype=np.float64)[:N].astype(numpy_dtype(name))


def unsigned_from_float(source: str, dtype: str) -> bool:
    """Whether a cast is float -> unsigned, which is defined for values >= 0 only (NumPy's
    result for negative ones differs by dtype and machine): such casts take |x|."""
    return is_float(source) and dtype.startswith("uint")


def cast_to(A: tex.Tensor, dtype: str) -> tex.Tensor:
    if unsigned_from_float(str(A.dtype), dtype):
        return tex.compute(A.shape, lambda i: tex.cast(dtype, tex.abs(A[i])), name=f"to_{dtype}")
    return tex.compute(A.shape, lambda i: tex.cast(dtype, A[i]), name=f"to_{dtype}")


def cast_cases():
    """(name, schedule, args, inputs, expected outputs) for every pair of dtypes."""
    for source in DTYPES:
        sources = [cast_source(source)]
        if is_float(source):
            sources.append(float_extremes(source))
        for k, a in enumerate(sources):
            targets = [d for d in DTYPES if d != source and (k == 0 or is_float(d))]
            for lanes in (1, 16):
                A = tex.placeholder((N,), source, name="A")
                outs = [cast_to(A, d) for d in targets]
                s = tex.create_schedule([o.op for o in outs])
                if lanes > 1:
                    for o in outs:
                        _, inner = s[o].split(o.op.axis[0], factor=lanes)
                        s[o].vectorize(inner)
                with np.errstate(all="ignore"):
                    want = [(np.abs(a) if unsigned_from_float(source, d) else a).astype(
                        numpy_dtype(d)) for d in targets]
                yield (f"cast_{source}_{k}_x{lanes}", s, [A, *outs], [a], want)


def kernel_cases():
    """(name, schedule, args, inputs, expected outputs) of a few typical kernels."""
    # matmul: register tile of vectors, sizes the tile does not divide
    M, K, Nn = 67, 45, 83
    A = tex.placeholder((M, K), name="A")
    B = tex.placeholder((K, Nn), name="B")
    k = tex.reduce_axis((0, K), name="k")
    C = tex.compute((M, Nn), lambda i, j: tex.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(C.op.axis[0], C.op.axis[1], 4, 16)
    s[C].reorder(io, jo, k, ii, ji)
    s[C].vectorize(ji)
    s[C].unroll(ii)
    s[C].parallel(io)
    a, b = RNG.standard_normal((M, K)).astype("float32"), RNG.standard_normal((K, Nn)).astype(
        "float32")
    yield "matmul", s, [A, B, C], [a, b], [a @ b]

    # softmax over rows
    R, W = 13, 77
    X = tex.placeholder((R, W), name="X")
    j1, j2 = tex.reduce_axis((0, W), name="j1"), tex.reduce_axis((0, W), name="j2")
    row_max = tex.compute((R,), lambda i: tex.max(X[i, j1], axis=j1), name="row_max")
    E = tex.compute((R, W), lambda i, j: tex.exp(X[i, j] - row_max[i]), name="E")
    total = tex.compute((R,), lambda i: tex.sum(E[i, j2], axis=j2), name="total")
    Y = tex.compute((R, W), lambda i, j: E[i, j] / total[i], name="Y")
    s = tex.create_schedule(Y.op)
    _, yi = s[Y].split(Y.op.axis[1], factor=16)
    s[Y].vectorize(yi)
    s[Y].parallel(Y.op.axis[0])
    x = (RNG.standard_normal((R, W)) * 3).astype("float32")
    e = np.exp(x - x.max(axis=1, keepdims=True))
    yield "softmax", s, [X, Y], [x], [e / e.sum(axis=1, keepdims=True)]

    # int8 sum into int32, rfactor over vector lanes
    L = 1003
    V = tex.placeholder((L,), "int8", name="V")
    r = tex.reduce_axis((0, L), name="r")
    S = tex.compute((1,), lambda _: tex.sum(tex.cast("int32", V[r]), axis=r), name="S")
    s = tex.create_schedule(S.op)
    _, ri = s[S].split(r, factor=32)
    SF = s.rfactor(S, ri)
    s[SF].vectorize(SF.op.axis[0])
    v = RNG.integers(-128, 128, L).astype("int8")
    yield "int8_rfactor", s, [V, S], [v], [np.array([v.astype(np.int64).sum()], "int32")]

    # float16 math, computed in float32 and rounded once
    H = tex.placeholder((N,), "float16", name="H")
    F = tex.compute((N,), lambda i: tex.exp(H[i]) * tex.sqrt(tex.abs(H[i])) + H[i] * H[i],
                    name="F")
    s = tex.create_schedule(F.op)
    _, fi = s[F].split(F.op.axis[0], factor=16)
    s[F].vectorize(fi)
    h = (RNG.standard_normal(N) * 2).astype("float16")
    f32 = h.astype(np.float32)
    yield "float16_math", s, [H, F], [h], [(np.exp(f32) * np.sqrt(np.abs(f32))
                                           + f32 * f32).astype(np.float16)]


CASES = {"casts": cast_cases, "kernels": kernel_cases}


def compare(name: str, got: np.ndarray, want: np.ndarray):
    """Exact for integers, bool and conversions; a float16 ulp or two for computed floats."""
    assert got.dtype == want.dtype and got.shape == want.shape, (name, got.dtype, want.dtype)
    if got.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want, err_msg=name)
        return
    g, w = got.astype(np.float64), want.astype(np.float64)
    if name.startswith("cast"):
        same = (g == w) | (np.isnan(g) & np.isnan(w))
        bad = np.flatnonzero(~same)
        assert not bad.size, f"{name}: {bad.size} wrong, e.g. at {bad[:3]}: {g[bad[:3]]} " \
            f"for {w[bad[:3]]}"
        return
    rtol = 2e-3 if got.dtype == np.float16 else 2e-5
    np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-5, err_msg=name)


def run(target: str, case: str):
    """Build the case's kernels and run them, or, for a target of another machine, check
    that each has assembly and that calling it says why it cannot run here."""
    for name, s, args, inputs, want in CASES[case]():
        kernel = tex.build(s, args, target=target, name=name)
        if kernel.target.machine != platform.machine():
            assert name in kernel.get_source("asm"), name
            try:
                kernel(*inputs)
            except tex.DeviceError as error:
                assert kernel.target.machine in str(error), error
            else:
                raise AssertionError(f"{name} for {target} ran on {platform.machine()}")
            continue
        got = kernel(*inputs)
        got = got if isinstance(got, tuple) else (got,)
        for g, w in zip(got, want):
            compare(name, g, w)
    print(f"{case} on {target}: all right")  # or built, where they cannot run


def export(target: str, case: str, directory: pathlib.Path):
    """Build the case's kernels for `target` and export them to DIR/cases.so, with their
    inputs and expected outputs in DIR/cases.npz (see `exported_cases`)."""
    kernels, data = [], {}
    for name, s, args, inputs, want in CASES[case]():
        kernels.append(tex.build(s, args, target=target, name=name))
        for role, arrays in (("in", inputs), ("out", want)):
            for k, array in enumerate(arrays):
                bits = array.dtype == ml_dtypes.bfloat16  # np.savez cannot store ml_dtypes
                data[f"{name}.{role}{k}.{'bf16' if bits else 'np'}"] = \
                    array.view(np.uint16) if bits else array
    tex.export_library(kernels, directory / "cases.so")
    np.savez(directory / "cases.npz", **data)
    print(f"{case} for {target}: {len(kernels)} kernels exported")


def exported_cases(directory: pathlib.Path):
    """(name, inputs, expected outputs) of each kernel `export` wrote to `directory`."""
    data = np.load(directory / "cases.npz")
    arrays = {}
    for key in sorted(data.files):
        name, slot, kind = key.split(".")
        array = data[key].view(ml_dtypes.bfloat16) if kind == "bf16" else data[key]
        arrays.setdefault(name, {})[slot] = array
    for name, slots in arrays.items():
        pick = lambda role: [slots[f"{role}{k}"] for k in range(len(slots))  # noqa: E731
                             if f"{role}{k}" in slots]
        yield name, pick("in"), pick("out")


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--export", type=pathlib.Path)
    args = parser.parse_args(argv)
    if args.export:
        export(args.target, args.case, args.export)
    else:
        run(args.target, args.case)


if __name__ == "__main__":
    sys.exit(main())
