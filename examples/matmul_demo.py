"""Declare a matmul, schedule it, print the loop nest, build it, check it, time it against NumPy."""
import time

import numpy as np

import tex

M = N = K = 1024


def matmul_schedule(M, N, K, mr=4, nr=64):
    """A register-blocked matmul: B packed into panels, a 4x64 accumulator tile."""
    A = tex.placeholder((M, K), name="A")
    B = tex.placeholder((K, N), name="B")
    packed = tex.compute((N // nr, K, nr), lambda jo, k, ji: B[k, jo * nr + ji], name="B_packed")
    k = tex.reduce_axis((0, K), name="k")
    C = tex.compute((M, N), lambda i, j: tex.sum(A[i, k] * packed[j // nr, k, j % nr], axis=k),
                    name="C")
    s = tex.create_schedule(C.op)
    acc = s.cache_write(C, "local")
    i, j = C.op.axis
    jo, ji = s[C].split(j, factor=nr)
    io, ii = s[C].split(i, factor=mr)
    s[C].reorder(jo, io, ii, ji)
    s[C].unroll(ii)
    s[C].vectorize(ji)
    s[C].parallel(jo)
    s[acc].compute_at(s[C], io)
    ia, ja = s[acc].op.axis
    s[acc].reorder(s[acc].op.reduce_axis[0], ia, ja)
    s[acc].unroll(ia)
    s[acc].vectorize(ja)
    po, pk, pi = s[packed].op.axis
    s[packed].vectorize(pi)
    s[packed].parallel(po)
    return s, [A, B, C]


def gflops(seconds):
    return 2 * M * N * K / seconds / 1e9


def best_time(f, repeat=10):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


if __name__ == "__main__":
    s, args = matmul_schedule(M, N, K)
    print(tex.lower(s, args))
    start = time.perf_counter()
    kernel = tex.build(s, args, target="llvm")
    print(f"\nbuilt in {1e3 * (time.perf_counter() - start):.0f} ms")
    rng = np.random.default_rng(0)
    a = rng.random((M, K), dtype=np.float32)
    b = rng.random((K, N), dtype=np.float32)
    c = np.empty((M, N), np.float32)
    kernel(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4)
    print("result matches NumPy")
    t_tex = best_time(lambda: kernel(a, b, c))
    t_np = best_time(lambda: np.matmul(a, b, out=c))
    print(f"tex   {gflops(t_tex):7.1f} GFLOP/s")
    print(f"NumPy {gflops(t_np):7.1f} GFLOP/s")
    print(f"tex / NumPy = {t_np / t_tex:.2f}")
