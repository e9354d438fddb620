// Helpers shared by the IBP kernels. Compiled with NVRTC and no system headers, so only
// built-in types and intrinsics are used. The Python loader inlines this file into each .cu
// (so CuPy's source-hash kernel cache sees every change).
#pragma once

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define IBP_FULL_MASK 0xffffffffu

template <typename Word> struct WordOps;

template <> struct WordOps<u16> {
  static constexpr int BITS = 16;
  static __device__ __forceinline__ int popc(u16 x) { return __popc((u32)x); }
  static __device__ __forceinline__ int ctz(u16 x) { return __ffs((int)x) - 1; }
  // There is no 16-bit atomicOr: OR into the aligned 32-bit word holding *p (little-endian),
  // so buffers of 16-bit words must be 4-byte aligned and padded to an even length.
  static __device__ __forceinline__ void atomic_or(u16* p, u16 v) {
    const u64 a = (u64)p;
    atomicOr(reinterpret_cast<u32*>(a & ~(u64)3), (u32)v << ((a & 2) ? 16 : 0));
  }
};

template <> struct WordOps<u32> {
  static constexpr int BITS = 32;
  static __device__ __forceinline__ int popc(u32 x) { return __popc(x); }
  // index of the lowest set bit; x != 0
  static __device__ __forceinline__ int ctz(u32 x) { return __ffs((int)x) - 1; }
  static __device__ __forceinline__ void atomic_or(u32* p, u32 v) { atomicOr(p, v); }
};

template <> struct WordOps<u64> {
  static constexpr int BITS = 64;
  static __device__ __forceinline__ int popc(u64 x) { return __popcll(x); }
  static __device__ __forceinline__ int ctz(u64 x) { return __ffsll((long long)x) - 1; }
  static __device__ __forceinline__ void atomic_or(u64* p, u64 v) { atomicOr(p, v); }
};

// Column patterns (docs/format.md): the base pattern of column j is mask[j]/bitval[j]; a chunk
// that misses it reads sel[j] selector bits v and uses alternative alt_mask/alt_bitval
// [alt_base[j] + v] (an empty mask: the chunk is stored whole).
template <typename Word>
struct Patterns {
  const Word* mask;
  const Word* bitval;
  const u8* sel;
  const unsigned* alt_base;
  const Word* alt_mask;
  const Word* alt_bitval;
};

// The patterns of row group g: its columns are entries [g * C, (g + 1) * C) of the per-column
// arrays; the alternative table is shared.
template <typename Word>
__device__ __forceinline__ Patterns<Word> group_patterns(const Patterns<Word>& pat,
                                                         long long first) {
  return {pat.mask + first, pat.bitval + first, pat.sel + first, pat.alt_base + first,
          pat.alt_mask, pat.alt_bitval};
}

// Bits needed for values below v (v >= 1): the group id and list header field widths.
__device__ __forceinline__ int bits_below(long long v) {
  int n = 0;
  for (long long x = v - 1; x > 0; x >>= 1) ++n;
  return n;
}

// Field widths of a row of C chunks (docs/format.md): a list header's count (bit_length(C))
// and positions (max(1, bit_length(C - 1))).
__device__ __forceinline__ int list_count_bits(long long C) { return bits_below(C + 1); }
__device__ __forceinline__ int list_pos_bits(long long C) { return C > 1 ? bits_below(C) : 1; }

// Bits j0 .. j0+31 of a bitmap header (bit j is bit j % W of word j / W), bit k of the result
// for chunk j0 + k; bits for chunks >= C are zero. j0 is a multiple of 32, so a round lies
// within one header word for W >= 32 and spans two 16-bit words.
template <typename Word>
__device__ __forceinline__ unsigned header_round(const Word* header, long long j0, long long C) {
  constexpr int W = WordOps<Word>::BITS;
  unsigned bits = 0;
#pragma unroll
  for (int k = 0; k < 32; k += (W < 32 ? W : 32)) {
    if (j0 + k < C) {
      const long long j = j0 + k;
      bits |= (unsigned)(u32)(header[j / W] >> (int)(j % W)) << k;
    }
  }
  const long long left = C - j0;
  return left >= 32 ? bits : bits & ((1u << (int)left) - 1u);
}

// Shifts that are defined for every count in [0, BITS]: C++ leaves a shift by the full width
// undefined, and a chunk whose mask is all zero has a run of exactly BITS free bits.
template <typename Word>
__device__ __forceinline__ Word shr_safe(Word x, int s) {
  return s >= WordOps<Word>::BITS ? (Word)0 : (Word)(x >> s);
}

