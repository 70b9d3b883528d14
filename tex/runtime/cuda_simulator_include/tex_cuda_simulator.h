/* The CUDA C that tex emits, compiled as C++ for the CPU (see tex/runtime/cuda_simulator.py).

   g++ compiles a kernel's CUDA source with this header included first. Each launch
   then runs here: its blocks one after another, the threads of a block as
   cooperative fibers (ucontext), one at a time. A thread runs until it reaches
   __syncthreads(), a warp operation (a shuffle, __syncwarp, a WMMA load or store)
   or its end, and the next thread takes over. So every write a thread makes is
   seen by the threads that run after it; races are not detected, but a seed
   shuffles the order of blocks and of threads between barriers, which exposes
   most of them.

   What the device would not allow is an error of the launch, with its block,
   thread and source line:
   - __syncthreads() that some threads of the block do not reach (they exited,
     or wait at another barrier or warp operation), or threads waiting at two
     different barriers;
   - a warp operation that a lane named in its mask never reaches.
   A shuffle that reads a lane not taking part gets all-ones bytes (NaN for
   floats), as the device gives an undefined value.

   __shared__ arrays are static: one per kernel, shared by the threads of the
   running block, and they keep the last block's values (the device leaves them
   undefined); so is the dynamic shared array (TEX_DYNAMIC_SHARED), of 256 KB. Atomics are plain read-modify-writes, which is atomic here
   because only one thread runs at a time. Each thread has a stack of
   STACK_BYTES (256 KB), which its local arrays must fit in; a block has at
   most 1024 threads, as on the device.

   TEX_CUDA_SIMULATOR is defined, so that device helpers written with inline PTX can
   call the models here instead; tex_cuda_simulator_sm80.h (included at the end) has
   those of cp.async, ldmatrix and mma.sync. */
#pragma once

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <utility>
#include <sys/mman.h>
#include <ucontext.h>

#define TEX_CUDA_SIMULATOR 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static
/* The dynamic shared array: one for every kernel, as large as any target allows. */
#define TEX_DYNAMIC_SHARED(name) unsigned char* const name = tex_sim::g_dynamic_shared

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };
static uint3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static const int warpSize = 32;
namespace tex_sim {
alignas(16) static unsigned char g_dynamic_shared[256 * 1024];
}

/* ---- vector types ------------------------------------------------------ */

struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(8) uint2 { unsigned x, y; };
struct __align__(16) uint4 { unsigned x, y, z, w; };
struct __align__(16) double2 { double x, y; };
struct __align__(16) longlong2 { long long x, y; };
struct __align__(16) ulonglong2 { unsigned long long x, y; };
struct __align__(2) char2 { signed char x, y; };
struct __align__(4) char4 { signed char x, y, z, w; };
struct __align__(2) uchar2 { unsigned char x, y; };
struct __align__(4) uchar4 { unsigned char x, y, z, w; };
struct __align__(4) short2 { short x, y; };
struct __align__(8) short4 { short x, y, z, w; };
struct __align__(4) ushort2 { unsigned short x, y; };
struct __align__(8) ushort4 { unsigned short x, y, z, w; };

inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }
inline longlong2 make_longlong2(long long x, long long y) { return {x, y}; }
inline ulonglong2 make_ulonglong2(unsigned long long x, unsigned long long y) { return {x, y}; }
inline char2 make_char2(signed char x, signed char y) { return {x, y}; }
inline char4 make_char4(signed char x, signed char y, signed char z, signed char w) {
  return {x, y, z, w};
}
inline uchar2 make_uchar2(unsigned char x, unsigned char y) { return {x, y}; }
inline uchar4 make_uchar4(unsigned char x, unsigned char y, unsigned char z, unsigned char w) {
  return {x, y, z, w};
}
inline short2 make_short2(short x, short y) { return {x, y}; }
inline short4 make_short4(short x, short y, short z, short w) { return {x, y, z, w}; }
inline ushort2 make_ushort2(unsigned short x, unsigned short y) { return {x, y}; }
inline ushort4 make_ushort4(unsigned short x, unsigned short y, unsigned short z,
                            unsigned short w) {
  return {x, y, z, w};
}

