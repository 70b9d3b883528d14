"""The benchmark suite's hand schedules, at small sizes that divide none of their factors.

bench/ times these schedules at the sizes of bench/cases.py; here each is
built at awkward sizes and compared with NumPy, so a schedule that the suite
reports fast is also known to be right away from its favourite shapes.
"""
from __future__ import annotations

import numpy as np
import pytest

import tex

from bench import schedules
from bench.cases import CASES, conv2d_reference, layernorm_reference, softmax_reference
from checks import check, random_array


@pytest.mark.parametrize("config", [
    {"mr": 6, "nr": 64},
    {"mr": 6, "nr": 64, "unroll_k": 4},
    {"mr": 4, "nr": 48},
    {"mr": 6, "nr": 64, "pack_a": True},
    {"mr": 4, "nr": 32, "kc": 24},
])
@pytest.mark.parametrize("shape", [(37, 75, 29), (13, 130, 70)])
def test_matmul(config, shape):
    m, n, k = shape
    a, b = random_array((m, k)), random_array((k, n))
    check(*schedules.matmul(m, n, k, **config), [a, b], a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("config", [{"mr": 6, "nr": 64, "unroll_k": 4},
                                    {"mr": 4, "nr": 32, "kc": 40}])
def test_batch_matmul(config):
    batch, m, n, k = 3, 23, 70, 45
    a, b = random_array((batch, m, k)), random_array((batch, k, n))
    check(*schedules.matmul(m, n, k, batch=batch, **config), [a, b], a @ b,
          rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kb, wb", [(32, 8), (16, 5)])
def test_conv2d(kb, wb):
    n, c, h, w, k = 2, 5, 9, 13, 20
    data, weight = random_array((n, c, h, w)), random_array((k, c, 3, 3))
    check(*schedules.conv2d(n, c, h, w, k, kb=kb, wb=wb), [data, weight],
          conv2d_reference(data, weight).astype(np.float32), rtol=1e-4, atol=1e-4)


def test_row_sum():
    a = random_array((37, 203))
    check(*schedules.row_sum(37, 203), [a], a.sum(axis=1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunks", [1, 5])
def test_full_sum(chunks):
    a = random_array((41, 203))
    check(*schedules.full_sum(41, 203, chunks=chunks), [a], np.array([a.sum()], np.float32),
          rtol=1e-4, atol=1e-3)


def test_softmax():
    x = 4 * random_array((19, 333))
    check(*schedules.softmax(19, 333), [x], softmax_reference(x).astype(np.float32),
          rtol=1e-5, atol=1e-7)


def test_layernorm():
    x, gamma, beta = random_array((19, 333)), random_array((333,)), random_array((333,))
    check(*schedules.layernorm(19, 333), [x, gamma, beta],
          layernorm_reference(x, gamma, beta).astype(np.float32), rtol=1e-4, atol=1e-4)


def test_fused_elementwise():
    a, b, c = (random_array((70001,)) for _ in range(3))
    check(*schedules.fused_elementwise(70001, chunk=1000), [a, b, c], np.maximum(a * b + c, 0))


def test_every_case_has_a_tex_schedule():
    from bench.systems import tex_impl
    assert sorted(tex_impl.FACTORIES) == sorted(case.name for case in CASES)


#: Other x86-64 levels this host can run: AVX2 (16 registers of 8 floats) and SSE4.2 (16 of 4).
OTHER_LEVELS = ["llvm -mcpu=x86-64-v3", "llvm -mcpu=x86-64-v2"]


def _schedules_at_awkward_sizes(target):
    """(name, (schedule, args), inputs, expected) for every hand schedule, its parameters
    derived from `target`."""
    a, b = random_array((37, 29)), random_array((29, 75))
    ab, bb = random_array((3, 23, 45)), random_array((3, 45, 70))
    data, weight = random_array((2, 5, 9, 13)), random_array((20, 5, 3, 3))
    rows = random_array((19, 333))
    gamma, beta = random_array((333,)), random_array((333,))
    v = [random_array((70001,)) for _ in range(3)]
    return [
        ("matmul", schedules.matmul(37, 75, 29, target=target), [a, b], a @ b),
        ("bmm", schedules.matmul(23, 70, 45, batch=3, target=target), [ab, bb], ab @ bb),
        ("conv2d", schedules.conv2d(2, 5, 9, 13, 20, target=target), [data, weight],
         conv2d_reference(data, weight).astype(np.float32)),
        ("row_sum", schedules.row_sum(19, 333, target=target), [rows], rows.sum(axis=1)),
        ("full_sum", schedules.full_sum(19, 333, target=target), [rows],
         np.array([rows.sum()], np.float32)),
        ("softmax", schedules.softmax(19, 333, target=target), [rows],
         softmax_reference(rows).astype(np.float32)),
        ("layernorm", schedules.layernorm(19, 333, target=target), [rows, gamma, beta],
         layernorm_reference(rows, gamma, beta).astype(np.float32)),
        ("fused_ew", schedules.fused_elementwise(70001, target=target), v,
         np.maximum(v[0] * v[1] + v[2], 0)),
    ]


@pytest.mark.parametrize("target", OTHER_LEVELS)
def test_every_schedule_built_for_another_x86_level(target):
    """Each schedule, its tiles and widths derived from `target`, built for it and run here."""
    for name, (s, args), inputs, expected in _schedules_at_awkward_sizes(target):
        kernel = check(s, args, inputs, expected, rtol=1e-4, atol=1e-3, target=target)
        assert "zmm" not in kernel.get_source("asm"), f"{name}: AVX-512 code for {target}"


def test_schedule_parameters_follow_the_target():
    avx512, avx2, sse = "llvm -mcpu=x86-64-v4", "llvm -mcpu=x86-64-v3", "llvm -mcpu=x86-64-v2"
    assert schedules.matmul_config(avx512) == {"mr": 6, "nr": 64, "kc": None,
                                               "pack_a": False, "unroll_k": 2}
    assert (schedules.matmul_config(avx2)["mr"], schedules.matmul_config(avx2)["nr"]) == (6, 16)
    assert schedules.matmul_config(sse)["nr"] == 8
    assert schedules.conv_tile(avx512) == (16, 14) and schedules.conv_tile(avx2)[0] == 8
    assert [schedules.vector_lanes(t) for t in (avx512, avx2, sse)] == [16, 8, 4]
    assert [schedules.reduce_lanes(t) for t in (avx512, avx2, sse)] == [64, 32, 16]
    assert schedules.elementwise_chunk(avx512) == 1 << 16  # 1 MiB of L2, 4 arrays
    assert schedules.row_prefetch("llvm -mcpu=znver4") == 0
    assert schedules.row_prefetch("llvm -mcpu=sapphirerapids") == 1
    for t in (avx512, avx2, sse):  # the matmul tile, B's vectors and a broadcast fit
        config, lanes = schedules.matmul_config(t), schedules.vector_lanes(t)
        vectors = config["nr"] // lanes
        assert (config["mr"] + 1) * vectors + 1 <= tex.target.as_target(t).vector_registers
