/* mma.h for the CPU simulator: the part of CUDA's WMMA API (nvcuda::wmma) that tex's
   tensor-core intrinsic uses (tex/intrin/cuda_wmma.py).

   On the device the lanes of a warp share a fragment, each holding some elements.
   Here every lane holds the whole tile and computes the whole product. Loads and
   stores are warp operations: each waits until every lane of the warp has reached
   it, so no lane loads a tile that another lane is about to store, and the lanes
   store the same values. */
#pragma once

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
  static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
  static constexpr int num_elements = rows * cols;
  T x[rows * cols];  // element (r, c) at x[r * cols + c]
};

template <class F, class V> void fill_fragment(F& f, V value) {
  for (int e = 0; e < F::num_elements; ++e) f.x[e] = value;
}

template <class F, class T> void load_tile(F& f, const T* p, unsigned ldm, bool row_major) {
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      f.x[r * F::cols + c] = row_major ? p[r * ldm + c] : p[c * ldm + r];
}

template <class Use, int M, int N, int K, class T, class Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const T* p, unsigned ldm) {
  __syncwarp();
  load_tile(f, p, ldm, std::is_same<Layout, row_major>::value);
}

template <int M, int N, int K, class T>
void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm,
                      layout_t layout) {
  __syncwarp();
  load_tile(f, p, ldm, layout == mem_row_major);
}

template <int M, int N, int K, class T>
void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm,
                       layout_t layout) {
  __syncwarp();
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c)
      (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * N + c];
}

template <int M, int N, int K, class TA, class LA, class TB, class LB, class TC>
void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
              const fragment<matrix_b, M, N, K, TB, LB>& b,
              const fragment<accumulator, M, N, K, TC>& c) {
  TC product[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      TC sum = c.x[i * N + j];
      for (int k = 0; k < K; ++k) sum += (TC)a.x[i * K + k] * (TC)b.x[k * N + j];
      product[i * N + j] = sum;
    }
  for (int e = 0; e < M * N; ++e) d.x[e] = product[e];
}

}  // namespace wmma
}  // namespace nvcuda
