"""Copies that transpose (each step gathers the next element of `lanes` rows into one
vector) are emitted as lanes x lanes blocks through shuffles in registers, the steps
left over one by one; every result is compared with NumPy, at sizes that leave steps
over."""
import random

import numpy as np
import pytest

import tex
from autotune import ops
from autotune.generate import InvalidConfig
from tex.codegen.llvm_transpose import match_transposed_copy
from tex.ir import For
from tex.visitor import collect


def transposing(rows: int, cols, dtype: str, lanes: int):
    """P[j, i] = A[i, j] with P's i vectorized by `lanes` (split when rows > lanes, the
    vector's blocks outside j): each step of j stores one dense vector of P."""
    A = tex.placeholder((rows, cols), dtype=dtype, name="A")
    P = tex.compute((cols, rows), lambda j, i: A[i, j], name="P")
    s = tex.create_schedule(P.op)
    j, i = P.op.axis
    block, lane = s[P].split(i, factor=lanes)
    s[P].reorder(block, j, lane)
    s[P].vectorize(lane)
    return s, [A, P]


def random_array(shape, dtype):
    rng = np.random.default_rng(3)
    if np.issubdtype(np.dtype(dtype), np.floating):
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(-100, 100, shape).astype(dtype)


@pytest.mark.parametrize("dtype, lanes", [("float32", 16), ("float32", 8), ("float64", 8),
                                          ("int8", 16), ("int16", 32), ("float16", 16)])
@pytest.mark.parametrize("vectors, cols", [(1, 37), (2, 70), (4, 5), (1, 3)])
def test_a_transposing_copy_matches_numpy(dtype, lanes, vectors, cols):
    rows = vectors * lanes
    s, tensors = transposing(rows, cols, dtype, lanes)
    kernel = tex.build(s, tensors)
    a = random_array((rows, cols), dtype)
    p = np.zeros((cols, rows), dtype)
    kernel(a, p)
    np.testing.assert_array_equal(p, a.T)
    if cols >= lanes:  # a block of `lanes` steps is shuffled
        assert "shufflevector" in kernel.get_source("ll")


def test_a_symbolic_row_length_is_a_symbolic_stride():
    m = tex.size_var("m")
    s, tensors = transposing(16, m, "float32", 16)
    kernel = tex.build(s, tensors)
    for cols in (1, 15, 16, 33, 100):
        a = random_array((16, cols), "float32")
        p = np.zeros((cols, 16), "float32")
        kernel(a, p)
        np.testing.assert_array_equal(p, a.T)


def loops_of(s, tensors):
    return [loop for loop in collect(tex.lower(s, tensors).body, lambda n: isinstance(n, For))]


def test_only_copies_whose_steps_walk_the_rows_match():
    s, tensors = transposing(16, 37, "float32", 16)
    assert any(match_transposed_copy(loop) for loop in loops_of(s, tensors))
    # every other element of the rows: not a block of consecutive elements
    A = tex.placeholder((16, 74), name="A")
    P = tex.compute((37, 16), lambda j, i: A[i, 2 * j], name="P")
    s = tex.create_schedule(P.op)
    s[P].vectorize(P.op.axis[1])
    assert not any(match_transposed_copy(loop) for loop in loops_of(s, [A, P]))
    kernel = tex.build(s, [A, P])
    a, p = random_array((16, 74), "float32"), np.zeros((37, 16), "float32")
    kernel(a, p)
    np.testing.assert_array_equal(p, a[:, ::2].T)


@pytest.mark.parametrize("pack_at", ["serial", "parallel"])
def test_the_tuned_convolutions_pack_their_weights_by_blocks(pack_at):
    """The tile rule's packed weights are copied by one loop over the fused input channels
    and taps, which the codegen transposes; the convolution still matches NumPy."""
    task = ops.task_for("conv2d", "1,19,9,9,32,3,3,1,1")
    picks = {"Y.pack_W": True, "Y.vector": 16, "Y.pack_at": pack_at, "Y.write_back": "tile"}
    rng = random.Random(0)
    for _ in range(2000):
        config = task.space.random(rng)
        if all(config.to_json()[k] == v for k, v in picks.items()):
            try:
                s, tensors = task.instantiate(config)
                break
            except InvalidConfig:
                continue
    else:
        pytest.fail(f"no valid configuration with {picks}")
    assert any(match_transposed_copy(loop) for loop in loops_of(s, tensors))
    kernel = tex.build(s, tensors)
    inputs = task.random_inputs()
    out = np.empty((1, 32, 9, 9), "float32")
    kernel(*inputs, out)
    np.testing.assert_allclose(out, task.reference_outputs(inputs)[0], rtol=1e-4, atol=1e-4)
