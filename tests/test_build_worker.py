"""TEX_BUILD_TIMEOUT: LLVM builds in a helper process, stopped when they run over."""
import numpy as np
import pytest

import tex
from checks import random_array
from tex.codegen import build_worker


def scaled(factor: float):
    A = tex.placeholder((37,), "float32", name="A")
    B = tex.compute((37,), lambda i: A[i] * factor, name="B")
    s = tex.create_schedule(B.op)
    s[B].split(B.op.axis[0], factor=8)
    return s, [A, B]


@pytest.fixture
def no_disk_cache(monkeypatch):
    monkeypatch.setenv("TEX_CACHE_DIR", "off")
    yield
    build_worker._stop()


def test_builds_in_the_worker_are_right_and_reuse_it(monkeypatch, no_disk_cache):
    monkeypatch.setenv("TEX_BUILD_TIMEOUT", "120")
    a = random_array((37,))
    np.testing.assert_allclose(tex.build(*scaled(3.25))(a), a * 3.25)
    first = build_worker._worker[0]
    np.testing.assert_allclose(tex.build(*scaled(-1.5))(a), a * -1.5)
    assert build_worker._worker[0] is first and first.is_alive()


def test_a_build_over_the_bound_stops_llvm_and_the_next_one_works(monkeypatch, no_disk_cache):
    monkeypatch.setenv("TEX_BUILD_TIMEOUT", "120")
    tex.build(*scaled(2.0))  # the worker is up
    worker = build_worker._worker[0]
    monkeypatch.setenv("TEX_BUILD_TIMEOUT", "1e-9")
    with pytest.raises(tex.BuildError, match="took more than 1e-09 s.*TEX_BUILD_TIMEOUT"):
        tex.build(*scaled(5.0))
    assert not worker.is_alive() and build_worker._worker is None  # killed, not left running
    monkeypatch.setenv("TEX_BUILD_TIMEOUT", "120")
    a = random_array((37,))
    np.testing.assert_allclose(tex.build(*scaled(5.0))(a), a * 5.0)


@pytest.mark.parametrize("value", ["0", "-3", "soon", "inf"])
def test_a_bad_bound_is_a_config_error(monkeypatch, no_disk_cache, value):
    monkeypatch.setenv("TEX_BUILD_TIMEOUT", value)
    with pytest.raises(tex.ConfigError, match="TEX_BUILD_TIMEOUT is a positive number"):
        tex.build(*scaled(7.0))
