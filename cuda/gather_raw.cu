// Row gather of an uncompressed [N, row_bytes] matrix, typically in pinned host memory read
// zero-copy (what a UVA feature gather does): the baseline the IBP decoder has to beat.
// A group of G lanes (a power of two <= 32) serves one row, so narrow rows do not leave most
// of a warp idle; each lane moves `Vec`-sized pieces (16 bytes when the row allows).
#include "ibp_common.cuh"

#ifndef IBP_GATHER_THREADS
#define IBP_GATHER_THREADS 256
#endif

#define IBP_GATHER_UNROLL 4

template <typename Vec, typename Index>
__device__ __forceinline__ void gather_rows(const Vec* __restrict__ src, long long num_rows,
                                            long long row_vecs, const Index* __restrict__ index,
                                            const long long* __restrict__ out_pos, long long B,
                                            Vec* __restrict__ out, int group_shift) {
  const int G = 1 << group_shift;
  const int gl = threadIdx.x & (G - 1);
  // blockDim.x is a multiple of 32 and G divides 32, so groups never straddle blocks.
  const long long groups_per_block = blockDim.x >> group_shift;
  const long long first = blockIdx.x * groups_per_block + (threadIdx.x >> group_shift);
  const long long stride = (long long)gridDim.x * groups_per_block;
  for (long long b = first; b < B; b += stride) {
    const long long row = (long long)__ldg(index + b);
    const long long opos = out_pos ? __ldg(out_pos + b) : b;
    Vec* d = out + opos * row_vecs;
    if (row < 0 || row >= num_rows) {
      const Vec zero = {};
      for (long long k = gl; k < row_vecs; k += G) d[k] = zero;
      continue;
    }
    const Vec* s = src + row * row_vecs;
    for (long long k0 = 0; k0 < row_vecs; k0 += (long long)G * IBP_GATHER_UNROLL) {
      Vec r[IBP_GATHER_UNROLL];
#pragma unroll
      for (int u = 0; u < IBP_GATHER_UNROLL; ++u) {
        const long long k = k0 + (long long)u * G + gl;
        if (k < row_vecs) r[u] = s[k];
      }
#pragma unroll
      for (int u = 0; u < IBP_GATHER_UNROLL; ++u) {
        const long long k = k0 + (long long)u * G + gl;
        if (k < row_vecs) d[k] = r[u];
      }
    }
  }
}

#define IBP_GATHER_KERNEL(NAME, VEC, INDEX)                                                     \
  extern "C" __global__ void __launch_bounds__(IBP_GATHER_THREADS) NAME(                        \
      const VEC* src, long long num_rows, long long row_vecs, const INDEX* index,               \
      const long long* out_pos, long long B, VEC* out, int group_shift) {                       \
    gather_rows<VEC, INDEX>(src, num_rows, row_vecs, index, out_pos, B, out, group_shift);      \
  }

IBP_GATHER_KERNEL(gather_raw_v16_i32, uint4, int)
IBP_GATHER_KERNEL(gather_raw_v16_i64, uint4, long long)
IBP_GATHER_KERNEL(gather_raw_v8_i32, uint2, int)
IBP_GATHER_KERNEL(gather_raw_v8_i64, uint2, long long)
IBP_GATHER_KERNEL(gather_raw_v4_i32, u32, int)
IBP_GATHER_KERNEL(gather_raw_v4_i64, u32, long long)
IBP_GATHER_KERNEL(gather_raw_v2_i32, u16, int)
IBP_GATHER_KERNEL(gather_raw_v2_i64, u16, long long)
IBP_GATHER_KERNEL(gather_raw_v1_i32, u8, int)
IBP_GATHER_KERNEL(gather_raw_v1_i64, u8, long long)
