"""`tex-tune export`: a library of the best kernels of tuning logs, one entry per operator
that dispatches on its sizes, called from Python, C and PyTorch."""
import contextlib
import dataclasses
import io
import json
import shutil
import subprocess

import numpy as np
import pytest

import tex
from autotune import cli, ops
from autotune import records as rec
from tex.codegen import object_file

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")

#: Two shapes of matmul (M, N, K) that the CPU rules tile, and one tuned for neither
#: that no vector width or tile divides.
TUNED = [(40, 36, 28), (48, 40, 24)]
UNTUNED = (37, 29, 19)


def tex_tune(*argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `tex-tune ARGV...`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tuned_logs(tmp_path_factory):
    """Logs of matmul tuned for real at the two TUNED shapes (3 trials each)."""
    folder = tmp_path_factory.mktemp("logs")
    logs = []
    for shape in TUNED:
        log = folder / f"matmul_{'_'.join(map(str, shape))}.jsonl"
        status, _, err = tex_tune("matmul", "--shape", ",".join(map(str, shape)), "--trials", 3,
                                  "--batch-size", 3, "-j", 1, "--model", "random",
                                  "--remeasure", 0, "--log", log)
        assert status == 0, err
        logs.append(log)
    return logs


@pytest.fixture(scope="module")
def exported(tuned_logs, tmp_path_factory):
    """(library path, what `tex-tune export` printed) for the tuned logs."""
    path = tmp_path_factory.mktemp("lib") / "ops.so"
    status, out, err = tex_tune("export", *tuned_logs, "-o", path)
    assert status == 0, err
    return path, out


def matmul_inputs(shape, seed=0):
    m, n, k = shape
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((m, k)).astype("float32"),
            rng.standard_normal((k, n)).astype("float32"))


def manifest_of(path) -> dict:
    data = path.read_bytes()
    at, size = object_file.symbol_extent(data, "tex_library_manifest")
    return json.loads(data[at:at + size].rstrip(b"\0"))


def test_one_entry_runs_the_tuned_shapes_and_any_other(exported):
    path, out = exported
    lib = tex.load_library(path)
    assert lib.names == ("matmul",)
    assert [v.name for v in lib.matmul.size_vars] == ["M", "K", "N"]
    for shape in TUNED + [UNTUNED, (1, 3, 2)]:
        a, b = matmul_inputs(shape)
        np.testing.assert_allclose(lib.matmul(a, b), a @ b, rtol=1e-4, atol=1e-4)
    entry = manifest_of(path)["kernels"][0]
    assert [c["sizes"] for c in entry["dispatch"]["specialized"]] == [[40, 28, 36], [48, 24, 40]]
    assert len(entry["dispatch"]["nearest"]) == 1  # a fallback per tuned shape
    assert out.splitlines()[0] == "matmul: matmul 40,36,28; matmul 48,40,24"
    assert "other sizes nearest matmul 40,36,28: the configuration of matmul 40,36,28" in out
    header = path.with_suffix(".h").read_text()
    assert "int matmul(void **buffers, const int64_t *sizes);" in header
    assert "sizes[0]: M (int64)" in header and "(48, 24, 40)" in header


C_PROGRAM = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "ops.h"

/* Runs matmul at M, N, K on made-up data; prints the largest error against a plain loop. */
static int run(int64_t m, int64_t n, int64_t k) {
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n);
    float *c = malloc(sizeof(float) * m * n);
    for (int64_t i = 0; i < m * k; i++) a[i] = (float)((i * 7919) % 101) / 50.0f - 1.0f;
    for (int64_t i = 0; i < k * n; i++) b[i] = (float)((i * 104729) % 97) / 48.0f - 1.0f;
    void *buffers[3] = {a, b, c};
    const int64_t sizes[3] = {m, k, n};  /* M, K, N: the header's order */
    int status = matmul(buffers, sizes);
    double worst = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double sum = 0;
            for (int64_t p = 0; p < k; p++) sum += (double)a[i * k + p] * b[p * n + j];
            if (fabs(sum - c[i * n + j]) > worst) worst = fabs(sum - c[i * n + j]);
        }
    printf("%d %g\n", status, worst);
    free(a); free(b); free(c);
    return status;
}

