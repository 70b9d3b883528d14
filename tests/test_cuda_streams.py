"""Asynchronous, stream-ordered CUDA kernel calls, their launch plans and CUDA-event timing,
checked on the host stand-in for the driver of tests/test_runtime_cuda.py (which records
every driver call), so they run on any machine; the last test runs on a GPU with PyTorch."""
import numpy as np
import pytest
from cuda.bindings import driver as cuda_driver

import tex
from autotune import measure
from test_runtime_cuda import (CudaArrayInterface, CudaDLPack, add_rows_kernel,  # noqa: F401
                               data, host_driver, needs_gpu, twice_then_add_kernel)
from tex.errors import ArgumentError, DeviceError
from tex.runtime import cuda_args, cuda_device, cuda_launch
from tex.runtime.cuda_device import device_array, empty_device
from tex.runtime.cuda_stream import LEGACY

SIDE, OTHER = 0x7000, 0x9000  # stream handles as a driver would give them


@pytest.fixture
def driver(request):
    """The host stand-in for the driver, recording every call (tests/test_runtime_cuda.py)."""
    return request.getfixturevalue("host_driver")


@pytest.fixture(scope="module")
def add_rows():
    return add_rows_kernel()


def device_data(n=37, m=5):
    a, b = data(n, m)
    return a, b, device_array(a), device_array(b), empty_device((n, m))


def launch_streams(driver) -> list:
    return [call[9] for call in driver.called("cuLaunchKernel")]


def synchronizations(driver) -> list:
    return driver.called("cuStreamSynchronize", "cuCtxSynchronize", "cuEventSynchronize")


class TorchLike:
    def __init__(self, handle):
        self.cuda_stream = handle


class CuPyLike:
    def __init__(self, handle):
        self.ptr = handle


class CudaCoreLike:
    def __init__(self, handle):
        self.handle = handle

    def __cuda_stream__(self):
        return (0, self.handle)


@pytest.mark.parametrize("stream", [SIDE, cuda_driver.CUstream(SIDE), TorchLike(SIDE),
                                    CuPyLike(SIDE), CudaCoreLike(SIDE)],
                         ids=["int", "CUstream", "cuda_stream", "ptr", "__cuda_stream__"])
def test_a_call_is_queued_on_the_stream_given(stream, driver):
    a, b, da, db, dc = device_data()
    k = add_rows_kernel()
    assert k(da, db, dc, stream=stream) is None
    assert launch_streams(driver) == [SIDE]
    np.testing.assert_array_equal(dc.numpy(), a + b)


def test_stream_0_and_no_stream_are_the_legacy_default_stream(driver):
    _, _, da, db, dc = device_data()
    k = add_rows_kernel()
    k(da, db, dc, stream=0)
    k(empty_device((37, 5)), empty_device((5,)), dc)  # nothing names a stream
    assert launch_streams(driver) == [LEGACY, LEGACY]


def test_a_device_array_call_waits_for_producers_on_the_device_only(driver):
    a, b, da, db, dc = device_data()
    k = add_rows_kernel()
    produced = CudaArrayInterface(da, stream=OTHER)
    driver.calls.clear()
    k(produced, db, dc, stream=SIDE)
    assert synchronizations(driver) == []
    assert launch_streams(driver) == [SIDE]
    # each producer's stream once, in argument order: OTHER, then the copy of db (LEGACY)
    records = driver.called("cuEventRecord")
    waits = driver.called("cuStreamWaitEvent")
    assert [r[2] for r in records] == [OTHER, LEGACY]
    assert [(w[1], w[2]) for w in waits] == [(SIDE, r[1]) for r in records]
    assert driver.calls.index(waits[-1]) < driver.calls.index(
        driver.called("cuLaunchKernel")[0])
    np.testing.assert_array_equal(dc.numpy(), a + b)


def test_without_a_stream_the_call_runs_on_the_one_an_argument_names(driver):
    _, _, da, db, dc = device_data()
    k = add_rows_kernel()
    k(empty_device((37, 5)), CudaArrayInterface(db, stream=OTHER), dc)
    assert launch_streams(driver) == [OTHER]
    assert driver.called("cuStreamWaitEvent") == []  # OTHER is the launch stream


def test_a_dlpack_producer_is_asked_for_the_launch_stream(driver):
    a, b, da, db, dc = device_data()
    k = add_rows_kernel()
    tensor = CudaDLPack(b)  # host memory: the stand-in runs launches on the host
    k(da, tensor, dc, stream=SIDE)
    np.testing.assert_array_equal(dc.numpy(), a + b)
    k(CudaArrayInterface(da, stream=OTHER), tensor, dc)
    assert tensor.streams == [SIDE, OTHER]
    assert launch_streams(driver) == [SIDE, OTHER]


class TensorLike(CudaArrayInterface):
    """A PyTorch CUDA tensor, as far as the runtime asks (`is_torch_tensor` patched)."""


