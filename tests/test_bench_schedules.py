"""The benchmark suite's hand schedules, at small sizes that divide none of their factors.

bench/ times these schedules at the sizes of bench/cases.py; here each is
built at awkward sizes and compared with NumPy, so a schedule that the suite
reports fast is also known to be right away from its favourite shapes.
"""
from __future__ import annotations

import numpy as np
import pytest

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
