// IBP encoder on the GPU, bit-identical to the CPU encoder for the same plan: the encoding of a
// row is fully determined by the plan (docs/format.md: base patterns, selector bits and
// alternatives per column, bitmap or list header). Two passes, one warp per row and one lane
// per chunk: row lengths (for the offsets), then the rows themselves. Input rows are dense
// [n, row_bytes] in device memory.
#include "ibp_common.cuh"

#ifndef IBP_ENCODE_THREADS
#define IBP_ENCODE_THREADS 256
#endif

// How chunk j is coded: against its base pattern, or against the alternative `slot` (the
// matching one with the fewest free bits, the lowest slot on ties, as the CPU encoder picks);
// slot -1 when no pattern of the column matches (a plan that cannot encode the row).
template <typename Word>
struct ChunkCode {
  bool base;
  int slot;
  int sel_bits;
  Word mask;
};

template <typename Word>
__device__ __forceinline__ ChunkCode<Word> code_chunk(const Patterns<Word>& pat, long long j,
                                                      Word c) {
  constexpr int W = WordOps<Word>::BITS;
  ChunkCode<Word> out = {true, 0, 0, __ldg(pat.mask + j)};
  if ((Word)(c & out.mask) == __ldg(pat.bitval + j)) return out;
  out.base = false;
  out.slot = -1;
  out.sel_bits = (int)__ldg(pat.sel + j);
  const unsigned a0 = __ldg(pat.alt_base + j);
  int best_free = W + 1;
  for (int v = 0; v < (1 << out.sel_bits); ++v) {
    const Word m = __ldg(pat.alt_mask + a0 + v);
    const int f = W - WordOps<Word>::popc(m);
    if ((Word)(c & m) == __ldg(pat.alt_bitval + a0 + v) && f < best_free) {
      best_free = f;
      out.slot = v;
      out.mask = m;
    }
  }
  return out;
}

// OR the n low bits of v (n in [1, W]) into the stream at bit `off` (words fill from the top).
// Lanes share stream words, hence atomics on a zero-filled buffer.
template <typename Word>
__device__ __forceinline__ void put_bits(Word* stream, u64 off, Word v, int n) {
  constexpr int W = WordOps<Word>::BITS;
  const u64 wi = off / W;
  const int sh = (int)(off % W);
  if (sh + n <= W) {
    WordOps<Word>::atomic_or(stream + wi, (Word)(v << (W - sh - n)));   // shift in [0, W-1]
  } else {
    const int spill = sh + n - W;                                        // in [1, W-1]
    WordOps<Word>::atomic_or(stream + wi, (Word)(v >> spill));
    WordOps<Word>::atomic_or(stream + wi + 1, (Word)(v << (W - spill)));
  }
}

// Stored length in words of each row, header + stream words or C when that is not shorter, in
// the row group that stores it in the fewest words (the lowest on ties; written to
// row_group, 0 for raw rows); -1 when no group can encode the row.
template <typename Word>
__device__ __forceinline__ void ibp_row_words(const u8* __restrict__ x, long long n,
                                              long long row_bytes, int unit,
                                              const Patterns<Word> pat, int list_header,
                                              int num_groups, long long C,
                                              long long* __restrict__ lengths,
                                              int* __restrict__ row_group) {
  constexpr int W = WordOps<Word>::BITS;
  const int lane = threadIdx.x & 31;
  const long long warps_per_block = blockDim.x >> 5;
  const long long H = list_header ? 0 : (C + W - 1) / W;
  const int pos_bits = list_pos_bits(C);
  const u64 prefix =
      (u64)bits_below(num_groups) + (list_header ? (u64)list_count_bits(C) : 0);
  for (long long r = blockIdx.x * warps_per_block + (threadIdx.x >> 5); r < n;
       r += (long long)gridDim.x * warps_per_block) {
    const u8* row = x + r * row_bytes;
    long long best = -1;
    int best_group = 0;
    for (int g = 0; g < num_groups; ++g) {
      const Patterns<Word> pg = group_patterns<Word>(pat, (long long)g * C);
      u64 bits = 0;
      bool ok = true;
      for (long long j = lane; j < C; j += 32) {
        const Word c = load_chunk<Word>(row, j, row_bytes, unit);
        const ChunkCode<Word> code = code_chunk<Word>(pg, j, c);
        bits += (u64)(W - WordOps<Word>::popc(code.mask));
        if (!code.base) {
          ok = ok && code.slot >= 0;
          bits += (u64)code.sel_bits + (list_header ? (u64)pos_bits : 0);
        }
      }
#pragma unroll
      for (int d = 16; d > 0; d >>= 1) bits += __shfl_xor_sync(IBP_FULL_MASK, bits, d);
      if (__ballot_sync(IBP_FULL_MASK, !ok) != 0) continue;   // uniform over the warp
      long long words = H + (long long)((prefix + bits + W - 1) / W);
      if (words > C) words = C;
      if (best < 0 || words < best) {
        best = words;
        best_group = g;
      }
    }
    if (lane == 0) {
      lengths[r] = best;
      row_group[r] = best < C ? best_group : 0;
    }
  }
}

