"""The operator registry: every operator's declaration agrees with its NumPy reference, and
configurations of its generated space build into kernels that compute that reference.

Sizes are small and awkward (no tile or vector width divides them), and each operator is
also taken at a size where the generated space offers its interesting rules (register
tiles, chunked reductions, strided convolutions).
"""
import random

import numpy as np
import pytest

import tex
from autotune import TuneError
from autotune.generate import InvalidConfig
from autotune.ops import OPS, parse_shape, parse_task_name, task_for, task_name

CASES = [
    ("matmul", "37,29,23"),
    ("batch_matmul", "3,13,29,11"),
    ("conv2d", "1,5,9,11,6"),              # too small for a register tile
    ("conv2d", "1,3,11,12,8"),             # a register tile
    ("conv2d", "1,3,15,13,9,3,3,2,0"),     # stride 2, no padding
    ("depthwise_conv2d", "1,3,11,12"),
    ("depthwise_conv2d", "2,7,13,19"),     # a register tile
    ("depthwise_conv2d", "1,4,17,15,5,3,2,1"),
    ("reduce_sum", "7,45"),                # few rows: the reduction is chunked
    ("reduce_sum", "300,45"),
    ("reduce_sum", "1030,9"),              # rows enough for a tile, which one axis cannot use
    ("reduce_max", "7,45"),
    ("full_sum", "1000"),
    ("softmax", "7,45"),
    ("layernorm", "7,45"),
    ("elementwise", "1001"),
    ("matmul_bias_relu", "37,29,23"),
]
IDS = [f"{op}-{shape}" for op, shape in CASES]

#: Configurations built per case, and random draws allowed to find them.
BUILDS, DRAWS = 5, 200


def test_every_operator_has_a_case():
    assert {op for op, _ in CASES} == set(OPS)


def compare(got, want):
    """float32 agreement: relative 1e-4, absolute 1e-5 of the output's largest magnitude."""
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)


def random_configs(task, count, seed=0):
    """Up to `count` distinct configurations, all of the space when it is that small."""
    if len(task.space) <= count:
        return [task.space.get(i) for i in range(len(task.space))]
    rng, found = random.Random(seed), []
    while len(found) < count:
        config = task.space.random(rng)
        if config not in found:
            found.append(config)
    return found


@pytest.mark.parametrize("op, shape", CASES, ids=IDS)
def test_reference_matches_the_unscheduled_kernel(op, shape):
    """The oracle for everything below: the declaration, untouched, computes the reference."""
    task = task_for(op, shape)
    inputs = task.random_inputs(seed=1)
    kernel = tex.build(tex.create_schedule([t.op for t in task.outputs]),
                       task.inputs + task.outputs)
    compare(kernel(*inputs), task.reference(*inputs))


@pytest.mark.parametrize("op, shape", CASES, ids=IDS)
def test_every_configuration_instantiates_or_is_invalid(op, shape):
    """A configuration of a generated space makes a schedule or raises InvalidConfig (which
    the search skips); any other error means the space was collected wrongly."""
    task = task_for(op, shape)
    for config in random_configs(task, DRAWS):
        try:
            task.instantiate(config)
        except InvalidConfig:
            pass
        except TuneError as err:
            pytest.fail(f"{task.name}: {config.to_json()} raised {err}")


@pytest.mark.parametrize("op, shape", CASES, ids=IDS)
def test_generated_schedules_compute_the_reference(op, shape):
    task = task_for(op, shape)
    inputs = task.random_inputs(seed=2)
    want = task.reference_outputs(inputs)[0]
    built = 0
    for config in random_configs(task, DRAWS, seed=1):
        try:
            schedule, args = task.instantiate(config)
        except TuneError:  # InvalidConfig, or what the test above reports
            continue
        try:
            got = tex.build(schedule, args)(*inputs)
            compare(got, want)
        except (tex.TexError, AssertionError) as err:
            pytest.fail(f"{task.name}: {config.to_json()}: {type(err).__name__}: {err}")
        built += 1
        if built == BUILDS:
            break
    assert built >= min(2, len(task.space)), f"{task.name}: too few valid configurations"


@pytest.mark.parametrize("shape", ["1,3,11,12,16", "2,5,17,19,16,3,3,2,1"])
def test_convolutions_written_back_by_rows(shape):
    """Rule 2's row write-back on NCHW convolutions (the vector along the channels, the
    register tile along x): four valid configurations drawn at random match the reference."""
    task = task_for("conv2d", shape)
    inputs = task.random_inputs(seed=4)
    want = task.reference_outputs(inputs)[0]
    rows = [c for c in random_configs(task, len(task.space))
            if c.to_json()["Y.write_back"] == "row"]
    built = 0
    for config in random.Random(0).sample(rows, len(rows)):
        try:
            schedule, args = task.instantiate(config)
        except InvalidConfig:
            continue
        assert "Y_local_local" in str(tex.lower(schedule, args))
        compare(tex.build(schedule, args)(*inputs), want)
        built += 1
        if built == 4:
            break
    assert built == 4


