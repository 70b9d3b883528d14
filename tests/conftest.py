"""Test settings: the loop-IR verifier runs after every pass in every test, and the disk
cache of compiled kernels lives in a temporary directory (removed at exit), never in the
user's ~/.cache. Both can be overridden from the environment (TEX_CACHE_DIR=off: none)."""
import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("TEX_VERIFY", "1")
if "TEX_CACHE_DIR" not in os.environ:
    os.environ["TEX_CACHE_DIR"] = tempfile.mkdtemp(prefix="tex-test-cache-")
    atexit.register(shutil.rmtree, os.environ["TEX_CACHE_DIR"], ignore_errors=True)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A disk cache of the test's own, empty, and empty in-memory caches (compiled
    modules, fingerprints and NVRTC's output), before and after the test."""
    from tex.runtime import clear_cache  # here: tex is imported after the settings above
    path = tmp_path / "cache"
    monkeypatch.setenv("TEX_CACHE_DIR", str(path))
    clear_cache()
    yield path
    clear_cache()
