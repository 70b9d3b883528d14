"""`tex.autotvm`: AutoTVM's user surface (implemented in `autotune.autotvm`).

    from tex import autotvm                       # as `from tvm import autotvm`
    from tex.autotvm.tuner import XGBTuner        # as `from tvm.autotvm.tuner import ...`
    from tex.autotvm.task.space import SplitEntity

`import tex` does not load it (it needs the autotuner); this module sits in a
layer of its own, after `autotune`, and only re-exports. Its submodules are
registered under `tex.autotvm.*` too, so that `from tex.autotvm.X import Y`
imports the very modules of `autotune.autotvm`.
"""
import sys

from autotune import autotvm as _autotvm
from autotune.autotvm import *  # noqa: F401,F403 - the surface, re-exported
from autotune.autotvm import __all__  # noqa: F401

for _name in ("callback", "measure", "record", "space", "task", "tuner"):
    sys.modules[f"{__name__}.{_name}"] = getattr(_autotvm, _name)
sys.modules[f"{__name__}.task.space"] = _autotvm.space  # AutoTVM's path to the entities
