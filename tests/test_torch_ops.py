"""tex.torch.register: tex kernels as PyTorch operators, eager, under torch.compile with
static and dynamic shapes, trained through a backward of tex kernels, and refusing
tensors they cannot take in PyTorch's words."""
import subprocess
import sys

import numpy as np
import pytest

import tex
from checks import row_parallel_matmul
from tex.runtime.cuda_device import gpu_available

torch = pytest.importorskip("torch")
import tex.torch  # noqa: E402  (after the skip: it imports torch)
from torch._dynamo.testing import CompileCounterWithBackend  # noqa: E402


def multiply_kernel():
    """z = x * y elementwise, float64, over any (n, m)."""
    n, m = tex.var("n"), tex.var("m")
    x = tex.placeholder((n, m), "float64", name="x")
    y = tex.placeholder((n, m), "float64", name="y")
    z = tex.compute((n, m), lambda i, j: x[i, j] * y[i, j], name="z")
    return tex.build(tex.create_schedule(z.op), [x, y, z], name="multiply")


def pairs_kernel():
    """Two outputs, one of size n - 1: sums and differences of neighbours."""
    n = tex.var("n")
    x = tex.placeholder((n,), "float32", name="x")
    s = tex.compute((n - 1,), lambda i: x[i] + x[i + 1], name="s")
    d = tex.compute((n - 1,), lambda i: x[i + 1] - x[i], name="d")
    return tex.build(tex.create_schedule([s.op, d.op]), [x, s, d], name="pairs")


@pytest.fixture(scope="module")
def matmul():
    return tex.torch.register("textest::matmul", row_parallel_matmul())


@pytest.fixture(scope="module")
def multiply():
    """multiply with a backward made of the same tex kernel, run through the operator."""
    def backward(inputs, outputs, grad_outputs):
        (x, y), (g,) = inputs, grad_outputs
        return op(g, y), op(g, x)
    op = tex.torch.register("textest::multiply", multiply_kernel(), backward=backward)
    return op



@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "int8"])
def test_half_precision_and_integer_tensors_reach_the_kernel_as_they_are(dtype):
    """NumPy has no bfloat16: the operator, and the kernel called directly, take such
    tensors by their bits."""
    n = tex.var("n")
    x = tex.placeholder((n,), dtype, name="x")
    y = tex.compute((n,), lambda i: x[i] * tex.const(3, dtype), name="y")
    kernel = tex.build(tex.create_schedule(y.op), [x, y], name="triple")
    op = tex.torch.register(f"textest::triple_{dtype}", kernel)
    t = (torch.randn(13) * 10).to(getattr(torch, dtype))
    assert torch.equal(op(t), t * 3)
    out = torch.empty_like(t)
    kernel(t, out)
    assert torch.equal(out, t * 3)


@pytest.fixture(scope="module")
def pairs():
    return tex.torch.register("textest::pairs", pairs_kernel())


def test_eager_calls_match_torch(matmul, pairs):
    a, b = torch.randn(37, 64), torch.randn(64, 48)
    c = matmul(a, b)
    assert c.shape == (37, 48) and c.dtype == torch.float32
    torch.testing.assert_close(c, a @ b, rtol=1e-4, atol=1e-4)
    assert matmul is torch.ops.textest.matmul
    x = torch.randn(10)
    s, d = pairs(x)
    torch.testing.assert_close(s, x[:-1] + x[1:])
    torch.testing.assert_close(d, x[1:] - x[:-1])


def test_repeated_shapes_and_new_ones_alternate(pairs, matmul):
    """A shape seen before goes straight to the kernel; a new one is checked first, and
    a bad one is refused however often a good one came before."""
    for n in (10, 3, 10, 7, 3):
        x = torch.randn(n)
        s, d = pairs(x)
        torch.testing.assert_close(s, x[:-1] + x[1:])
        torch.testing.assert_close(d, x[1:] - x[:-1])
    a, b = torch.randn(9, 64), torch.randn(64, 48)
    for _ in range(2):
        torch.testing.assert_close(matmul(a, b), a @ b, rtol=1e-4, atol=1e-4)
    with pytest.raises(tex.ArgumentError, match="dimension"):
        matmul(a, torch.randn(63, 48))
    view = torch.randn(20, 64)[5:14]  # a contiguous view at an offset
    torch.testing.assert_close(matmul(view, b), view @ b, rtol=1e-4, atol=1e-4)


