"""Helpers shared by the tests: random inputs and the compile-and-compare check."""
from __future__ import annotations

import numpy as np

import tex

RNG = np.random.default_rng(20261121)


def random_array(shape, dtype="float32", rng=RNG) -> np.ndarray:
    """Random, never-all-zero data of `dtype`."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        lo = 0 if dtype.kind == "u" else -50
        return rng.integers(lo, 50, size=shape).astype(dtype)
    return (rng.standard_normal(shape) + 0.1).astype(dtype)


def loops(schedule, args) -> list[str]:
    """The loops of the lowered program, in print order, as "kind name" ("range i_outer")."""
    found = []
    for line in str(tex.lower(schedule, args)).splitlines():
        words = line.split()
        if words and words[0] == "for":
            found.append(f"{words[3].split('(')[0]} {words[1]}")
    return found


def check(schedule, args, inputs, expected, rtol=1e-5, atol=1e-5, target="llvm"):
    """Build `schedule`, run it on `inputs` (outputs allocated) and compare with `expected`.

    Returns the kernel so tests can look at its source.
    """
    kernel = tex.build(schedule, args, target)
    results = kernel(*inputs)
    results = results if isinstance(results, tuple) else (results,)
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    assert len(results) == len(expected)
    for got, want in zip(results, expected):
        assert got.shape == want.shape, (got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return kernel