/* ---- float16 (cuda_fp16.h) --------------------------------------------- */

typedef _Float16 __half;
typedef __half half;
inline float __half2float(half h) { return (float)h; }
inline half __float2half(float f) { return (half)f; }
inline half __double2half(double d) { return (half)d; }
inline half __short2half_rn(short v) { return (half)v; }
inline half __ushort2half_rn(unsigned short v) { return (half)v; }
inline half __int2half_rn(int v) { return (half)v; }
inline half __uint2half_rn(unsigned v) { return (half)v; }
inline half __ll2half_rn(long long v) { return (half)v; }
inline half __ull2half_rn(unsigned long long v) { return (half)v; }
inline unsigned short __half_as_ushort(half h) { unsigned short u; memcpy(&u, &h, 2); return u; }
inline half __ushort_as_half(unsigned short u) { half h; memcpy(&h, &u, 2); return h; }
inline half __hmin(half a, half b) { return a < b ? a : b; }
inline half __hmax(half a, half b) { return a > b ? a : b; }
struct __align__(4) __half2 { half x, y; };
typedef __half2 half2;
inline half2 make_half2(half x, half y) { return {x, y}; }

/* ---- bfloat16 (cuda_bf16.h) -------------------------------------------- */

/* The upper half of a float's bits. Every operator computes in float and
   rounds to nearest even, as the device's do; NaN stays a (quiet) NaN. */
struct __nv_bfloat16 { unsigned short x; };
typedef __nv_bfloat16 nv_bfloat16;