def test_the_kernel_writes_torch_memory_without_copies(matmul, monkeypatch):
    seen = []
    original = torch.empty

    def recording_empty(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]
    monkeypatch.setattr(torch, "empty", recording_empty)
    a, b = torch.randn(8, 64), torch.randn(64, 48)
    c = matmul(a, b)
    assert len(seen) == 1 and c.data_ptr() == seen[0].data_ptr()


def test_a_kernel_called_with_cpu_tensors_uses_their_memory():
    kernel = multiply_kernel()
    x, y = torch.rand(5, 7, dtype=torch.float64), torch.rand(5, 7, dtype=torch.float64)
    z = torch.zeros(5, 7, dtype=torch.float64)
    kernel(x, y, z)  # written in place: the output tensor's own memory
    torch.testing.assert_close(z, x * y)
    torch.testing.assert_close(torch.from_numpy(kernel(x, y)), x * y)
    with pytest.raises(tex.ArgumentError, match="not C-contiguous"):
        kernel(x.t().contiguous().t(), y, z)
    with pytest.raises(tex.ArgumentError, match=r"detach\(\)"):
        kernel(x.requires_grad_(), y, z)


@pytest.mark.skipif(__import__("shutil").which("cc") is None, reason="needs a C compiler")
def test_a_kernel_of_a_loaded_library(tmp_path):
    path = tex.export_library([row_parallel_matmul("library_matmul")], tmp_path / "ops.so")
    op = tex.torch.register("textest::library_matmul", tex.load_library(path).library_matmul)
    a, b = torch.randn(9, 64), torch.randn(64, 48)
    torch.testing.assert_close(op(a, b), a @ b, rtol=1e-4, atol=1e-4)


def test_compiled_with_static_shapes_without_graph_breaks(matmul):
    counter = CompileCounterWithBackend("inductor")
    f = torch.compile(lambda a, b: torch.relu(matmul(a, b)) + 1.0, backend=counter,
                      fullgraph=True, dynamic=False)
    a, b = torch.randn(16, 64), torch.randn(64, 48)
    torch.testing.assert_close(f(a, b), torch.relu(a @ b) + 1.0, rtol=1e-4, atol=1e-4)
    assert counter.frame_count == 1 and counter.op_count >= 3


@pytest.mark.parametrize("how", ["mark_dynamic", "dynamic=True"])
def test_compiled_with_dynamic_shapes_once_for_every_size(matmul, how):
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    f = torch.compile(lambda a, b: matmul(a, b) * 2.0, backend=counter, fullgraph=True,
                      dynamic=True if how == "dynamic=True" else None)
    b = torch.randn(64, 48)
    for rows in (5, 11, 32):
        a = torch.randn(rows, 64)
        if how == "mark_dynamic":
            torch._dynamo.mark_dynamic(a, 0)
        torch.testing.assert_close(f(a, b), 2.0 * (a @ b), rtol=1e-4, atol=1e-4)
    assert counter.frame_count == 1


def test_fake_shapes_follow_size_expressions(pairs):
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        s, d = pairs(torch.empty(10))
    assert s.shape == d.shape == (9,) and s.dtype == torch.float32


def test_a_backward_of_tex_kernels_passes_gradcheck(multiply):
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(multiply, (x, y))
    multiply(x, y).sum().backward()
    torch.testing.assert_close(x.grad, y.detach())


def test_a_compiled_operator_trains_like_torchs_own(multiply):
    data, target = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    step = torch.compile(lambda w: ((multiply(w, data) - target) ** 2).mean(), fullgraph=True,
                         backend="aot_eager")
    w, reference = (torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
                    for _ in range(2))
    with torch.no_grad():
        reference.copy_(w)
    start = w.detach().clone()
    optimizers = [torch.optim.SGD([p], lr=0.5) for p in (w, reference)]
    for _ in range(3):
        for optimizer, loss in zip(optimizers, (lambda: step(w), lambda: (
                (reference * data - target) ** 2).mean())):
            optimizer.zero_grad()
            loss().backward()
            optimizer.step()
    torch.testing.assert_close(w, reference)
    assert not torch.allclose(w, start)


