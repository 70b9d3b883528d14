"""Test settings: the loop-IR verifier runs after every pass in every test, and the disk
cache of compiled kernels lives in a temporary directory (removed at exit), never in the
user's ~/.cache. Both can be overridden from the environment (TEX_CACHE_DIR=off: none)."""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TEX_VERIFY", "1")
if "TEX_CACHE_DIR" not in os.environ:
    os.environ["TEX_CACHE_DIR"] = tempfile.mkdtemp(prefix="tex-test-cache-")
    atexit.register(shutil.rmtree, os.environ["TEX_CACHE_DIR"], ignore_errors=True)