// Write rows into `out` (zero-filled by the caller) at word offsets `offsets[r]` (relative to
// `out`, [n + 1]). A raw row is exactly a row whose length is C.
template <typename Word>
__device__ __forceinline__ void ibp_encode_rows(const u8* __restrict__ x, long long n,
                                                long long row_bytes, int unit,
                                                const Patterns<Word> all, int list_header,
                                                int num_groups, long long C,
                                                const int* __restrict__ row_group,
                                                const long long* __restrict__ offsets,
                                                Word* __restrict__ out) {
  constexpr int W = WordOps<Word>::BITS;
  const int lane = threadIdx.x & 31;
  const long long warps_per_block = blockDim.x >> 5;
  const long long H = list_header ? 0 : (C + W - 1) / W;
  const int count_bits = list_count_bits(C);
  const int pos_bits = list_pos_bits(C);
  const int group_bits = bits_below(num_groups);
  for (long long r = blockIdx.x * warps_per_block + (threadIdx.x >> 5); r < n;
       r += (long long)gridDim.x * warps_per_block) {
    const u8* row = x + r * row_bytes;
    const long long start = __ldg(offsets + r);
    const long long len = __ldg(offsets + r + 1) - start;
    Word* dst = out + start;
    if (len == C) {
      for (long long j = lane; j < C; j += 32) {
        const Word c = load_chunk<Word>(row, j, row_bytes, unit);
        // 16-bit words are ORed in through 32-bit atomics that may cover a neighbouring
        // row's word: a plain store here could race with them.
        if (W < 32) WordOps<Word>::atomic_or(dst + j, c);
        else dst[j] = c;
      }
      continue;
    }
    Word* stream = dst + H;
    // the selectors fill the stream from its end backward, the free bits from its start
    const u64 stream_bits = (u64)(len - H) * W;
    u64 sel_done = 0;
    const int group = __ldg(row_group + r);
    const Patterns<Word> pat = group_patterns<Word>(all, (long long)group * C);
    if (lane == 0 && group_bits) put_bits<Word>(stream, 0, (Word)group, group_bits);
    u64 bitpos = group_bits;
    if (list_header) {  // the count first: one extra pass over the row's header decisions
      long long listed = 0;
      for (long long j0 = 0; j0 < C; j0 += 32) {
        const long long j = j0 + lane;
        bool miss = false;
        if (j < C) {
          const Word c = load_chunk<Word>(row, j, row_bytes, unit);
          miss = (Word)(c & __ldg(pat.mask + j)) != __ldg(pat.bitval + j);
        }
        listed += __popc(__ballot_sync(IBP_FULL_MASK, miss));
      }
      if (lane == 0 && count_bits) put_bits<Word>(stream, bitpos, (Word)listed, count_bits);
      bitpos += (u64)count_bits + (u64)listed * pos_bits;
    }
    long long listed_done = 0;
    for (long long j0 = 0; j0 < C; j0 += 32) {
      const long long j = j0 + lane;
      const bool active = j < C;
      Word c = 0;
      ChunkCode<Word> code = {true, 0, 0, 0};
      if (active) {
        c = load_chunk<Word>(row, j, row_bytes, unit);
        code = code_chunk<Word>(pat, j, c);
      }
      const bool nonbase = active && !code.base;
      if (list_header) {
        const unsigned listed = __ballot_sync(IBP_FULL_MASK, nonbase);
        if (nonbase) {
          const long long e = listed_done + __popc(listed & ((1u << lane) - 1u));
          put_bits<Word>(stream, (u64)(group_bits + count_bits) + (u64)e * pos_bits, (Word)j,
                         pos_bits);
        }
        listed_done += __popc(listed);
      } else {
        // Header bit j % W of word j / W: a round fills part of one word, or two 16-bit words.
        const unsigned matched = __ballot_sync(IBP_FULL_MASK, active && code.base);
        if (lane == 0) {
          for (int k = 0; k < 32; k += (W < 32 ? W : 32)) {
            const unsigned part = W < 32 ? (matched >> k) & ((1u << (W & 31)) - 1u)
                                         : matched >> k;
            if (part) WordOps<Word>::atomic_or(dst + (j0 + k) / W,
                                               (Word)((Word)part << (int)((j0 + k) % W)));
          }
        }
      }
      const int s = nonbase ? code.sel_bits : 0;
      const int sel_incl = warp_inclusive_scan(s, lane);
      const int sel_total = __shfl_sync(IBP_FULL_MASK, sel_incl, 31);
      if (s) put_bits<Word>(stream, stream_bits - sel_done - (u64)sel_incl, (Word)code.slot, s);
      const int nbits = active ? W - WordOps<Word>::popc(code.mask) : 0;
      const int incl = warp_inclusive_scan(nbits, lane);
      const int round_bits = __shfl_sync(IBP_FULL_MASK, incl, 31);
      if (nbits > 0) {
        const Word v = extract_bits<Word>(c, (Word)~code.mask);
        put_bits<Word>(stream, bitpos + (u64)(incl - nbits), v, nbits);
      }
      bitpos += (u64)round_bits;
      sel_done += (u64)sel_total;
    }
  }
}

