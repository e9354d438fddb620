// IBP encoder on the GPU, bit-identical to the CPU encoder for the same plan (mask, bitval,
// chunk width): the encoding of a row is fully determined by the plan (docs/format.md).
// Two passes, one warp per row: row lengths (for the offsets), then the rows themselves.
// Input rows are dense [n, row_bytes] in device memory.
#include "ibp_common.cuh"

#ifndef IBP_ENCODE_THREADS
#define IBP_ENCODE_THREADS 256
#endif

// Stored length in words of each row: header + stream words, or C when that is not shorter.
template <typename Word>
__device__ __forceinline__ void ibp_row_words(const u8* __restrict__ x, long long n,
                                              long long row_bytes, int unit,
                                              const Word* __restrict__ mask,
                                              const Word* __restrict__ bitval, long long C,
                                              long long* __restrict__ lengths) {
  constexpr int W = WordOps<Word>::BITS;
  const int lane = threadIdx.x & 31;
  const long long warps_per_block = blockDim.x >> 5;
  const long long H = (C + W - 1) / W;
  for (long long r = blockIdx.x * warps_per_block + (threadIdx.x >> 5); r < n;
       r += (long long)gridDim.x * warps_per_block) {
    const u8* row = x + r * row_bytes;
    u64 bits = 0;
    for (long long j = lane; j < C; j += 32) {
      const Word c = load_chunk<Word>(row, j, row_bytes, unit);
      const Word m = __ldg(mask + j);
      bits += ((c & m) == __ldg(bitval + j)) ? (u64)(W - WordOps<Word>::popc(m)) : (u64)W;
    }
#pragma unroll
    for (int d = 16; d > 0; d >>= 1) bits += __shfl_xor_sync(IBP_FULL_MASK, bits, d);
    if (lane == 0) {
      const long long words = H + (long long)((bits + W - 1) / W);
      lengths[r] = words < C ? words : C;
    }
  }
}

// Write rows into `out` (zero-filled by the caller) at word offsets `offsets[r]` (relative to
// `out`, [n + 1]). A raw row is exactly the rows whose length is C.
template <typename Word>
__device__ __forceinline__ void ibp_encode_rows(const u8* __restrict__ x, long long n,
                                                long long row_bytes, int unit,
                                                const Word* __restrict__ mask,
                                                const Word* __restrict__ bitval, long long C,
                                                const long long* __restrict__ offsets,
                                                Word* __restrict__ out) {
  constexpr int W = WordOps<Word>::BITS;
  const int lane = threadIdx.x & 31;
  const long long warps_per_block = blockDim.x >> 5;
  const long long H = (C + W - 1) / W;
  for (long long r = blockIdx.x * warps_per_block + (threadIdx.x >> 5); r < n;
       r += (long long)gridDim.x * warps_per_block) {
    const u8* row = x + r * row_bytes;
    const long long start = __ldg(offsets + r);
    const long long len = __ldg(offsets + r + 1) - start;
    Word* dst = out + start;
    if (len == C) {
      for (long long j = lane; j < C; j += 32) dst[j] = load_chunk<Word>(row, j, row_bytes, unit);
      continue;
    }
    Word* stream = dst + H;
    u64 bitpos = 0;
    for (long long j0 = 0; j0 < C; j0 += 32) {
      const long long j = j0 + lane;
      const bool active = j < C;
      Word c = 0, m = 0;
      bool match = false;
      if (active) {
        c = load_chunk<Word>(row, j, row_bytes, unit);
        m = __ldg(mask + j);
        match = (c & m) == __ldg(bitval + j);
      }
      // Header bit j % W of word j / W; a round lies within one header word (see decoder).
      const u32 ballot = __ballot_sync(IBP_FULL_MASK, match);
      if (lane == 0 && ballot) atomicOr(dst + j0 / W, (Word)((Word)ballot << (j0 % W)));
      const int nbits = active ? (match ? W - WordOps<Word>::popc(m) : W) : 0;
      const Word v = match ? extract_bits<Word>(c, (Word)~m) : c;
      const int incl = warp_inclusive_scan(nbits, lane);
      const int round_bits = __shfl_sync(IBP_FULL_MASK, incl, 31);
      if (nbits > 0) {
        // Several lanes share a stream word, hence the atomics on a zero-filled buffer.
        const u64 off = bitpos + (u64)(incl - nbits);
        const u64 wi = off / W;
        const int sh = (int)(off % W);
        if (sh + nbits <= W) {
          atomicOr(stream + wi, (Word)(v << (W - sh - nbits)));   // shift in [0, W-1]
        } else {
          const int spill = sh + nbits - W;                        // in [1, W-1]
          atomicOr(stream + wi, (Word)(v >> spill));
          atomicOr(stream + wi + 1, (Word)(v << (W - spill)));
        }
      }
      bitpos += (u64)round_bits;
    }
  }
}

#define IBP_ENCODE_KERNELS(SUFFIX, WORD)                                                       \
  extern "C" __global__ void __launch_bounds__(IBP_ENCODE_THREADS) ibp_row_words_##SUFFIX(     \
      const u8* x, long long n, long long row_bytes, int unit, const WORD* mask,               \
      const WORD* bitval, long long C, long long* lengths) {                                   \
    ibp_row_words<WORD>(x, n, row_bytes, unit, mask, bitval, C, lengths);                      \
  }                                                                                            \
  extern "C" __global__ void __launch_bounds__(IBP_ENCODE_THREADS) ibp_encode_rows_##SUFFIX(   \
      const u8* x, long long n, long long row_bytes, int unit, const WORD* mask,               \
      const WORD* bitval, long long C, const long long* offsets, WORD* out) {                  \
    ibp_encode_rows<WORD>(x, n, row_bytes, unit, mask, bitval, C, offsets, out);               \
  }

IBP_ENCODE_KERNELS(w32, u32)
IBP_ENCODE_KERNELS(w64, u64)