def test_pytorch_tensors_name_pytorch_current_stream(driver, monkeypatch):
    _, _, da, db, dc = device_data()
    monkeypatch.setattr(cuda_args, "is_torch_tensor", lambda value: type(value) is TensorLike)
    asked = []
    monkeypatch.setattr(cuda_args, "torch_stream", lambda value: asked.append(1) or OTHER)
    tensors = [TensorLike(x, stream=None) for x in (da, db)]  # their interfaces name none
    add_rows_kernel()(*tensors, dc)
    assert launch_streams(driver) == [OTHER]
    assert asked == [1]  # read once per call
    assert dc.stream == OTHER


def test_sync_waits_for_that_stream_only(driver):
    _, _, da, db, dc = device_data()
    driver.calls.clear()
    add_rows_kernel()(da, db, dc, stream=SIDE, sync=True)
    assert synchronizations(driver) == [("cuStreamSynchronize", SIDE)]


def test_a_host_array_call_copies_on_its_stream_and_waits_for_it_only(driver):
    a, b = data()
    k = add_rows_kernel()
    c = k(a, b, stream=SIDE)
    np.testing.assert_array_equal(c, a + b)
    copies = driver.called("cuMemcpyHtoDAsync", "cuMemcpyDtoHAsync")
    # A, B and the output in (elements a kernel leaves alone keep their values), C out
    assert [call[0] for call in copies] == ["cuMemcpyHtoDAsync"] * 3 + ["cuMemcpyDtoHAsync"]
    assert {call[4] for call in copies} == {SIDE}
    assert synchronizations(driver) == [("cuStreamSynchronize", SIDE)]
    last_sync = driver.calls.index(("cuStreamSynchronize", SIDE))
    frees = [k for k, call in enumerate(driver.calls) if call[0] == "cuMemFree"]
    assert len(frees) == 3 and min(frees) > last_sync  # the staged copies, once done


def test_a_device_array_written_by_a_call_names_its_stream(driver):
    a, b, da, db, dc = device_data()
    assert da.stream == LEGACY and da.__cuda_array_interface__["stream"] == LEGACY
    assert empty_device((2,)).__cuda_array_interface__["stream"] is None
    out = add_rows_kernel()(da, db, stream=SIDE)
    assert out.stream == SIDE and out.__cuda_array_interface__["stream"] == SIDE
    driver.calls.clear()
    np.testing.assert_array_equal(out.numpy(), a + b)
    assert synchronizations(driver) == [("cuStreamSynchronize", SIDE)]
    assert out.stream is None


def test_the_launch_plan_is_derived_once_per_shapes(driver, monkeypatch):
    evaluated = []

    def counting_evaluate(expr, values):
        evaluated.append(expr)
        return real_evaluate(expr, values)
    real_evaluate = cuda_launch.evaluate
    monkeypatch.setattr(cuda_launch, "evaluate", counting_evaluate)
    k = add_rows_kernel()
    _, _, da, db, dc = device_data(37, 5)
    args = [CudaArrayInterface(x) for x in (da, db, dc)]
    k(*args)
    first = len(evaluated)
    assert first > 0 and len(driver.called("cuPointerGetAttribute")) == 3
    k(*args, stream=SIDE)
    assert len(evaluated) == first  # the same shapes: nothing evaluated again
    assert len(driver.called("cuPointerGetAttribute")) == 3  # nor any pointer asked
    a, b, da, db, dc = device_data(12, 5)
    k(da, db, dc)
    assert len(evaluated) > first  # new shapes: a new plan
    np.testing.assert_array_equal(dc.numpy(), a + b)


@pytest.mark.parametrize("stream", ["s", 1.5, -1, True, 2**64, object(), (0, 5)])
def test_bad_streams_are_argument_errors(add_rows, stream):
    a, b = data()
    with pytest.raises(ArgumentError, match=r"argument stream: (expected a CUDA stream|a "
                                            r"stream handle is an int)"):
        add_rows(a, b, stream=stream)


def test_a_bad_stream_in_an_interface_names_the_argument(driver):
    _, _, da, db, dc = device_data()
    with pytest.raises(ArgumentError, match=r"argument B \(#1\): the stream of its "
                                            r"__cuda_array_interface__: expected a CUDA"):
        add_rows_kernel()(da, CudaArrayInterface(db, stream="s"), dc)


def test_workspaces_are_per_stream_and_ordered(driver):
    k = twice_then_add_kernel()
    a, b = data(40, 3)  # T: 480 bytes, a workspace of 512
    da, db = device_array(a), device_array(b)
    outputs = [empty_device((40, 3)) for _ in range(3)]
    driver.calls.clear()
    for out, stream in zip(outputs, (SIDE, OTHER, SIDE)):
        k(da, db, out, stream=stream)
    assert len(driver.called("cuMemAlloc")) == 2  # SIDE's, OTHER's; SIDE's again
    assert launch_streams(driver) == [SIDE, SIDE, OTHER, OTHER, SIDE, SIDE]
    # after its launches, each call records its workspace's event on its stream
    marks = [c[1:] for c in driver.called("cuEventRecord") if c[2] != LEGACY]
    (side, _), (other, _) = marks[:2]
    assert marks == [(side, SIDE), (other, OTHER), (side, SIDE)] and side != other
    # and before them waits for that event (the last work in its workspace), besides the
    # copies of da and db (on the legacy stream)
    waits = [c[1:3] for c in driver.called("cuStreamWaitEvent") if c[2] in (side, other)]
    assert waits == [(SIDE, side), (OTHER, other), (SIDE, side)]
    for out in outputs:
        np.testing.assert_allclose(out.numpy(), 2 * a + b, rtol=1e-6)


