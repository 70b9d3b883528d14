"""export_library / load_library: CPU kernels in one shared library with a C header, called
from another process, from C, and checked like the kernels they were."""
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tex
from checks import row_parallel_matmul
from tex.codegen import cpu_support, object_file
from tex.runtime.library_dispatch import distance

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")


def kernels():
    """A parallel, vectorized matmul over a symbolic row count, an elementwise kernel
    with exp (a vector math routine inlined into the kernel), and a stencil whose output
    size is an expression (n - 2) of an int32 size."""
    n = tex.var("n")
    x = tex.placeholder((n,), "float64", name="x")
    y = tex.compute((n,), lambda i: tex.exp(x[i]) * 2.0, name="y")
    m = tex.var("m", "int32")
    u = tex.placeholder((m,), "float32", name="u")
    v = tex.compute((m - 2,), lambda i: u[i] + u[i + 2], name="v")
    return [row_parallel_matmul("matmul"),
            tex.build(tex.create_schedule(y.op), [x, y], name="twice_exp"),
            tex.build(tex.create_schedule(v.op), [u, v], name="stencil")]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return tex.export_library(kernels(), tmp_path_factory.mktemp("lib") / "ops.so")


def test_kernels_run_in_another_process(library):
    script = textwrap.dedent(f"""
        import numpy as np, tex
        lib = tex.load_library({str(library)!r})
        rng = np.random.default_rng(0)
        a, b = rng.random((37, 64), dtype=np.float32), rng.random((64, 48), dtype=np.float32)
        x = rng.random(33)
        print(lib.names[:2], np.abs(lib.matmul(a, b) - a @ b).max(),
              np.abs(lib.twice_exp(x) - 2 * np.exp(x)).max())
        """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[:2] == ["('matmul',", "'twice_exp')"]
    assert float(out[2]) < 1e-4 and float(out[3]) < 1e-12


def test_loaded_kernels_check_arguments_like_built_ones(library):
    lib = tex.load_library(library)
    with pytest.raises(tex.ArgumentError, match=r"argument B \(#1\): dimension 0 should be 64"):
        lib.matmul(np.ones((5, 64), "float32"), np.ones((63, 48), "float32"))
    with pytest.raises(tex.ArgumentError, match="expected dtype float64, got float32"):
        lib.twice_exp(np.ones(5, "float32"))
    c = np.empty((5, 48), "float32")
    lib["matmul"](np.ones((5, 64), "float32"), np.ones((64, 48), "float32"), c)
    np.testing.assert_array_equal(c, 64.0)
    assert "C[" in lib.matmul.get_source("tex") and "define" in lib.matmul.get_source("ll")
    with pytest.raises(tex.ArgumentError, match="has no kernel 'conv'; it has matmul, twice_exp, "
                                                "stencil"):
        lib.conv


C_PROGRAM = r"""
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "ops.h"

static void report(const char *what, int code) {
    printf("%s: %d %s\n", what, code, code ? tex_last_error() : "");
}

static void *fail_in_a_thread(void *unused) {
    (void)unused;
    report("thread", twice_exp(NULL, NULL));
    return NULL;
}

int main(void) {
    static float a[37 * 64], b[64 * 48], c[37 * 48];
    for (int k = 0; k < 37 * 64; k++) a[k] = (float)(k % 7) - 3.0f;
    for (int k = 0; k < 64 * 48; k++) b[k] = (float)(k % 5) * 0.5f;
    void *mm[3] = {a, b, c};
    int64_t rows[1] = {37};
    double worst = 0.0;
    for (int threads = 0; threads < 2; threads++) {  /* every thread, then one */
        if (threads) tex_set_num_threads(1);
        memset(c, 0, sizeof c);
        report("matmul", matmul(mm, rows));
        for (int i = 0; i < 37; i++)
            for (int j = 0; j < 48; j++) {
                double want = 0.0;
                for (int k = 0; k < 64; k++) want += (double)a[i * 64 + k] * b[k * 48 + j];
                worst = fmax(worst, fabs(want - c[i * 48 + j]));
            }
    }
    printf("matmul error: %g\n", worst);
    double x[3] = {0.0, 1.0, -2.0}, y[3];
    void *xy[2] = {x, y};
    int64_t three[1] = {3};
    report("twice_exp", twice_exp(xy, three));
    printf("values: %.12f %.12f %.12f\n", y[0], y[1], y[2]);
    report("null buffers", twice_exp(NULL, three));
    report("null sizes", twice_exp(xy, NULL));
    void *missing[2] = {x, NULL};
    report("null buffer", twice_exp(missing, three));
    int64_t negative[1] = {-4};
    report("negative size", matmul(mm, negative));
    float u[8], v[6];
    void *uv[2] = {u, v};
    int64_t one[1] = {1}, wide[1] = {(int64_t)1 << 40};
    report("negative dimension", stencil(uv, one));
    report("size beyond its dtype", stencil(uv, wide));
    pthread_t thread;
    pthread_create(&thread, NULL, fail_in_a_thread, NULL);
    pthread_join(thread, NULL);
    printf("main thread still: %s\n", tex_last_error());
    return 0;
}
"""


def test_a_c_program_calls_the_kernels_and_gets_error_codes(library, tmp_path):
    header = library.with_suffix(".h").read_text()
    assert "int twice_exp(void **buffers, const int64_t *sizes);" in header
    assert "buffers[2]: C, float[n, 48], output" in header and "sizes[0]: n (int64)" in header
    assert "#define TEX_ERROR_SIZE 2" in header and "const char *tex_last_error(void);" in header
    program = tmp_path / "main.c"
    program.write_text(C_PROGRAM)
    binary = tmp_path / "main"
    subprocess.run(["cc", "-Wall", "-Werror", "-I", str(library.parent), str(program),
                    str(library), f"-Wl,-rpath,{library.parent}", "-lm", "-lpthread", "-o",
                    str(binary)], check=True)
    lines = subprocess.run([str(binary)], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    results = dict(line.split(": ", 1) for line in lines)
    assert results["matmul"] == "0 " and float(results["matmul error"]) < 1e-3
    assert results["twice_exp"] == "0 "
    np.testing.assert_allclose([float(v) for v in results["values"].split()],
                               2 * np.exp([0.0, 1.0, -2.0]), rtol=1e-12)
    assert results["null buffers"] == "1 twice_exp: buffers is NULL"
    assert results["null sizes"] == "1 twice_exp: sizes is NULL"
    assert results["null buffer"] == "1 twice_exp: buffers[1] (y) is NULL"
    assert results["negative size"] == "2 matmul: sizes[0] (n) is -4; a size cannot be " \
        "negative"
    assert results["negative dimension"] == "2 stencil: buffers[1] (v) dimension 0 is " \
        "int64(m - 2) = -1 for these sizes; a dimension cannot be negative"
    assert results["size beyond its dtype"] == "2 stencil: sizes[0] (m) is 1099511627776, " \
        "which does not fit its dtype int32"
    assert results["thread"] == "1 twice_exp: buffers is NULL"
    assert results["main thread still"] == results["size beyond its dtype"][2:]


THREADS_PROGRAM = r"""
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include "ops.h"

int main(int argc, char **argv) {
    static float a[64 * 64], b[64 * 48], c[64 * 48];
    void *buffers[3] = {a, b, c};
    int64_t rows[1] = {64};
    tex_set_num_threads(atoi(argv[1]));
    if (matmul(buffers, rows) != 0) return 1;
    int threads = 0;
    DIR *tasks = opendir("/proc/self/task");
    for (struct dirent *e; (e = readdir(tasks));) threads += e->d_name[0] != '.';
    printf("%d\n", threads);
    return 0;
}
"""


def test_tex_set_num_threads_bounds_the_pool(tmp_path, monkeypatch):
    monkeypatch.setenv("TEX_NUM_THREADS", "4")
    library = tex.export_library(kernels()[:1], tmp_path / "ops.so")
    program = tmp_path / "threads.c"
    program.write_text(THREADS_PROGRAM)
    binary = tmp_path / "threads"
    subprocess.run(["cc", "-Wall", "-Werror", "-I", str(tmp_path), str(program), str(library),
                    f"-Wl,-rpath,{tmp_path}", "-o", str(binary)], check=True)
    counts = [int(subprocess.run([str(binary), str(n)], capture_output=True, text=True,
                                 check=True).stdout) for n in (1, 2, 0)]
    assert counts == [1, 4, 4]  # the pool starts its workers at once; one thread runs alone


def test_a_loaded_kernel_raises_what_its_entry_point_returns(library):
    lib = tex.load_library(library)
    u, v = np.ones(5, "float32"), np.empty(3, "float32")
    np.testing.assert_array_equal(lib.stencil(u), [2.0, 2.0, 2.0])
    with pytest.raises(tex.ArgumentError, match=r"stencil: sizes\[0\] \(m\) is -1; a size "
                                                "cannot be negative"):
        lib.stencil._run([u, v], [-1])


def test_export_errors(tmp_path):
    matmul, twice_exp, _ = kernels()
    with pytest.raises(tex.ArgumentError, match="kernels #0 and #1 are both named 'matmul'"):
        tex.export_library([matmul, matmul], tmp_path / "a.so")
    with pytest.raises(tex.ArgumentError, match="give at least one kernel"):
        tex.export_library([], tmp_path / "a.so")
    x = tex.placeholder((8,), name="x")
    y = tex.compute((8,), lambda i: x[i] + 1.0, name="y")
    with pytest.raises(tex.ArgumentError, match="kernel #1 is a Schedule; it takes kernels "
                                                "built by tex.build"):
        tex.export_library([twice_exp, tex.create_schedule(y.op)], tmp_path / "a.so")
    odd = tex.build(tex.create_schedule(y.op), [x, y], name="not-a-name")
    with pytest.raises(tex.ArgumentError, match="'not-a-name', which is not a C identifier"):
        tex.export_library([odd], tmp_path / "a.so")


def test_loading_other_files_or_for_other_cpus(library, tmp_path, monkeypatch):
    plain = tmp_path / "plain.so"
    source = tmp_path / "plain.c"
    source.write_text("int answer(void) { return 42; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", str(source), "-o", str(plain)], check=True)
    with pytest.raises(tex.ArgumentError, match="is not a library written by "
                                                "tex.export_library"):
        tex.load_library(plain)
    with pytest.raises(tex.ArgumentError, match="cannot load"):
        tex.load_library(tmp_path / "missing.so")
    monkeypatch.setattr(cpu_support, "missing_features", lambda features: ["avx512f"])
    with pytest.raises(tex.DeviceError, match="compiled for a .* CPU with avx512f, which this "
                                              "CPU lacks"):
        tex.load_library(library)


CONSTRUCTOR = """
#include <fcntl.h>
__attribute__((constructor)) static void leave_a_mark(void) { creat("%s", 0600); }
"""


@pytest.mark.parametrize("manifest", [None, '{"sha256": "%s", "format": 3, "kernels": []}'
                                      % ("0" * 64)], ids=["no manifest", "forged manifest"])
def test_a_library_is_checked_before_any_of_its_code_runs(tmp_path, manifest):
    """The manifest is read from the file: a shared library without one, or with one that
    does not match the file, is refused before the dynamic loader runs its constructors."""
    mark = tmp_path / "constructor_ran"
    source = tmp_path / "other.c"
    source.write_text(CONSTRUCTOR % mark + (
        "" if manifest is None else
        f"const char tex_library_manifest[] = {json.dumps(manifest)};\n"))
    other = tmp_path / "other.so"
    subprocess.run(["cc", "-shared", "-fPIC", str(source), "-o", str(other)], check=True)
    expected = "is not a library written by" if manifest is None else "was changed after"
    with pytest.raises(tex.ArgumentError, match=expected):
        tex.load_library(other)
    assert not mark.exists()


def flip_first_code_byte(data: bytes) -> bytes:
    at, _ = object_file.symbol_extent(data, "twice_exp")  # the kernel's first instruction
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


@pytest.mark.parametrize("change", [flip_first_code_byte, lambda data: data + b"\0"],
                         ids=["a byte of code", "a byte appended"])
def test_a_library_changed_after_export_is_refused(library, tmp_path, change):
    changed = tmp_path / "changed.so"
    changed.write_bytes(change(library.read_bytes()))
    with pytest.raises(tex.ArgumentError, match="was changed after tex.export_library wrote"):
        tex.load_library(changed)
    assert tex.load_library(library).names == ("matmul", "twice_exp", "stencil")


def scaled_matmul(M, N, K, scale: float, name: str):
    """C = scale * A @ B at the sizes given (ints or size variables), its columns split by
    4 (which divides none of the sizes below): `scale` tells which kernel of a dispatch
    ran."""
    A = tex.placeholder((M, K), name="A")
    B = tex.placeholder((K, N), name="B")
    k = tex.reduce_axis((0, K), name="k")
    C = tex.compute((M, N), lambda i, j: tex.sum(A[i, k] * B[k, j] * scale, axis=k), name="C")
    s = tex.create_schedule(C.op)
    s[C].split(C.op.axis[1], factor=4)
    return tex.build(s, [A, B, C], name=name)


def symbolic_matmul(scale: float, name: str):
    return scaled_matmul(*(tex.size_var(n) for n in "MNK"), scale, name)


def test_a_dispatch_runs_the_kernel_for_the_sizes_of_each_call(tmp_path):
    """Specialisations run at their exact sizes, and every other call runs the fallback of
    the specialisation nearest it (sum of |log| ratios); the entry is a Kernel of symbolic
    sizes, checked like one, and the manifest lists what it dispatches to."""
    group = tex.dispatch("matmul", [scaled_matmul(9, 6, 5, 2.0, "small"),
                                    scaled_matmul(30, 70, 90, 3.0, "large")],
                         fallback=[symbolic_matmul(4.0, "near_small"),
                                   symbolic_matmul(5.0, "near_large")])
    single = tex.dispatch("single", [scaled_matmul(9, 6, 5, 2.0, "small")],
                          fallback=symbolic_matmul(6.0, "any"))
    path = tex.export_library([group, single], tmp_path / "ops.so")
    lib = tex.load_library(path)
    assert lib.names == ("matmul", "single")
    assert [v.name for v in lib.matmul.size_vars] == ["M", "K", "N"]
    rng = np.random.default_rng(3)
    for (m, n, k), matmul_scale, single_scale in [
            ((9, 6, 5), 2, 2), ((30, 70, 90), 3, 6), ((7, 5, 6), None, 6),
            ((41, 60, 77), None, 6), ((9, 6, 6), None, 6), ((12, 25, 30), None, 6)]:
        if matmul_scale is None:  # the fallback of the nearest specialisation
            near = [distance((m, k, n), sizes) for sizes, _ in group.cases]
            matmul_scale = 4 if near[0] <= near[1] else 5
        a = rng.standard_normal((m, k)).astype("float32")
        b = rng.standard_normal((k, n)).astype("float32")
        np.testing.assert_allclose(lib.matmul(a, b), matmul_scale * (a @ b), rtol=1e-4,
                                   atol=1e-4)
        np.testing.assert_allclose(lib.single(a, b), single_scale * (a @ b), rtol=1e-4,
                                   atol=1e-4)
    with pytest.raises(tex.ArgumentError, match=r"argument B \(#1\): dimension 0 is K = 6, "
                                                r"but argument A \(#0\) dimension 1 set K = 5"):
        lib.matmul(np.ones((9, 5), "float32"), np.ones((6, 6), "float32"))
    at, size = object_file.symbol_extent(path.read_bytes(), "tex_library_manifest")
    manifest = json.loads(path.read_bytes()[at:at + size].rstrip(b"\0"))
    entry = manifest["kernels"][0]
    assert manifest["format"] == 5
    assert [(c["name"], c["sizes"]) for c in entry["dispatch"]["specialized"]] == \
        [("small", [9, 5, 6]), ("large", [30, 90, 70])]
    assert entry["dispatch"]["fallback"] == "near_small"
    assert [f["name"] for f in entry["dispatch"]["nearest"]] == ["near_large"]
    assert manifest["kernels"][1]["dispatch"]["nearest"] == []
    header = path.with_suffix(".h").read_text()
    assert "int matmul(void **buffers, const int64_t *sizes);" in header
    assert "(M, K, N) where it has one:\n     (9, 5, 6)\n     (30, 90, 70)" in header


def test_dispatch_errors():
    fallback = symbolic_matmul(1.0, "any")
    with pytest.raises(tex.ArgumentError, match=r"specialisations #0 and #1 are both for "
                                                "sizes M=9, K=5, N=6"):
        tex.dispatch("mm", [scaled_matmul(9, 6, 5, 1.0, "a"), scaled_matmul(9, 6, 5, 1.0, "b")],
                     fallback)
    with pytest.raises(tex.ArgumentError, match="specialisation #0 .any. has size variables "
                                                r"\(M, K, N\); a specialisation has constant"):
        tex.dispatch("mm", [fallback], fallback)
    x = tex.placeholder((9, 5), "float64", name="A")
    y = tex.placeholder((5, 6), "float64", name="B")
    z = tex.compute((9, 6), lambda i, j: x[i, 0] + y[0, j], name="C")
    other = tex.build(tex.create_schedule(z.op), [x, y, z], name="f64")
    with pytest.raises(tex.ArgumentError, match=r"specialisation #0 \(f64\) takes A "
                                                r"float64\[9, 5\].*; the fallback any takes "
                                                r"A float32\[M, K\]"):
        tex.dispatch("mm", [other], fallback)
    with pytest.raises(tex.ArgumentError, match="2 fallbacks for 1 specialisations"):
        tex.dispatch("mm", [scaled_matmul(9, 6, 5, 1.0, "a")], [fallback, fallback])
    with pytest.raises(tex.ArgumentError, match="fallback #0 must be a CPU tex.Kernel, got int"):
        tex.dispatch("mm", [], 3)
    with pytest.raises(tex.ArgumentError, match="the name 'tex_fallback_x' is tex's own"):
        tex.export_library([tex.dispatch("tex_fallback_x", [], fallback)], "unused.so")