@pytest.mark.parametrize("shape", ["1,5,9,11,32", "1,7,13,10,48,3,3,2,1"])
def test_convolutions_pack_their_weights_in_the_parallel_loop(shape):
    """Rule 2's convolution knobs: packing each block of output channels' weights in the
    parallel loop (the tiles then run serially inside it), and the input channels
    innermost in the reduction. Configurations drawn at random, with both knobs at each
    value, match the reference; each block packs its own panel."""
    task = task_for("conv2d", shape)
    assert task.space.knobs["Y.pack_at"].candidates[-1].to_json() == "parallel"
    assert task.space.knobs["Y.reduce_order"].candidates[-1].to_json() == "longest_last"
    inputs = task.random_inputs(seed=5)
    want = task.reference_outputs(inputs)[0]
    seen = set()
    for config in random_configs(task, len(task.space)):
        knobs = config.to_json()
        key = (knobs["Y.pack_at"], knobs["Y.reduce_order"])
        if key in seen:
            continue
        try:
            schedule, args = task.instantiate(config)
        except InvalidConfig:
            continue
        text = str(tex.lower(schedule, args))
        if key[0] == "parallel":  # the panel is allocated inside the parallel loop
            assert text.index("in parallel(") < text.index("W_global = allocate")
        first_reduction = min(text.index(f"for {r} in range(") for r in ("rc", "ry", "rx")
                              if f"for {r} in range(" in text)
        outermost = text[first_reduction:].split()[1]
        assert (outermost == "rc") == (key[1] == "declared"), outermost
        compare(tex.build(schedule, args)(*inputs), want)
        seen.add(key)
        if len(seen) == 4:
            break
    assert len(seen) == 4


def test_a_one_by_one_convolution_has_no_reduction_order_to_choose():
    """A 1x1 kernel leaves one reduction axis longer than 1: nothing to order."""
    task = task_for("conv2d", "1,16,8,8,32,1,1,1,0")
    assert "Y.reduce_order" not in task.space.knobs
    assert "Y.pack_at" in task.space.knobs
    assert "C.reduce_order" not in task_for("matmul", "64,48,40").space.knobs


@pytest.mark.parametrize("op, out", [("softmax", "softmax"), ("layernorm", "out")])
def test_rows_prefetch_the_next_row_of_the_input(op, out):
    """The rows rule's prefetch knob: the row loop prefetches A (not the 1-D gamma and
    beta of layernorm), and the kernels still compute the reference."""
    task = task_for(op, "7,45")
    on = [c for c in random_configs(task, len(task.space)) if c.to_json()[f"{out}.prefetch"]]
    assert on, f"{task.name}: no configuration prefetches"
    inputs = task.random_inputs(seed=3)
    want = task.reference_outputs(inputs)[0]
    built = 0
    for config in on:
        try:
            schedule, args = task.instantiate(config)
        except InvalidConfig:
            continue
        text = str(tex.lower(schedule, args))
        assert "prefetch(A[" in text and "prefetch(gamma" not in text, text
        compare(tex.build(schedule, args)(*inputs), want)
        built += 1
        if built == 3:
            break
    assert built == 3


# --- names, shapes and errors --------------------------------------------------------------

def test_task_names_round_trip():
    for op, shape in CASES:
        task = task_for(op, shape)
        name_op, name_shape, dtype = parse_task_name(task.name)
        assert (name_op, dtype) == (op, "float32")
        assert task_for(name_op, name_shape).workload_key == task.workload_key


def test_trailing_defaults_are_left_out_of_names():
    assert task_name("conv2d", (1, 64, 56, 56, 64, 3, 3, 1, 1)) == "conv2d 1,64,56,56,64"
    assert task_name("conv2d", (1, 64, 56, 56, 64, 3, 3, 2, 1)) == "conv2d 1,64,56,56,64,3,3,2"
    assert task_name("matmul", (8, 8, 8), "float64") == "matmul 8,8,8 float64"
    assert parse_task_name("matmul 8,8,8 float64") == ("matmul", (8, 8, 8), "float64")


def test_defaults_declare_the_same_workload():
    short = task_for("conv2d", "1,3,11,12,8")
    full = task_for("conv2d", (1, 3, 11, 12, 8, 3, 3, 1, 1))
    assert short.workload_key == full.workload_key and short.name == full.name


def test_float64_task():
    task = task_for("matmul", "5,9,7", dtype="float64")
    assert task.name == "matmul 5,9,7 float64"
    a, b = task.random_inputs()
    assert a.dtype == np.float64
    np.testing.assert_allclose(task.reference(a, b), a @ b)


@pytest.mark.parametrize("call, words", [
    (lambda: task_for("gemm", "4,4,4"), ["unknown operator 'gemm'", "matmul", "softmax"]),
    (lambda: task_for("matmul", "4,4"), ["matmul takes 3 shape values (M,N,K)", "got 2"]),
    (lambda: task_for("conv2d", "1,2,3"), ["5 to 9 shape values", "N,C,H,W,K[,R,S,stride,pad]"]),
    (lambda: task_for("softmax", "0,5"), ["rows must be positive, got 0"]),
    (lambda: task_for("conv2d", "1,2,2,2,4,5,5,1,0"), ["5x5 kernel does not fit"]),
    (lambda: task_for("matmul", "4,4,4", dtype="int8"), ["dtype must be one of", "'int8'"]),
    (lambda: parse_shape("4,x,4"), ["integers separated by commas", "'4,x,4'"]),
    (lambda: parse_task_name("my_template"), ["not the name of a registry operator"]),
])
def test_errors_name_what_is_wrong(call, words):
    with pytest.raises(TuneError) as info:
        call()
    for word in words:
        assert word in str(info.value)