// Deposit the right-aligned bits of v into the set positions of `freem`, lowest bit to the
// lowest position, on top of `base`. Walking runs of free bits (not single bits) keeps the loop
// short: typical masks have one to three runs.
template <typename Word>
__device__ __forceinline__ Word deposit_bits(Word v, Word freem, Word base) {
  Word out = base;
  while (freem) {
    const Word low = freem & (~freem + (Word)1);
    const Word run = freem & ~(freem + low);   // the lowest maximal run of ones
    const int tz = WordOps<Word>::ctz(low);
    const int len = WordOps<Word>::popc(run);
    out |= (Word)(v << tz) & run;              // tz < BITS
    v = shr_safe<Word>(v, len);                // len == BITS when the mask is zero
    freem &= ~run;
  }
  return out;
}

// The inverse: gather the bits of x at the set positions of `freem`, lowest position to the
// lowest bit of the result.
template <typename Word>
__device__ __forceinline__ Word extract_bits(Word x, Word freem) {
  Word v = 0;
  int filled = 0;
  while (freem) {
    const Word low = freem & (~freem + (Word)1);
    const Word run = freem & ~(freem + low);
    const int tz = WordOps<Word>::ctz(low);
    // filled < BITS here: the runs still left hold at least one bit
    v |= (Word)((Word)((x & run) >> tz) << filled);
    filled += WordOps<Word>::popc(run);
    freem &= ~run;
  }
  return v;
}

// Rows of `row_bytes` bytes are stored back to back in the dense output, so a row only has the
// alignment of the largest power of two dividing row_bytes ("unit", 1..sizeof(Word)). A chunk
// is written as sizeof(Word)/unit pieces of `unit` bytes; the padding past row_bytes is dropped.
// unit divides row_bytes, so a piece lies either wholly inside the row or wholly past its end.
template <typename Word>
__device__ __forceinline__ void store_chunk(u8* __restrict__ row, long long j, Word v,
                                            long long row_bytes, int unit) {
  constexpr int WB = (int)sizeof(Word);
  const long long b0 = j * WB;
  const u64 w = (u64)v;
  if (unit == WB) {
    *reinterpret_cast<Word*>(row + b0) = v;
  } else if (unit == 4) {
#pragma unroll
    for (int k = 0; k < WB / 4; ++k)
      if (b0 + 4 * k < row_bytes) *reinterpret_cast<u32*>(row + b0 + 4 * k) = (u32)(w >> (32 * k));
  } else if (unit == 2) {
#pragma unroll
    for (int k = 0; k < WB / 2; ++k)
      if (b0 + 2 * k < row_bytes) *reinterpret_cast<u16*>(row + b0 + 2 * k) = (u16)(w >> (16 * k));
  } else {
#pragma unroll
    for (int k = 0; k < WB; ++k)
      if (b0 + k < row_bytes) row[b0 + k] = (u8)(w >> (8 * k));
  }
}

// Chunk j of a dense row (little-endian word, zero bytes past row_bytes).
template <typename Word>
__device__ __forceinline__ Word load_chunk(const u8* __restrict__ row, long long j,
                                           long long row_bytes, int unit) {
  constexpr int WB = (int)sizeof(Word);
  const long long b0 = j * WB;
  if (unit == WB) return *reinterpret_cast<const Word*>(row + b0);
  u64 w = 0;
  if (unit == 4) {
#pragma unroll
    for (int k = 0; k < WB / 4; ++k)
      if (b0 + 4 * k < row_bytes) w |= (u64)*reinterpret_cast<const u32*>(row + b0 + 4 * k) << (32 * k);
  } else if (unit == 2) {
#pragma unroll
    for (int k = 0; k < WB / 2; ++k)
      if (b0 + 2 * k < row_bytes) w |= (u64)*reinterpret_cast<const u16*>(row + b0 + 2 * k) << (16 * k);
  } else {
#pragma unroll
    for (int k = 0; k < WB; ++k)
      if (b0 + k < row_bytes) w |= (u64)row[b0 + k] << (8 * k);
  }
  return (Word)w;
}

// OR of x over the warp; every lane of the warp must call it. One instruction from compute
// capability 8.0 on; a butterfly of shuffles before.
__device__ __forceinline__ unsigned warp_or(unsigned x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return __reduce_or_sync(IBP_FULL_MASK, x);
#else
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) x |= __shfl_xor_sync(IBP_FULL_MASK, x, d);
  return x;
#endif
}

// Inclusive warp scan; every lane of the warp must call it.
__device__ __forceinline__ int warp_inclusive_scan(int x, int lane) {
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const int t = __shfl_up_sync(IBP_FULL_MASK, x, d);
    if (lane >= d) x += t;
  }
  return x;
}

// Word offset of row i: block_base[i >> shift] + offset_lo[i] (docs/format.md), 64-bit.
// offset_lo is uint16 or uint32 depending on the container.
template <typename Off>
__device__ __forceinline__ u64 row_offset(const Off* __restrict__ offset_lo,
                                          const u64* __restrict__ block_base, int shift,
                                          long long i) {
  return __ldg(block_base + (i >> shift)) + (u64)__ldg(offset_lo + i);
}
