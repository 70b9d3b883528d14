/* The simulator's models of what sm_80 added for tensor-core kernels, included at the end
   of tex_cuda_simulator.h: asynchronous copies (cp.async) and the warp collectives
   ldmatrix and mma.sync. tex's device helpers (tex/passes/async_copy.py,
   tex/intrin/cuda_mma.py) call these under TEX_CUDA_SIMULATOR.

   cp.async: each thread keeps the copies it issued. A commit closes those issued since
   the last one into a group; waiting with N pending lands every copy of the thread's
   groups but the N newest (bytes past a copy's source size are zeros). A copy lands no
   earlier than the device would let a program rely on: a read of its destination before
   the wait sees the old bytes. Copies not yet waited for when a thread exits are dropped
   (tex's pipelines wait for all before their loop ends). */
#pragma once

#include <vector>

namespace tex_sim {

struct AsyncCopy {
  void* dst;
  const void* src;
  int bytes, src_bytes;
  unsigned long long group;  // the group its thread's next commit closes
};

static std::vector<AsyncCopy> g_async_copies[MAX_THREADS];
static unsigned long long g_async_commits[MAX_THREADS];

static void cp_async(void* dst, const void* src, int bytes, int src_bytes) {
  g_async_copies[g_current].push_back({dst, src, bytes, src_bytes, g_async_commits[g_current]});
}

static void cp_async_commit() { ++g_async_commits[g_current]; }

static void cp_async_wait(int pending) {
  std::vector<AsyncCopy>& copies = g_async_copies[g_current];
  const unsigned long long commits = g_async_commits[g_current];
  size_t kept = 0;
  for (const AsyncCopy& c : copies) {
    if (c.group + pending < commits) {
      memcpy(c.dst, c.src, (size_t)c.src_bytes);
      memset((char*)c.dst + c.src_bytes, 0, (size_t)(c.bytes - c.src_bytes));
    } else {
      copies[kept++] = c;
    }
  }
  copies.resize(kept);
}

}  // namespace tex_sim

/* ---- ldmatrix and mma.sync: warp collectives with the PTX fragment layouts -----------

   Lane l of a warp is l = 4 * g + t (g = l / 4, its group; t = l % 4). A register holds
   two 16-bit elements, the first in its low half.

   ldmatrix .m8n8 .b16 (x1, x2, x4): matrix m's row r is the 16 bytes at the address
   lane 8 * m + r gives; lane l receives, in register m, elements (g, 2t) and (g, 2t + 1)
   of matrix m, or with .trans elements (2t, g) and (2t + 1, g).

   mma.sync .m16n8k16 .row.col, f16 or bf16 inputs, f32 accumulators: A (16 x 16) is
   a0..a3 = (g, 2t..2t+1), (g + 8, 2t..), (g, 2t + 8..), (g + 8, 2t + 8..); B (16 x 8,
   k by n) is b0, b1 = (k 2t..2t+1, n g), (k 2t + 8..2t + 9, n g); C and D are
   c0..c3 = (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1). */

namespace tex_sim {

static const void* g_ldmatrix_rows[MAX_THREADS];
static unsigned g_mma_a[MAX_THREADS][4], g_mma_b[MAX_THREADS][2];

static void ldmatrix(unsigned* registers, int matrices, const void* row, bool trans) {
  const int me = g_current, base = me - (int)lane_of(me), lane = (int)lane_of(me);
  g_ldmatrix_rows[me] = row;
  sync_warp(__LINE__, 0xffffffffu);
  const int g = lane / 4, t = lane % 4;
  for (int m = 0; m < matrices; ++m) {
    unsigned halves[2];
    for (int j = 0; j < 2; ++j) {
      const int r = trans ? 2 * t + j : g, c = trans ? g : 2 * t + j;
      uint16_t bits;
      memcpy(&bits, (const char*)g_ldmatrix_rows[base + 8 * m + r] + 2 * c, 2);
      halves[j] = bits;
    }
    registers[m] = halves[0] | halves[1] << 16;
  }
  sync_warp(__LINE__, 0xffffffffu);  // every lane has read before any offers its next row
}

static float half_bits_to_float(unsigned bits, bool bf16) {
  if (bf16) {
    const uint32_t wide = bits << 16;
    float f;
    memcpy(&f, &wide, 4);
    return f;
  }
  const uint16_t narrow = (uint16_t)bits;
  _Float16 h;
  memcpy(&h, &narrow, 2);
  return (float)h;
}

/* Element `index` (0 or 1) of a fragment register. */
static float mma_element(const unsigned* reg, int index, bool bf16) {
  return half_bits_to_float(index ? *reg >> 16 : *reg & 0xffffu, bf16);
}

static void mma_m16n8k16(float* d, const unsigned* a, const unsigned* b, const float* c,
                         bool bf16) {
  const int me = g_current, base = me - (int)lane_of(me), lane = (int)lane_of(me);
  memcpy(g_mma_a[me], a, sizeof g_mma_a[me]);
  memcpy(g_mma_b[me], b, sizeof g_mma_b[me]);
  sync_warp(__LINE__, 0xffffffffu);
  const int g = lane / 4, t = lane % 4;
  float result[4];
  for (int e = 0; e < 4; ++e) {
    const int row = g + 8 * (e / 2), col = 2 * t + e % 2;
    float sum = c[e];
    for (int k = 0; k < 16; ++k) {
      const unsigned* a_reg = &g_mma_a[base + (row % 8) * 4 + (k % 8) / 2][row / 8 + 2 * (k / 8)];
      const unsigned* b_reg = &g_mma_b[base + col * 4 + (k % 8) / 2][k / 8];
      sum += mma_element(a_reg, k % 2, bf16) * mma_element(b_reg, k % 2, bf16);
    }
    result[e] = sum;
  }
  sync_warp(__LINE__, 0xffffffffu);  // every lane has read before any offers its next operands
  memcpy(d, result, sizeof result);
}

}  // namespace tex_sim
