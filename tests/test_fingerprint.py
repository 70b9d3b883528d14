"""Schedule fingerprints: equal for identical schedules, different for any change that
lowering would see, and what lets `tex.build` skip lowering for a schedule built before."""
from __future__ import annotations

import numpy as np
import pytest

import tex
import tex.driver
from tex.runtime import cache
from tex.schedule.fingerprint import Unfingerprintable, fingerprint
from checks import random_array


def declare(factor=4, vectorize=True, name="C", dtype="float32", scale=2.0):
    A = tex.placeholder((30, 21), dtype, name="A")
    B = tex.compute((30, 21), lambda i, j: A[i, j] * scale + 1.0, name=name)
    s = tex.create_schedule(B.op)
    jo, ji = s[B].split(B.op.axis[1], factor=factor)
    if vectorize:
        s[B].vectorize(ji)
    return s, [A, B]


def text(s, args, name="main"):
    return fingerprint(s, args, name)


def test_identical_schedules_have_equal_fingerprints():
    assert text(*declare()) == text(*declare())


@pytest.mark.parametrize("change", [
    {"factor": 8}, {"vectorize": False}, {"name": "D"}, {"dtype": "float64"}, {"scale": 3.0},
])
def test_any_change_to_the_declaration_or_schedule_changes_it(change):
    assert text(*declare(**change)) != text(*declare())


def test_primitives_arguments_and_names_change_it():
    base = text(*declare())
    s, args = declare()
    assert text(s, args, "other") != base
    s[args[1]].parallel(s[args[1]].leaf_iter_vars[0])
    assert text(s, args) != base
    s, (A, B) = declare()
    s.cache_read(A, "local", [B])
    assert text(s, [A, B]) != base


def test_variables_are_told_apart_by_identity_not_name():
    """Two reduce axes both called k: which one indexes which dimension matters."""
    def declare_sum(swap):
        A = tex.placeholder((6, 9), name="A")
        k1, k2 = tex.reduce_axis((0, 6), name="k"), tex.reduce_axis((0, 9), name="k")
        rows, cols = (k2, k1) if swap else (k1, k2)
        B = tex.compute((1,), lambda _: tex.sum(A[rows, cols] * (1.0 + rows), axis=[k1, k2]),
                        name="B")
        return tex.create_schedule(B.op), [A, B]

    assert text(*declare_sum(False)) != text(*declare_sum(True))


def test_a_second_identical_schedule_is_built_without_lowering(monkeypatch):
    cache.clear_cache()
    first = tex.build(*declare(factor=5))
    lowered = []
    monkeypatch.setattr(tex.driver, "schedule_to_func",
                        lambda *a: lowered.append(a) or pytest.fail("lowered again"))
    second = tex.build(*declare(factor=5))
    assert lowered == [] and second._compiled is first._compiled
    a = random_array((30, 21))
    np.testing.assert_allclose(second(a), a * 2.0 + 1.0, rtol=1e-6)


def test_an_object_it_cannot_write_means_lowering_as_usual():
    s, args = declare(factor=3)
    s[args[1]].mystery = object()  # an attribute no fingerprint knows
    with pytest.raises(Unfingerprintable):
        text(s, args)
    a = random_array((30, 21))
    np.testing.assert_allclose(tex.build(s, args)(a), a * 2.0 + 1.0, rtol=1e-6)