int main(void) {
    run(40, 36, 28);   /* tuned */
    run(37, 29, 19);   /* tuned for neither */
    void *none[3] = {0, 0, 0};
    const int64_t sizes[3] = {4, 4, 4};
    printf("%d %s\n", matmul(none, sizes), tex_last_error());
    return 0;
}
"""


def test_a_c_program_calls_the_dispatching_entry(exported, tmp_path):
    path, _ = exported
    program = tmp_path / "main.c"
    program.write_text(C_PROGRAM)
    binary = tmp_path / "main"
    subprocess.run(["cc", "-Wall", "-Werror", "-I", str(path.parent), str(program), str(path),
                    f"-Wl,-rpath,{path.parent}", "-lm", "-o", str(binary)], check=True)
    lines = subprocess.run([str(binary)], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    for line in lines[:2]:
        status, error = line.split()
        assert status == "0" and float(error) < 1e-3, line
    assert lines[2] == "1 matmul: buffers[0] (A) is NULL"


def test_torch_registers_the_dispatching_entry(exported):
    torch = pytest.importorskip("torch")
    import tex.torch
    lib = tex.load_library(exported[0])
    op = tex.torch.register("tex_export_test::matmul", lib.matmul)
    for shape in (TUNED[1], UNTUNED):
        a, b = matmul_inputs(shape, seed=1)
        got = op(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        np.testing.assert_allclose(got, a @ b, rtol=1e-4, atol=1e-4)


def write_records(log, workloads):
    """A log of one successful record per (op, shape, dtype) of `workloads`, with the first
    valid configuration of its space (written, not tuned)."""
    with rec.RecordWriter(log) as writer:
        for op, shape, dtype in workloads:
            task = ops.task_for(op, shape, dtype=dtype)
            writer.write(rec.Record(task.workload_key, str(task.target),
                                    task.space.first_valid().to_json(), task=task.name,
                                    times=(1e-3,)))
    return log


def test_other_dtypes_and_operators_of_constant_sizes(tmp_path):
    """matmul in float64 is an entry of its own (matmul_float64); layernorm, declared for
    constant sizes only, gets one entry per shape."""
    log = write_records(tmp_path / "mixed.jsonl", [("layernorm", (6, 20), "float32"),
                                                   ("matmul", (24, 40, 12), "float64")])
    path = tmp_path / "mixed.so"
    status, out, err = tex_tune("export", log, "-o", path)
    assert status == 0, err
    lib = tex.load_library(path)
    assert lib.names == ("layernorm_6_20", "matmul_float64")
    rng = np.random.default_rng(2)
    x, gamma, beta = (rng.standard_normal(s).astype("float32") for s in ((6, 20), 20, 20))
    np.testing.assert_allclose(lib.layernorm_6_20(x, gamma, beta),
                               ops.OPS["layernorm"].reference(x, gamma, beta), rtol=1e-4,
                               atol=1e-4)
    a, b = rng.standard_normal((13, 7)), rng.standard_normal((7, 30))
    np.testing.assert_allclose(lib.matmul_float64(a, b), a @ b, rtol=1e-10)


def test_records_of_other_hardware_are_left_out_unless_asked(tuned_logs, tmp_path):
    elsewhere = tmp_path / "elsewhere.jsonl"
    with rec.RecordWriter(elsewhere) as writer:
        for record in rec.load(tuned_logs[0]):
            writer.write(dataclasses.replace(record, hardware={"cpu_model": "Imaginary 9000"}))
    status, _, err = tex_tune("export", elsewhere, "-o", tmp_path / "a.so")
    assert status == 2
    assert "no records of this machine's hardware" in err and "Imaginary 9000" in err
    assert "--any-hardware" in err and not (tmp_path / "a.so").exists()
    status, out, err = tex_tune("export", elsewhere, "-o", tmp_path / "a.so", "--any-hardware")
    assert status == 0, err
    assert tex.load_library(tmp_path / "a.so").names == ("matmul",)
    here = write_records(tmp_path / "here.jsonl", [("softmax", (6, 20), "float32")])
    status, out, err = tex_tune("export", elsewhere, here, "-o", tmp_path / "b.so")
    assert status == 0, err
    assert "tex-tune: warning: left out matmul 40,36,28: 3 records measured on other " \
        "hardware (Imaginary 9000)" in err
    assert tex.load_library(tmp_path / "b.so").names == ("softmax",)


def test_export_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    status, _, err = tex_tune("export", empty, "-o", tmp_path / "a.so")
    assert status == 2 and "hold no measurement" in err
    status, _, err = tex_tune("export", tmp_path / "missing.jsonl", "-o", tmp_path / "a.so")
    assert status == 2 and "no tuning log at" in err
    unknown = tmp_path / "unknown.jsonl"
    with rec.RecordWriter(unknown) as writer:
        writer.write(rec.Record("compute:0123456789abcdef01234567", "llvm", {}, task="my_op 3",
                                times=(1e-3,)))
    status, _, err = tex_tune("export", unknown, "-o", tmp_path / "a.so")
    assert status == 2
    assert "cannot build my_op 3 (compute:0123456789abcdef01234567) again: it is not a " \
        "registry operator's; pass --file" in err
    assert not (tmp_path / "a.so").exists()


MY_OPS = '''
import tex

def my_scale(n, m):
    A = tex.placeholder((n, m), name="A")
    B = tex.compute((n, m), lambda i, j: A[i, j] * 3.0 + 1.0, name="B")
    return A, B
'''


def test_workloads_of_a_file_are_entries_of_their_own(tmp_path):
    from autotune.userfile import function_task
    source = tmp_path / "my_ops.py"
    source.write_text(MY_OPS)
    task = function_task(str(source), "my_scale", [12, 21], "llvm")
    log = tmp_path / "mine.jsonl"
    with rec.RecordWriter(log) as writer:
        writer.write(rec.Record(task.workload_key, "llvm", task.space.first_valid().to_json(),
                                task=task.name, times=(1e-3,)))
    status, _, err = tex_tune("export", log, "-o", tmp_path / "a.so")
    assert status == 2 and "cannot build my_scale 12,21" in err
    status, out, err = tex_tune("export", log, "-o", tmp_path / "a.so", "--file", source)
    assert status == 0, err
    assert out.strip() == "my_scale_12_21: my_scale 12,21"
    a = np.random.default_rng(4).standard_normal((12, 21)).astype("float32")
    np.testing.assert_allclose(tex.load_library(tmp_path / "a.so").my_scale_12_21(a),
                               a * 3 + 1, rtol=1e-5, atol=1e-6)


def test_a_configuration_that_needs_constant_sizes_falls_back_to_the_default(tmp_path,
                                                                               monkeypatch):
    """Where the tuned configuration cannot be applied to the symbolic declaration, the
    kernel for other sizes has the default schedule, and export says so."""
    from autotune import export
    from autotune.sketch import InvalidConfig

    def refuse(*args, **kwargs):
        raise InvalidConfig("a split factor needs a constant extent")
    monkeypatch.setattr(export, "space_for", refuse)
    log = write_records(tmp_path / "m.jsonl", [("matmul", (24, 40, 12), "float32")])
    status, out, err = tex_tune("export", log, "-o", tmp_path / "a.so")
    assert status == 0, err
    assert "other sizes nearest matmul 24,40,12: the default schedule (the configuration of " \
        "matmul 24,40,12 does not apply to symbolic sizes: InvalidConfig: a split factor" in out
    a, b = matmul_inputs(UNTUNED, seed=5)
    np.testing.assert_allclose(tex.load_library(tmp_path / "a.so").matmul(a, b), a @ b,
                               rtol=1e-4, atol=1e-4)
