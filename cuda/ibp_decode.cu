// Fused gather + IBP decode (docs/format.md): one warp per requested row, one lane per chunk,
// 32 chunks per round. The payload may live in pinned host memory (read zero-copy over the
// bus through its UVA pointer) or in device memory; the same code serves both.
#include "ibp_common.cuh"

#ifndef IBP_DECODE_THREADS
#define IBP_DECODE_THREADS 512
#endif

// Loads are issued UNROLL at a time before any is consumed, so a warp keeps several bus
// transactions in flight instead of one round trip per 128 bytes.
#define IBP_COPY_UNROLL 8

// Decode one encoded row (header words, then the bit stream) from `src`, which is either the
// warp's shared-memory copy of the row or the payload itself.
template <typename Word>
__device__ __forceinline__ void decode_encoded_row(const Word* src, const Word* maskp,
                                                   const Word* bitvp, long long C, long long H,
                                                   u8* __restrict__ dst, long long row_bytes,
                                                   int unit, int lane) {
  constexpr int W = WordOps<Word>::BITS;
  const Word* stream = src + H;
  u64 bitpos = 0;  // 64-bit: a row of 2^27 64-bit chunks has more stream bits than an int holds
  for (long long j0 = 0; j0 < C; j0 += 32) {
    const long long j = j0 + lane;
    const bool active = j < C;
    // A round of 32 chunks never spans two header words: j0 is a multiple of 32 and W is 32 or
    // 64. All lanes read the same word, which is a single broadcast transaction.
    const Word hw = src[j0 / W];
    const int hshift = (int)(j0 % W) + lane;  // < W
    Word m = 0, bv = 0;
    int compressed = 0, nbits = 0;
    if (active) {
      compressed = (int)((hw >> hshift) & (Word)1);
      m = maskp[j];
      bv = bitvp[j];
      nbits = compressed ? W - WordOps<Word>::popc(m) : W;
    }
    const int incl = warp_inclusive_scan(nbits, lane);
    const int round_bits = __shfl_sync(IBP_FULL_MASK, incl, 31);
    Word v = 0;
    if (nbits > 0) {
      // Stream bit k is bit W-1-(k%W) of stream word k/W: words fill from the top down.
      const u64 off = bitpos + (u64)(incl - nbits);
      const u64 wi = off / W;
      const int sh = (int)(off % W);
      Word top = (Word)(stream[wi] << sh);  // our bits now start at the most significant bit
      // Only read the next word when the chunk straddles into it (then sh > 0, so the shift
      // below is in [1, W-1]); never read past the row's last word.
      if (sh + nbits > W) top |= (Word)(stream[wi + 1] >> (W - sh));
      v = (Word)(top >> (W - nbits));       // nbits in [1, W]
    }
    if (active) {
      const Word out = compressed ? deposit_bits<Word>(v, (Word)~m, bv) : v;
      store_chunk<Word>(dst, j, out, row_bytes, unit);
    }
    bitpos += (u64)round_bits;
  }
}