def test_a_grown_workspace_waits_for_its_last_work_before_it_is_freed(driver):
    k = twice_then_add_kernel()
    arrays = []  # kept, so that the only memory freed is the outgrown workspace
    for n in (10, 500):
        a, b = data(n, 3)
        arrays += [device_array(a), device_array(b), empty_device((n, 3))]
        k(*arrays[-3:], stream=SIDE)
    names = [c[0] for c in driver.calls if not c[0].startswith("cuCtx")]
    assert names.count("cuMemFree") == 1
    assert names[names.index("cuMemFree") - 1] == "cuEventSynchronize"


def test_an_asynchronous_error_names_what_tex_queued_last(driver):
    _, _, da, db, dc = device_data()
    add_rows_kernel()(da, db, dc, stream=SIDE)
    driver.failing = {"cuStreamSynchronize", "cuCtxSynchronize"}
    with pytest.raises(DeviceError, match=r"DeviceArray.numpy: cuStreamSynchronize of stream "
                                          r"0x7000 failed with CUDA_ERROR_LAUNCH_FAILED .*"
                                          r"earlier asynchronous work. Last queued by tex: "
                                          r"CUDA kernel add_rows on stream 0x7000"):
        dc.numpy()
    with pytest.raises(DeviceError, match=r"tex.synchronize: cuCtxSynchronize failed .*"
                                          r"CUDA kernel add_rows on stream 0x7000"):
        tex.synchronize()
    driver.failing = set()
    tex.synchronize()
    tex.cuda(0).sync()


def test_the_context_is_pushed_only_when_it_is_not_current(driver):
    _, _, da, db, dc = device_data()
    k = add_rows_kernel()
    k(da, db, dc)
    driver.contexts.append(driver.CONTEXT)  # as PyTorch leaves it
    driver.calls.clear()
    k(da, db, dc)
    assert driver.called("cuCtxPushCurrent", "cuCtxPopCurrent") == []
    driver.contexts.pop()


def test_time_evaluator_uses_cuda_events(driver):
    _, _, da, db, dc = device_data()
    k = add_rows_kernel()
    driver.elapsed_ms = 6.0  # whatever the number of calls
    timer = k.time_evaluator(k.entry_name, tex.cuda(0), number=3, repeat=2)
    driver.calls.clear()
    result = timer(da, db, dc)
    assert result.results == (0.002, 0.002)  # 6 ms / 3 calls
    names = [c[0] for c in driver.calls]
    assert names.count("cuEventElapsedTime") == 2 and names.count("cuLaunchKernel") == 7
    starts = [k for k, n in enumerate(names) if n == "cuEventElapsedTime"]
    records = [c for c in driver.called("cuEventRecord") if c[2] == LEGACY]
    assert len(records) == 4  # start and end of each repeat, on the launch stream
    assert "cuStreamSynchronize" not in names and "cuCtxSynchronize" not in names
    assert names[starts[0] - 1] == "cuEventSynchronize"  # the host waits for the end only
    assert driver.events == set()  # the timing events are destroyed


def test_the_tuner_times_cuda_kernels_with_events(driver):
    _, _, da, db, dc = device_data()
    k = add_rows_kernel()
    driver.elapsed_ms = 5.0
    assert measure._timed(k, [da, db, dc], 4) == 0.005
    assert len(driver.called("cuLaunchKernel")) == 4
    assert driver.called("cuStreamSynchronize", "cuCtxSynchronize") == []


@needs_gpu
def test_pytorch_side_streams():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    k = add_rows_kernel()
    a, b = data(3000, 64)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
        tc = torch.empty_like(ta)
        k(ta, tb, tc)  # queued on `side`, after its copies
        out = k(ta, tb)
    side.synchronize()
    np.testing.assert_array_equal(tc.cpu().numpy(), a + b)
    np.testing.assert_array_equal(out.numpy(), a + b)
    assert out.stream in (None, side.cuda_stream)
    tc.zero_()
    k(ta, tb, tc, stream=side, sync=True)
    np.testing.assert_array_equal(tc.cpu().numpy(), a + b)


def test_the_overhead_benchmark_runs_on_its_no_op_driver(monkeypatch, capsys):
    """`python -m bench.gpu_overhead` needs no GPU; a short run prints a row per kernel."""
    from bench import gpu_overhead
    monkeypatch.setattr(cuda_device, "_opened", None)  # restored after the test
    gpu_overhead.main(["--calls", "20", "--samples", "1"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.split() and line.split()[0] in ("elementwise", "matmul_f32", "softmax",
                                                    "row_sum_atomic")]
    assert len(rows) == 4 and all(float(value) > 0 for row in rows for value in row[2:])
