"""The cost model's features: fixed length, finite, deterministic, and telling schedules
apart in the direction a reader expects (vector lanes, parallel extent, strides, work)."""
from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest

import tex
from autotune.features import (FEATURE_DOCS, FEATURE_NAMES, TOP_ACCESSES, feature, feature_dict,
                               program_features)
from bench import schedules
from fuzz_programs import random_program
from fuzz_schedules import random_schedule
from test_fuzz import PRELUDE
from test_workloads import argmax_decl


def log(x):
    return math.log2(1 + x)


def features(sch, args) -> dict:
    return feature_dict(program_features(tex.lower(sch, args)))


def accesses(f: dict) -> list[dict]:
    """The hot statement's accesses present in features `f`, as {name: value} each."""
    rows = [{name.split(".", 1)[1]: v for name, v in f.items() if name.startswith(f"acc{k}.")}
            for k in range(TOP_ACCESSES)]
    return [row for row in rows if row["present"]]


def matmul(M, N, K, order="ijk", vector=0, parallel=False):
    """C = A @ B with the loops in `order`; `vector` > 0 splits j by it and vectorizes."""
    A = tex.placeholder((M, K), name="A")
    B = tex.placeholder((K, N), name="B")
    k = tex.reduce_axis((0, K), name="k")
    C = tex.compute((M, N), lambda i, j: tex.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = tex.create_schedule(C.op)
    i, j = C.op.axis
    axes = dict(zip("ijk", (i, j, k)))
    if vector:
        jo, ji = s[C].split(j, factor=vector)
        axes["j"] = jo
        s[C].reorder(*(axes[a] for a in order), ji)
        s[C].vectorize(ji)
    else:
        s[C].reorder(*(axes[a] for a in order))
    if parallel:
        s[C].parallel(i)
    return s, [A, B, C]


def elementwise_chain(n):
    A = tex.placeholder((n,), name="A")
    B = tex.placeholder((n,), name="B")
    T = tex.compute((n,), lambda i: tex.exp(A[i]) * B[i] + 1.0, name="T")
    U = tex.compute((n,), lambda i: tex.sqrt(T[i] * T[i] + 2.0) / (B[i] + 3.0), name="U")
    s = tex.create_schedule(U.op)
    s[T].compute_inline()
    outer, inner = s[U].split(U.op.axis[0], factor=8)
    s[U].vectorize(inner)
    return s, [A, B, U]


def symbolic():
    n, m = tex.var("n"), tex.var("m")
    A = tex.placeholder((n, m), name="A")
    B = tex.compute((n, m), lambda i, j: tex.tanh(A[i, j]) > 0.25, name="B")
    C = tex.compute((n,), lambda i: tex.cast("int32", A[i, 0] * 3.0), name="C")
    s = tex.create_schedule([B.op, C.op])
    outer, inner = s[B].split(B.op.axis[1], factor=8)
    s[B].vectorize(inner)
    s[B].parallel(B.op.axis[0])
    return s, [A, B, C]


def argmax():
    A, index, value, k = argmax_decl(37, 129)
    s = tex.create_schedule(index.op)
    s[index.op].split(k, factor=16)
    return s, [A, index, value]


def int_sum():
    X = tex.placeholder((17,), name="X", dtype="int8")
    k = tex.reduce_axis((0, 17), name="k")
    Y = tex.compute((1,), lambda i: tex.sum(tex.cast("int32", X[k]), axis=k), name="Y")
    return tex.create_schedule(Y.op), [X, Y]


PROGRAMS = {
    "matmul_ijk": lambda: matmul(32, 48, 40),
    "matmul_ikj_vector": lambda: matmul(32, 48, 40, "ikj", vector=16, parallel=True),
    "matmul_packed": lambda: schedules.matmul(37, 75, 29, mr=6, nr=64),
    "matmul_pack_a": lambda: schedules.matmul(13, 130, 70, mr=6, nr=64, pack_a=True),
    "matmul_k_blocked": lambda: schedules.matmul(37, 75, 29, mr=4, nr=32, kc=24),
    "conv2d": lambda: schedules.conv2d(2, 5, 9, 13, 20, kb=16, wb=5),
    "softmax": lambda: schedules.softmax(19, 333),
    "layernorm": lambda: schedules.layernorm(7, 100),
    "full_sum": lambda: schedules.full_sum(41, 203, chunks=5),
    "elementwise_chain": lambda: elementwise_chain(100),
    "symbolic": symbolic,
    "argmax_let": argmax,
    "int_sum": int_sum,
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_fixed_length_finite_and_deterministic(name):
    sch, args = PROGRAMS[name]()
    func = tex.lower(sch, args)
    vector = program_features(func)
    assert vector.dtype == np.float32 and vector.shape == (len(FEATURE_NAMES),)
    assert np.isfinite(vector).all()
    assert np.abs(vector).max() < 1e3   # logs keep the values in a sane range
    np.testing.assert_array_equal(vector, program_features(func))
    np.testing.assert_array_equal(vector, program_features(tex.lower(sch, args)))


def test_random_programs_give_finite_vectors():
    """Fuzzer programs under fuzzer schedules: gathers, selects, lets, odd guards."""
    for seed in range(12):
        rng, ns = random.Random(seed), {}
        program = random_program(rng)
        exec(PRELUDE + "\n".join(program.tex_lines), ns)  # noqa: S102
        random_schedule(rng, ns, [t.name for t in program.outputs], [])
        args = [ns[t.name] for t in program.inputs + program.outputs]
        vector = program_features(tex.lower(ns["s"], args))
        assert vector.shape == (len(FEATURE_NAMES),) and np.isfinite(vector).all(), seed


def test_names_are_documented_and_addressable():
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES) == len(FEATURE_DOCS)
    assert all(FEATURE_DOCS[name] for name in FEATURE_NAMES)
    vector = program_features(tex.lower(*matmul(8, 8, 8)))
    f = feature_dict(vector)
    assert list(f) == list(FEATURE_NAMES)
    assert feature(vector, "hot.depth") == f["hot.depth"] == 3
    with pytest.raises(KeyError):
        feature(vector, "no.such_feature")


def test_vector_lanes():
    scalar = features(*matmul(32, 48, 40, "ikj"))
    vector = features(*matmul(32, 48, 40, "ikj", vector=16))
    assert scalar["hot.lanes"] == 1 and vector["hot.lanes"] == 16
    assert scalar["hot.innermost_vectorized"] == 0 and vector["hot.innermost_vectorized"] == 1
    assert vector["prog.vector_fraction"] == 1 and scalar["prog.vector_fraction"] == 0
    # The same arithmetic either way: operations are counted per lane.
    assert vector["prog.float_fma"] == scalar["prog.float_fma"] == pytest.approx(log(32 * 48 * 40))
    assert vector["hot.executions"] == pytest.approx(log(32 * 48 * 40 / 16))


def test_parallel_extent_and_balance():
    serial = features(*matmul(64, 48, 40))
    parallel = features(*matmul(64, 48, 40, parallel=True))
    assert parallel["hot.parallel_extent"] == pytest.approx(log(64))
    assert parallel["prog.n_parallel_loops"] == 1 and parallel["prog.parallel_fraction"] == 1
    assert parallel["hot.parallel_balance_2"] == 1 and parallel["hot.parallel_balance_64"] == 1
    assert parallel["hot.parallel_balance_16"] == 1
    assert serial["hot.parallel_extent"] == 0 and serial["hot.parallel_balance_2"] == 2
    odd = features(*matmul(17, 8, 8, parallel=True))
    assert odd["hot.parallel_balance_2"] == pytest.approx(18 / 17)
    assert odd["hot.parallel_balance_16"] == pytest.approx(32 / 17)


def test_stride_of_b_naive_against_packed():
    N = 48
    naive = accesses(features(*matmul(32, N, 40)))
    # i, j, k order: B[k, j] moves by N along the innermost loop k, A by 1, C not at all.
    b = [row for row in naive if row["stride_inner"] == pytest.approx(log(N))]
    assert len(b) == 1 and b[0]["read"] == 1 and b[0]["scalar"] == 1
    assert sorted(round(row["stride_inner"], 3) for row in naive) == [0, 1, round(log(N), 3)]
    c = [row for row in naive if row["write"]][0]
    assert c["read"] == 1 and c["reuse_level"] == 1 and c["reuse_count"] == pytest.approx(log(40))
    assert b[0]["lines_l1"] == pytest.approx(log(40))       # one cache line per step of k
    packed = accesses(features(*schedules.matmul(32, N, 40, mr=4, nr=16)))
    # The packed panel of B is read as contiguous vectors: stride 1 along the lanes.
    assert max(row["stride_inner"] for row in packed) == 1
    assert any(row["contiguous"] and row["read"] and not row["local"] for row in packed)
    assert any(row["broadcast"] for row in packed)       # A: one element for every lane
    assert any(row["local"] and row["write"] for row in packed)    # the register tile


def test_more_work_for_a_bigger_shape():
    small, big = features(*matmul(32, 32, 32)), features(*matmul(64, 64, 64))
    assert big["prog.float_fma"] == pytest.approx(log(64 ** 3))
    assert small["prog.float_fma"] == pytest.approx(log(32 ** 3))
    assert big["hot.scalar_iterations"] > small["hot.scalar_iterations"]
    assert big["acc0.bytes_all"] > small["acc0.bytes_all"]


def test_guards_count_only_the_iterations_that_pass():
    A = tex.placeholder((100,), name="A")
    B = tex.compute((100,), lambda i: A[i] * 2.0, name="B")
    s = tex.create_schedule(B.op)
    s[B].vectorize(s[B].split(B.op.axis[0], factor=16)[1])
    f = features(s, [A, B])
    # Six full vectors under `i_outer < 6`, then one masked tail of 4 lanes.
    assert f["prog.float_mul"] == pytest.approx(log(100), abs=1e-4)
    assert f["prog.guarded_fraction"] == 1
    assert f["prog.masked_fraction"] == pytest.approx(0.04, abs=1e-4)
    assert f["hot.guard_fraction"] == pytest.approx(6 / 7)


def test_arithmetic_categories():
    f = features(*elementwise_chain(100))
    # T inlined twice into U: per element 3 fmas (exp(A)*B + 1 twice, T*T + 2), 2 exps and
    # a sqrt, 1 division, and the add B + 3.
    counts = {"float_fma": 3, "float_math": 3, "float_div": 1, "float_addsub": 1, "float_mul": 0}
    for name, count in counts.items():
        assert f["prog." + name] == pytest.approx(log(100 * count), abs=1e-4), name
    softmax = features(*schedules.softmax(19, 333))
    assert softmax["prog.vector_reduce"] > 0 and softmax["prog.float_minmax"] > 0
    assert softmax["prog.float_math"] == pytest.approx(log(19 * 333), abs=1e-3)   # the exps
    ints = features(*int_sum())
    assert ints["prog.int_arith"] > 0 and ints["prog.cast"] > 0
    assert ints["prog.float_addsub"] == 0


def test_allocations_and_lets():
    f = features(*schedules.matmul(37, 75, 29, mr=6, nr=64))
    assert f["prog.allocs_local"] == 1 and f["prog.alloc_bytes_local"] == pytest.approx(
        log(6 * 64 * 4))
    assert f["prog.allocs_global"] == 1   # the packed B
    assert features(*argmax())["prog.n_lets"] == pytest.approx(log(2))


def test_symbolic_sizes_take_the_documented_guess():
    f = features(*symbolic())
    assert f["prog.symbolic_loops"] > 0
    assert f["hot.parallel_extent"] == pytest.approx(log(128))     # n guessed 128


def test_extraction_time_of_a_large_matmul():
    func = tex.lower(*schedules.matmul(1024, 1024, 1024, mr=6, nr=64))
    program_features(func)
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        vector = program_features(func)
        best = min(best, time.perf_counter() - start)
    assert best < 0.2   # about 1 ms on a quiet machine; loose for a busy one
    assert feature(vector, "prog.float_fma") == pytest.approx(log(1024 ** 3))
