"""Schedule fingerprints: equal for identical schedules, different for any change that
lowering would see, and what lets `tex.build` skip lowering for a schedule built before."""
from __future__ import annotations

import numpy as np
import pytest

import tex
import tex.driver
from tex.intrin import cuda_wmma
from tex.runtime import cache
from tex.schedule.fingerprint import (Unfingerprintable, fingerprint, lowering_identity,
                                      process_local)
from tex.schedule.tensorize import loop_nest
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


# --- tensorize: the intrinsic is part of the fingerprint ----------------------------------

def lower_add(inputs, outputs):
    """c = a + b on a 4x4 tile, as plain loops."""
    (a, b), (c,) = inputs, outputs
    return loop_nest((4, 4), lambda i, j: c.store(a.load(i, j) + b.load(i, j), i, j))


def add_intrin(name="add4x4", lower_fn=lower_add, op=lambda x, y: x + y):
    a = tex.placeholder((4, 4), name="a")
    b = tex.placeholder((4, 4), name="b")
    return tex.decl_tensor_intrin(
        tex.compute((4, 4), lambda i, j: op(a[i, j], b[i, j]), name="c"), lower_fn, name=name)


ADD = add_intrin()


def tensorized(intrin=ADD, at_rows=True):
    """C = A + B (8 x 12) with 4x4 tiles done by `intrin`: tensorized at the tile's row
    loop, or with a 4x1 split of the columns, at its column loop (a 1-row intrinsic)."""
    A = tex.placeholder((8, 12), name="A")
    B = tex.placeholder((8, 12), name="B")
    C = tex.compute((8, 12), lambda i, j: A[i, j] + B[i, j], name="C")
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(*C.op.axis, 4, 4)
    if at_rows:
        s[C].tensorize(ii, intrin)
    else:
        s[C].reorder(io, jo, ji, ii)  # the tile's loops in another order: (ji, ii)
        s[C].tensorize(ji, intrin)
    return s, [A, B, C]


def test_a_tensorized_schedule_twice_is_one_fingerprint_and_a_cache_hit(monkeypatch):
    assert text(*tensorized()) == text(*tensorized())
    assert text(*tensorized(add_intrin())) == text(*tensorized())  # declared anew, same parts
    cache.clear_cache()
    first = tex.build(*tensorized())
    monkeypatch.setattr(tex.driver, "schedule_to_func",
                        lambda *a: pytest.fail("lowered again"))
    second = tex.build(*tensorized())
    assert second._compiled is first._compiled
    a, b = random_array((8, 12)), random_array((8, 12))
    np.testing.assert_allclose(second(a, b), a + b, rtol=1e-6)


def test_another_intrinsic_or_axis_changes_it():
    base = text(*tensorized())
    assert text(*tensorized(add_intrin(name="other"))) != base
    assert text(*tensorized(add_intrin(op=lambda x, y: y + x))) != base
    same_code = lambda inputs, outputs: lower_add(inputs, outputs)  # noqa: E731
    assert text(*tensorized(add_intrin(lower_fn=same_code))) != base
    assert text(*tensorized(at_rows=False)) != base


def test_a_process_local_fingerprint_keeps_its_kernel_off_the_disk(monkeypatch, tmp_path):
    monkeypatch.setenv("TEX_CACHE_DIR", str(tmp_path))
    cache.clear_cache()
    local = tensorized()
    assert process_local(text(*local))
    tex.build(*local)
    assert not list(tmp_path.glob("*.texk"))
    A = tex.placeholder((8, 12), name="A")
    B = tex.compute((8, 12), lambda i, j: A[i, j] + 1.0, name="B")
    plain = tex.create_schedule(B.op), [A, B]
    assert not process_local(text(*plain))
    tex.build(*plain)
    assert len(list(tmp_path.glob("*.texk"))) == 1


def test_lowering_functions_are_named_by_tex_or_by_identity():
    """tex's own are named (its sources are in the disk key); any other is this object
    in this process only, so closures from one definition are told apart."""
    assert lowering_identity(cuda_wmma._lower) == "function('tex.intrin.cuda_wmma._lower')"
    assert lowering_identity(lower_add) == lowering_identity(lower_add)
    assert lowering_identity(lower_add).startswith("function(local,")

    def closure(scale):
        return lambda inputs, outputs: scale
    assert lowering_identity(closure(1)) != lowering_identity(closure(2))

    class Lowering:  # a callable that cannot be referred to weakly: kept alive instead
        __slots__ = ()

        def __call__(self, inputs, outputs):
            return None
    held = Lowering()
    assert lowering_identity(held) == lowering_identity(held)
    assert lowering_identity(Lowering()) != lowering_identity(Lowering())