#define IBP_ENCODE_KERNELS(SUFFIX, WORD)                                                       \
  extern "C" __global__ void __launch_bounds__(IBP_ENCODE_THREADS) ibp_row_words_##SUFFIX(     \
      const u8* x, long long n, long long row_bytes, int unit, const WORD* mask,               \
      const WORD* bitval, const u8* sel, const unsigned* alt_base, const WORD* alt_mask,       \
      const WORD* alt_bitval, int list_header, int num_groups, long long C,                    \
      long long* lengths, int* row_group) {                                                    \
    const Patterns<WORD> pat = {mask, bitval, sel, alt_base, alt_mask, alt_bitval};           \
    ibp_row_words<WORD>(x, n, row_bytes, unit, pat, list_header, num_groups, C, lengths,       \
                        row_group);                                                            \
  }                                                                                            \
  extern "C" __global__ void __launch_bounds__(IBP_ENCODE_THREADS) ibp_encode_rows_##SUFFIX(   \
      const u8* x, long long n, long long row_bytes, int unit, const WORD* mask,               \
      const WORD* bitval, const u8* sel, const unsigned* alt_base, const WORD* alt_mask,       \
      const WORD* alt_bitval, int list_header, int num_groups, long long C,                    \
      const int* row_group, const long long* offsets, WORD* out) {                             \
    const Patterns<WORD> pat = {mask, bitval, sel, alt_base, alt_mask, alt_bitval};           \
    ibp_encode_rows<WORD>(x, n, row_bytes, unit, pat, list_header, num_groups, C, row_group,   \
                          offsets, out);                                                       \
  }

IBP_ENCODE_KERNELS(w16, u16)
IBP_ENCODE_KERNELS(w32, u32)
IBP_ENCODE_KERNELS(w64, u64)
