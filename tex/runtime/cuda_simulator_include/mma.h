/* mma.h for the CPU simulator: the part of CUDA's WMMA API (nvcuda::wmma) that tex's
   tensor-core intrinsic uses (tex/intrin/cuda_wmma.py).

   On the device the lanes of a warp share a fragment, each holding some of its
   elements. Here an accumulator fragment is shared out as the device shares it
   out in number, M * N / 32 elements per lane: lane l holds the elements
   l * M * N / 32 onwards of the tile in row-major order (the device's own order
   is unspecified, and code that only copies the elements out and back in
   cannot tell). An A or B fragment is held whole by every lane, so that each
   lane computes its elements of a product alone. Loads and stores are warp
   operations: each waits until every lane of the warp has reached it, so no
   lane loads a tile that another lane is about to store. */
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
  static constexpr bool shared_out = std::is_same<Use, accumulator>::value;
  static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
  static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
  static constexpr int num_elements = shared_out ? rows * cols / 32 : rows * cols;
  T x[num_elements];

  /* The tile element (row-major index) that element e of this lane's share is. */
  static int element(int e) {
    return shared_out ? (int)tex_sim::lane_of(tex_sim::g_current) * num_elements + e : e;
  }
};

template <class F, class V> void fill_fragment(F& f, V value) {
  for (int e = 0; e < F::num_elements; ++e) f.x[e] = value;
}

template <class F, class T> void load_tile(F& f, const T* p, unsigned ldm, bool row_major) {
  __syncwarp();
  for (int e = 0; e < F::num_elements; ++e) {
    const int r = F::element(e) / F::cols, c = F::element(e) % F::cols;
    f.x[e] = row_major ? p[r * ldm + c] : p[c * ldm + r];
  }
}

template <class Use, int M, int N, int K, class T, class Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const T* p, unsigned ldm) {
  load_tile(f, p, ldm, std::is_same<Layout, row_major>::value);
}

template <int M, int N, int K, class T>
void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm,
                      layout_t layout) {
  load_tile(f, p, ldm, layout == mem_row_major);
}

template <int M, int N, int K, class T>
void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm,
                       layout_t layout) {
  using F = fragment<accumulator, M, N, K, T>;
  __syncwarp();
  for (int e = 0; e < F::num_elements; ++e) {
    const int r = F::element(e) / N, c = F::element(e) % N;
    (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[e];
  }
}

template <int M, int N, int K, class TA, class LA, class TB, class LB, class TC>
void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
              const fragment<matrix_b, M, N, K, TB, LB>& b,
              const fragment<accumulator, M, N, K, TC>& c) {
  using F = fragment<accumulator, M, N, K, TC>;
  TC share[F::num_elements];
  for (int e = 0; e < F::num_elements; ++e) {
    const int i = F::element(e) / N, j = F::element(e) % N;
    TC sum = c.x[e];
    for (int k = 0; k < K; ++k) sum += (TC)a.x[i * K + k] * (TC)b.x[k * N + j];
    share[e] = sum;
  }
  for (int e = 0; e < F::num_elements; ++e) d.x[e] = share[e];
}

}  // namespace wmma
}  // namespace nvcuda
