"""The tutorials: each notebook matches its paired .py and runs from top to bottom.

The notebooks run at a small size (TEX_TUTORIAL_SIZE=128, and TEX_TUTORIAL_TRIALS=2 for
those that tune) in a fresh kernel of
this very interpreter: the kernel spec is written to a temporary folder, so
nothing needs `python -m ipykernel install` and a user's own "python3" kernel
spec (which may point at another Python) is never picked up.
"""
import json
import pathlib
import sys

import jupytext
import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

TUTORIALS = pathlib.Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
KERNEL = "python3"


def cells(notebook):
    """(type, source) of every cell, without outputs or metadata."""
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_every_tutorial_is_paired():
    scripts = sorted(TUTORIALS.glob("*.py"))
    assert [p.stem for p in NOTEBOOKS] == [p.stem for p in scripts]
    assert NOTEBOOKS, "no tutorials found"


@pytest.mark.parametrize("notebook_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_matches_script(notebook_path):
    script = jupytext.read(notebook_path.with_suffix(".py"))
    notebook = nbformat.read(notebook_path, as_version=4)
    assert cells(notebook) == cells(script), (
        f"{notebook_path.name} is out of date with its .py; regenerate it with "
        f"`jupytext --sync {notebook_path.with_suffix('.py')}`")


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory):
    """A kernel-spec manager whose "python3" runs ipykernel on this interpreter."""
    root = tmp_path_factory.mktemp("kernels")
    (root / KERNEL).mkdir()
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (tex tests)", "language": "python"}
    (root / KERNEL / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(root)])


@pytest.mark.parametrize("notebook_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(notebook_path, kernel_specs, monkeypatch):
    monkeypatch.setenv("TEX_TUTORIAL_SIZE", "128")   # the kernel inherits the environment
    monkeypatch.setenv("TEX_TUTORIAL_TRIALS", "2")
    notebook = nbformat.read(notebook_path, as_version=4)
    manager = KernelManager(kernel_name=KERNEL, kernel_spec_manager=kernel_specs)
    client = nbclient.NotebookClient(notebook, km=manager, kernel_name=KERNEL, timeout=120,
                                     resources={"metadata": {"path": str(TUTORIALS)}})
    client.execute()
    printed = "".join(output.get("text", "") for cell in notebook.cells
                      if cell.cell_type == "code" for output in cell.outputs)
    assert "GFLOP/s" in printed or "GB/s" in printed   # every lesson times a CPU kernel
