"""tex without its extras (setup.py's `cuda` and `tune`): importing tex and building
and running a CPU kernel need neither; building for CUDA, running on a GPU and the
XGBoost cost model raise tex's errors naming the extra to install. Each check runs
in a fresh interpreter where `cuda` and `xgboost` cannot be imported.
"""
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# A sitecustomize that makes `cuda` (cuda-bindings, cuda-pathfinder) and `xgboost`
# unimportable, as if their wheels were not installed.
SITECUSTOMIZE = """
import sys

class Uninstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("cuda", "xgboost"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Uninstalled())
"""

PROGRAM = """
import sys
import numpy as np
import tex
import autotune
from tex import target
assert "cuda" not in sys.modules and "xgboost" not in sys.modules

n = 64
A = tex.placeholder((n,), name="A")
B = tex.compute((n,), lambda i: A[i] * 2.0, name="B")
s = tex.create_schedule(B.op)
a = np.arange(n, dtype="float32")
assert np.array_equal(tex.build(s, [A, B])(a), a * 2)

target._LINUX_DRIVER_SIGNS = ("/",)  # as if a driver were there: probe cuda-python
assert target._present_gpu_arch() is None
assert not tex.runtime.gpu_available()

def error_of(call):
    try:
        call()
    except tex.TexError as err:
        return f"{type(err).__name__}: {err}"
    raise AssertionError(f"{call} did not raise")

s = tex.create_schedule(B.op)
bx, tx = s[B].split(B.op.axis[0], factor=32)
s[B].bind(bx, tex.thread_axis("blockIdx.x"))
s[B].bind(tx, tex.thread_axis("threadIdx.x"))
print(error_of(lambda: tex.build(s, [A, B], target="cuda")))
print(error_of(lambda: tex.empty_device((4,), "float32")))
print(error_of(lambda: autotune.cost_model.XGBoostModel()))
"""


def test_tex_works_without_its_extras_and_names_them_when_needed(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(filter(None, [str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path, TEX_CACHE_DIR="off")  # no cubin from the cache
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cuda_build, cuda_run, xgboost = out.stdout.splitlines()
    assert cuda_build.startswith("BuildError: ")
    assert "needs tex's cuda extra: pip install 'tex[cuda]'" in cuda_build
    assert cuda_run.startswith("DeviceError: ")
    assert "needs tex's cuda extra: pip install 'tex[cuda]'" in cuda_run
    assert xgboost.startswith("TuneError: ")
    assert "needs tex's tune extra: pip install 'tex[tune]'" in xgboost


def test_setup_reads_the_version_from_tex_version():
    import tex
    out = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == tex.__version__