template <typename Word, typename Index, typename Off>
__device__ __forceinline__ void ibp_gather_decode(
    const Word* __restrict__ payload, const Off* __restrict__ offset_lo,
    const u64* __restrict__ block_base, int offset_shift, const Word* __restrict__ mask_g,
    const Word* __restrict__ bitval_g, long long num_rows, long long C,
    const Index* __restrict__ index, const long long* __restrict__ out_pos, long long B,
    u8* __restrict__ out, long long row_bytes, int unit, int stage_masks, long long cap_words) {
  constexpr int W = WordOps<Word>::BITS;
  // u64 elements so the dynamic buffer is 8-byte aligned for either word width.
  extern __shared__ u64 ibp_smem_u64[];
  Word* smem = reinterpret_cast<Word*>(ibp_smem_u64);
  const long long H = (C + W - 1) / W;

  const Word* maskp = mask_g;
  const Word* bitvp = bitval_g;
  Word* warp_bufs = smem;
  if (stage_masks) {  // uniform over the grid, so the barrier is safe
    for (long long j = threadIdx.x; j < C; j += blockDim.x) {
      smem[j] = __ldg(mask_g + j);
      smem[C + j] = __ldg(bitval_g + j);
    }
    __syncthreads();
    maskp = smem;
    bitvp = smem + C;
    warp_bufs = smem + 2 * C;
  }

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const long long warps_per_block = blockDim.x >> 5;
  Word* buf = warp_bufs + warp * cap_words;

  // Persistent warps: the shared mask/bitval copy is paid once per block, not once per row.
  for (long long b = blockIdx.x * warps_per_block + warp; b < B;
       b += (long long)gridDim.x * warps_per_block) {
    const long long row = (long long)__ldg(index + b);
    const long long opos = out_pos ? __ldg(out_pos + b) : b;
    u8* dst = out + opos * row_bytes;
    // Python validates indices first; this keeps a bad index from reading out of bounds
    // even when validation was skipped.
    if (row < 0 || row >= num_rows) {
      for (long long k = lane; k < row_bytes; k += 32) dst[k] = 0;
      continue;
    }
    const u64 start = row_offset<Off>(offset_lo, block_base, offset_shift, row);
    const u64 end = row_offset<Off>(offset_lo, block_base, offset_shift, row + 1);
    const long long len = (long long)(end - start);
    const Word* src = payload + start;

    if (len == C) {  // stored raw: a straight copy
      for (long long k0 = 0; k0 < C; k0 += 32 * IBP_COPY_UNROLL) {
        Word r[IBP_COPY_UNROLL];
#pragma unroll
        for (int u = 0; u < IBP_COPY_UNROLL; ++u) {
          const long long k = k0 + u * 32 + lane;
          r[u] = k < C ? src[k] : (Word)0;
        }
#pragma unroll
        for (int u = 0; u < IBP_COPY_UNROLL; ++u) {
          const long long k = k0 + u * 32 + lane;
          if (k < C) store_chunk<Word>(dst, k, r[u], row_bytes, unit);
        }
      }
      continue;
    }

    if (len <= cap_words) {
      // Fetch the whole encoded row with independent coalesced loads (few bus round trips),
      // then decode from shared memory.
      for (long long k0 = 0; k0 < len; k0 += 32 * IBP_COPY_UNROLL) {
        Word r[IBP_COPY_UNROLL];
#pragma unroll
        for (int u = 0; u < IBP_COPY_UNROLL; ++u) {
          const long long k = k0 + u * 32 + lane;
          r[u] = k < len ? src[k] : (Word)0;
        }
#pragma unroll
        for (int u = 0; u < IBP_COPY_UNROLL; ++u) {
          const long long k = k0 + u * 32 + lane;
          if (k < len) buf[k] = r[u];
        }
      }
      __syncwarp();
      decode_encoded_row<Word>(buf, maskp, bitvp, C, H, dst, row_bytes, unit, lane);
      __syncwarp();  // the next row overwrites buf
    } else {
      // Long rows: decode straight from the payload, one dependent read per round.
      decode_encoded_row<Word>(src, maskp, bitvp, C, H, dst, row_bytes, unit, lane);
    }
  }
}

#define IBP_DECODE_KERNEL(NAME, WORD, INDEX, OFF)                                              \
  extern "C" __global__ void __launch_bounds__(IBP_DECODE_THREADS) NAME(                       \
      const WORD* payload, const OFF* offset_lo, const u64* block_base, int offset_shift,      \
      const WORD* mask, const WORD* bitval, long long num_rows, long long C,                   \
      const INDEX* index, const long long* out_pos, long long B, u8* out, long long row_bytes, \
      int unit, int stage_masks, long long cap_words) {                                        \
    ibp_gather_decode<WORD, INDEX, OFF>(payload, offset_lo, block_base, offset_shift, mask,    \
                                        bitval, num_rows, C, index, out_pos, B, out, row_bytes,\
                                        unit, stage_masks, cap_words);                         \
  }

// ibp_decode_w{chunk bits}_i{index bits}_o{offset_lo bits}
IBP_DECODE_KERNEL(ibp_decode_w32_i32_o16, u32, int, u16)
IBP_DECODE_KERNEL(ibp_decode_w32_i64_o16, u32, long long, u16)
IBP_DECODE_KERNEL(ibp_decode_w64_i32_o16, u64, int, u16)
IBP_DECODE_KERNEL(ibp_decode_w64_i64_o16, u64, long long, u16)
IBP_DECODE_KERNEL(ibp_decode_w32_i32_o32, u32, int, u32)
IBP_DECODE_KERNEL(ibp_decode_w32_i64_o32, u32, long long, u32)
IBP_DECODE_KERNEL(ibp_decode_w64_i32_o32, u64, int, u32)
IBP_DECODE_KERNEL(ibp_decode_w64_i64_o32, u64, long long, u32)