def test_bad_tensors_are_refused_in_pytorch_words(matmul):
    a, b = torch.randn(8, 64), torch.randn(64, 48)
    with pytest.raises(tex.ArgumentError, match=r"argument A \(#0\): expected dtype torch."
                                                r"float32, got torch.float64; .*\.float\(\)"):
        matmul(a.double(), b)
    with pytest.raises(tex.ArgumentError, match=r"argument B \(#1\) is not contiguous .*"
                                                r"\.contiguous\(\)"):
        matmul(a, torch.randn(48, 64).t())
    with pytest.raises(tex.ArgumentError, match=r"requires grad, but textest::matmul was "
                                                r"registered without a backward: pass "
                                                r"\.detach\(\)"):
        matmul(a.requires_grad_(), b)
    with pytest.raises(tex.DeviceError, match=r"is on meta; this kernel runs on the CPU"):
        matmul(torch.empty(8, 64, device="meta"), torch.empty(64, 48, device="meta"))
    with pytest.raises(tex.ArgumentError, match=r"argument B \(#1\): dimension 0 should be 64, "
                                                "got 63"):
        matmul(torch.randn(8, 64), torch.randn(63, 48))
    with pytest.raises(tex.ArgumentError, match="expected 2 dimension"):
        matmul(torch.randn(8), b)


def test_registration_errors(matmul):
    with pytest.raises(tex.ArgumentError, match="expected a name 'namespace::name'"):
        tex.torch.register("no_namespace", row_parallel_matmul())
    with pytest.raises(tex.ArgumentError, match="expected a kernel of tex.build or tex.load"):
        tex.torch.register("textest::not_a_kernel", np.add)


def test_import_tex_does_not_import_torch():
    script = "import sys, tex; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def scale_cuda_kernel(name="scale_cuda"):
    """y = 2x + 1 over any n, for CUDA: 64 threads a block."""
    n = tex.var("n")
    x = tex.placeholder((n,), "float32", name="x")
    y = tex.compute((n,), lambda i: x[i] * 2.0 + 1.0, name="y")
    s = tex.create_schedule(y.op)
    blocks, threads = s[y].split(y.op.axis[0], factor=64)
    s[y].bind(blocks, tex.thread_axis("blockIdx.x"))
    s[y].bind(threads, tex.thread_axis("threadIdx.x"))
    return tex.build(s, [x, y], target="cuda", name=name)


@pytest.fixture(scope="module")
def scale_cuda():
    return tex.torch.register("textest::scale_cuda", scale_cuda_kernel())


def test_a_cuda_kernel_is_an_operator_on_cuda_tensors(scale_cuda):
    """Without a GPU: the operator traces with fake CUDA tensors (the shapes its fake
    implementation gives), and CPU tensors are refused in PyTorch's words."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx
    with FakeTensorMode():
        x = torch.empty(1000, device="cuda")
        y = scale_cuda(x)
        assert y.device.type == "cuda" and y.shape == (1000,) and y.dtype == torch.float32
        graph = make_fx(lambda t: scale_cuda(t) + 1)(x)
    assert "textest.scale_cuda" in str(graph.code)
    with pytest.raises(tex.DeviceError, match=r"argument x \(#0\) is on cpu; this kernel "
                                              r"runs on a CUDA GPU: pass .cuda\(\) of it"):
        scale_cuda(torch.ones(10))


@pytest.mark.skipif(not (torch.cuda.is_available() and gpu_available()),
                    reason="needs a GPU and PyTorch with CUDA")
def test_a_cuda_operator_runs_on_pytorchs_current_stream(scale_cuda):
    x = torch.randn(1000, device="cuda")
    torch.testing.assert_close(scale_cuda(x), x * 2 + 1)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        y = torch.randn(4099, device="cuda")  # written on the side stream
        z = scale_cuda(y)
    side.synchronize()
    torch.testing.assert_close(z, y * 2 + 1)