inline float __bfloat162float(__nv_bfloat16 h) {
  unsigned u = (unsigned)h.x << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16(float f) {
  unsigned u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {(unsigned short)((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return {(unsigned short)(u >> 16)};
}
#define TEX_BF16_ARITH(op) \
  inline __nv_bfloat16 operator op(__nv_bfloat16 a, __nv_bfloat16 b) { \
    return __float2bfloat16(__bfloat162float(a) op __bfloat162float(b)); }
#define TEX_BF16_COMPARE(op) \
  inline bool operator op(__nv_bfloat16 a, __nv_bfloat16 b) { \
    return __bfloat162float(a) op __bfloat162float(b); }
TEX_BF16_ARITH(+) TEX_BF16_ARITH(-) TEX_BF16_ARITH(*) TEX_BF16_ARITH(/)
TEX_BF16_COMPARE(==) TEX_BF16_COMPARE(!=) TEX_BF16_COMPARE(<) TEX_BF16_COMPARE(<=)
TEX_BF16_COMPARE(>) TEX_BF16_COMPARE(>=)
inline __nv_bfloat16 operator-(__nv_bfloat16 a) { return {(unsigned short)(a.x ^ 0x8000u)}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return {u}; }
inline __nv_bfloat16 __hmin(__nv_bfloat16 a, __nv_bfloat16 b) { return a < b ? a : b; }
inline __nv_bfloat16 __hmax(__nv_bfloat16 a, __nv_bfloat16 b) { return a > b ? a : b; }

/* ---- math and bit casts ------------------------------------------------ */

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
using std::isnan;
using std::isinf;
using std::isfinite;
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
/* the dot product of four signed bytes, accumulated into c (sm_61 and later) */
inline int __dp4a(char4 a, char4 b, int c) {
  return c + a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
}
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float f) { int v; memcpy(&v, &f, 4); return v; }
inline double __longlong_as_double(long long v) { double d; memcpy(&d, &v, 8); return d; }
inline long long __double_as_longlong(double d) { long long v; memcpy(&v, &d, 8); return v; }

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

/* ---- atomics: one thread runs at a time ---------------------------------- */

template <class T> T atomicAdd(T* address, T value) { T old = *address; *address = old + value; return old; }
template <class T> T atomicMin(T* address, T value) { T old = *address; *address = value < old ? value : old; return old; }
template <class T> T atomicMax(T* address, T value) { T old = *address; *address = value > old ? value : old; return old; }
template <class T> T atomicCAS(T* address, T expected, T value) {
  T old = *address;
  if (old == expected) *address = value;
  return old;
}

/* ---- the fibers ---------------------------------------------------------- */

namespace tex_sim {

enum State { RUNNABLE, AT_BARRIER, AT_WARP, DONE };
static const char* const STATE_NAMES[] = {"running", "waiting at __syncthreads()",
                                          "waiting at a warp operation", "exited"};
static const size_t STACK_BYTES = 256 * 1024;
static const int MAX_THREADS = 1024;

struct Thread {
  ucontext_t context;
  State state;
  int line;        // the source line it waits at
  unsigned mask;   // the lanes a warp operation waits for
  uint3 index;
};

static void (*g_body)();
static Thread g_threads[MAX_THREADS];
static int g_order[MAX_THREADS];
static int g_count, g_current;
static ucontext_t g_scheduler;
static char g_error[2048];
static bool g_failed;
static unsigned char g_slots[MAX_THREADS][16];  // what each lane offers a shuffle
static unsigned g_random;

static unsigned next_random() {  // xorshift32
  g_random ^= g_random << 13; g_random ^= g_random >> 17; g_random ^= g_random << 5;
  return g_random;
}

static long long gcd(long long a, long long b) { return b ? gcd(b, a % b) : a; }

static void describe(char* out, size_t size, int t) {
  const uint3 i = g_threads[t].index;
  snprintf(out, size, "thread (%u, %u, %u) of block (%u, %u, %u)", i.x, i.y, i.z,
           blockIdx.x, blockIdx.y, blockIdx.z);
}

static void fail(const char* format, ...) {
  if (g_failed) return;
  va_list args;
  va_start(args, format);
  vsnprintf(g_error, sizeof g_error, format, args);
  va_end(args);
  g_failed = true;
}

static void wait(State state, int line, unsigned mask) {
  Thread& t = g_threads[g_current];
  t.state = state;
  t.line = line;
  t.mask = mask;
  swapcontext(&t.context, &g_scheduler);
}

static void thread_main() {
  g_body();
  g_threads[g_current].state = DONE;
}

static inline unsigned lane_of(int t) { return (unsigned)t % 32; }

/* The lanes of `t`'s warp that `mask` names and that exist and have not exited. */
static unsigned live_lanes(int t, unsigned mask) {
  const int base = t - (int)lane_of(t);
  unsigned live = 0;
  for (int lane = 0; lane < 32; ++lane)
    if ((mask >> lane & 1u) && base + lane < g_count && g_threads[base + lane].state != DONE)
      live |= 1u << lane;
  return live;
}

/* Releases each group of lanes whose warp operation every lane of its mask has
   reached; false if none could go. */
static bool release_warps() {
  bool released = false;
  for (int t = 0; t < g_count; ++t) {
    Thread& me = g_threads[t];
    if (me.state != AT_WARP) continue;
    const int base = t - (int)lane_of(t);
    const unsigned live = live_lanes(t, me.mask);
    bool ready = true;
    for (int lane = 0; lane < 32 && ready; ++lane) {
      if (!(live >> lane & 1u)) continue;
      const Thread& other = g_threads[base + lane];
      if (other.state != AT_WARP) ready = false;
      else if (other.mask != me.mask || other.line != me.line) {
        char a[96], b[96];
        describe(a, sizeof a, t);
        describe(b, sizeof b, base + lane);
        fail("%s waits at a warp operation on line %d with mask 0x%08x, and %s at one on "
             "line %d with mask 0x%08x: the lanes of a mask must meet at the same one",
             a, me.line, me.mask, b, other.line, other.mask);
        return false;
      }
    }
    if (!ready) continue;
    for (int lane = 0; lane < 32; ++lane)
      if (live >> lane & 1u) g_threads[base + lane].state = RUNNABLE;
    released = true;
  }
  return released;
}

/* Releases the block's barrier once every thread waits at it; else records the error. */
static bool release_barrier() {
  int waiting = -1, exited = 0, count = 0;
  for (int t = 0; t < g_count; ++t) {
    const Thread& th = g_threads[t];
    if (th.state == DONE) { ++exited; continue; }
    if (th.state == AT_WARP) {
      const unsigned live = live_lanes(t, th.mask);
      const int base = t - (int)lane_of(t);
      for (int lane = 0; lane < 32; ++lane) {
        const int other = base + lane;
        if ((live >> lane & 1u) && g_threads[other].state != AT_WARP) {
          char a[96], b[96];
          describe(a, sizeof a, t);
          describe(b, sizeof b, other);
          fail("%s waits at a warp operation on line %d for lane %d (mask 0x%08x), but %s is "
               "%s on line %d", a, th.line, lane, th.mask, b,
               STATE_NAMES[g_threads[other].state], g_threads[other].line);
          return false;
        }
      }
      continue;
    }
    ++count;
    if (waiting < 0) { waiting = t; continue; }
    if (th.line != g_threads[waiting].line) {
      char a[96], b[96];
      describe(a, sizeof a, waiting);
      describe(b, sizeof b, t);
      fail("%s waits at __syncthreads() on line %d and %s at the one on line %d: every "
           "thread of a block must reach the same barrier", a, g_threads[waiting].line, b,
           th.line);
      return false;
    }
  }
  if (waiting < 0) {
    fail("no thread of block (%u, %u, %u) can go on", blockIdx.x, blockIdx.y, blockIdx.z);
    return false;
  }
  if (exited) {
    char a[96];
    describe(a, sizeof a, waiting);
    fail("__syncthreads() on line %d is reached by %d of the block's %d threads (%s among "
         "them); the other %d have exited: a barrier in code that not every thread runs",
         g_threads[waiting].line, count, g_count, a, exited);
    return false;
  }
  for (int t = 0; t < g_count; ++t) g_threads[t].state = RUNNABLE;
  return true;
}

static void shuffle_order() {
  for (int i = 0; i < g_count; ++i) g_order[i] = i;
  if (!g_random) return;
  for (int i = g_count - 1; i > 0; --i) {
    const int j = (int)(next_random() % (unsigned)(i + 1));
    const int k = g_order[i]; g_order[i] = g_order[j]; g_order[j] = k;
  }
}

/* Runs one block to its end; false (with g_error set) if it failed. */
static bool run_block(char* stacks) {
  for (int t = 0; t < g_count; ++t) {
    Thread& th = g_threads[t];
    getcontext(&th.context);
    th.context.uc_stack.ss_sp = stacks + (size_t)t * STACK_BYTES;
    th.context.uc_stack.ss_size = STACK_BYTES;
    th.context.uc_link = &g_scheduler;
    makecontext(&th.context, thread_main, 0);
    th.state = RUNNABLE;
    th.index = {t % blockDim.x, t / blockDim.x % blockDim.y, t / (blockDim.x * blockDim.y)};
  }
  for (;;) {
    shuffle_order();
    for (int i = 0; i < g_count; ++i) {
      const int t = g_order[i];
      if (g_threads[t].state != RUNNABLE) continue;
      g_current = t;
      threadIdx = g_threads[t].index;
      swapcontext(&g_scheduler, &g_threads[t].context);
      if (g_failed) return false;
    }
    bool all_done = true;
    for (int t = 0; t < g_count && all_done; ++t) all_done = g_threads[t].state == DONE;
    if (all_done) return true;
    if (release_warps()) continue;
    if (g_failed || !release_barrier()) return false;
  }
}

/* Runs `body` over the grid and block of `dims` (grid x, y, z, block x, y, z); the
   error message, or nullptr. */
static const char* run_grid(void (*body)(), const long long* dims, unsigned seed) {
  gridDim = {(unsigned)dims[0], (unsigned)dims[1], (unsigned)dims[2]};
  blockDim = {(unsigned)dims[3], (unsigned)dims[4], (unsigned)dims[5]};
  g_count = (int)(dims[3] * dims[4] * dims[5]);
  if (g_count > MAX_THREADS) {
    snprintf(g_error, sizeof g_error, "a block of %d threads; the simulator runs at most %d",
             g_count, MAX_THREADS);
    return g_error;
  }
  g_body = body;
  g_failed = false;
  g_random = seed;
  const size_t bytes = (size_t)g_count * STACK_BYTES;
  char* stacks = (char*)mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (stacks == MAP_FAILED) {
    snprintf(g_error, sizeof g_error, "cannot map %zu bytes of thread stacks", bytes);
    return g_error;
  }
  const long long blocks = dims[0] * dims[1] * dims[2];
  long long step = 1, offset = 0;  // blocks run in the order k * step + offset (mod blocks)
  if (g_random && blocks > 1) {
    offset = next_random() % blocks;
    step = next_random() % blocks;
    while (gcd(step, blocks) != 1) step = (step + 1) % blocks;
  }
  for (long long k = 0; k < blocks && !g_failed; ++k) {
    const long long b = (k * step + offset) % blocks;
    blockIdx = {(unsigned)(b % dims[0]), (unsigned)(b / dims[0] % dims[1]),
                (unsigned)(b / (dims[0] * dims[1]))};
    run_block(stacks);
  }
  munmap(stacks, bytes);
  return g_failed ? g_error : nullptr;
}

/* ---- warp operations ----------------------------------------------------- */

static void sync_warp(int line, unsigned mask) {
  if (!(mask >> lane_of(g_current) & 1u)) {
    char a[96];
    describe(a, sizeof a, g_current);
    fail("%s runs a warp operation on line %d with mask 0x%08x, which leaves out its own lane "
         "%u", a, line, mask, lane_of(g_current));
    wait(DONE, line, mask);
  }
  wait(AT_WARP, line, mask);
}

template <class T> T shuffle_from(int line, unsigned mask, T value, int source_lane) {
  static_assert(sizeof(T) <= 16, "a shuffled value fits a slot");
  const int me = g_current;
  memcpy(g_slots[me], &value, sizeof(T));
  sync_warp(line, mask);
  const int source = me - (int)lane_of(me) + source_lane;
  T result;
  if ((mask >> source_lane & 1u) && source < g_count && g_threads[source].state != DONE)
    memcpy(&result, g_slots[source], sizeof(T));
  else
    memset(&result, 0xff, sizeof(T));
  sync_warp(line, mask);  // every lane has read before any offers its next value
  return result;
}

template <class T> T shuffle_xor(int line, unsigned mask, T value, int lane_mask, int width) {
  const int lane = (int)lane_of(g_current);
  int source = lane ^ lane_mask;
  if (source / width != lane / width) source = lane;
  return shuffle_from(line, mask, value, source);
}

template <class T> T shuffle_down(int line, unsigned mask, T value, int delta, int width) {
  const int lane = (int)lane_of(g_current);
  int source = lane + delta;
  if (source / width != lane / width) source = lane;
  return shuffle_from(line, mask, value, source);
}

/* ---- launching ------------------------------------------------------------- */

template <class P> P argument(void* slot) {
  if constexpr (std::is_pointer<P>::value) return (P)slot;
  else return *(const P*)slot;
}

template <class... P> struct Bound {
  static void (*kernel)(P...);
  static void** args;
  template <size_t... I> static void call(std::index_sequence<I...>) {
    kernel(argument<P>(args[I])...);
  }
  static void body() { call(std::index_sequence_for<P...>{}); }
};
template <class... P> void (*Bound<P...>::kernel)(P...);
template <class... P> void** Bound<P...>::args;

/* Runs `kernel` over `dims` with `args`: a pointer per buffer, then a pointer to each
   size's value. */
template <class... P>
const char* launch(void (*kernel)(P...), void** args, const long long* dims, unsigned seed) {
  Bound<P...>::kernel = kernel;
  Bound<P...>::args = args;
  return run_grid(&Bound<P...>::body, dims, seed);
}

}  // namespace tex_sim

#define __syncthreads() tex_sim::wait(tex_sim::AT_BARRIER, __LINE__, 0u)
#define __syncwarp(...) tex_sim::sync_warp(__LINE__, 0xffffffffu __VA_OPT__(& (__VA_ARGS__)))
#define __shfl_xor_sync(mask, value, lane_mask, width) \
  tex_sim::shuffle_xor(__LINE__, mask, value, lane_mask, width)
#define __shfl_down_sync(mask, value, delta, width) \
  tex_sim::shuffle_down(__LINE__, mask, value, delta, width)

#include "tex_cuda_simulator_sm80.h"
