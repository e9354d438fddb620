// Fused gather + IBP decode (docs/format.md): one warp per requested row, one lane per chunk,
// 32 chunks per round; rows of sparse groups are written with their base bit values and then
// only their other chunks are decoded, one lane per chunk. The payload may live in pinned host
// memory (read zero-copy over the bus through its UVA pointer) or in device memory; the same
// code serves both.
#include "ibp_common.cuh"

#ifndef IBP_DECODE_THREADS
#define IBP_DECODE_THREADS 512
#endif

// With IBP_DECODE_MIN_BLOCKS the compiler fits that many blocks of IBP_DECODE_THREADS on an SM
// at once, capping the registers per thread (spilling if it must): more warps in flight to
// hide the latency of the payload's reads, against more work per warp. Without it, 1,024
// threads an SM (64 registers a thread, 32 warps): left to itself the compiler gives the 64-bit
// kernels 93 registers, which would halve the warps an SM holds (nvcc 13.0, sm_90,
// scripts/kernel_resources.sh).
#ifndef IBP_DECODE_MIN_BLOCKS
#define IBP_DECODE_MIN_BLOCKS (1024 / IBP_DECODE_THREADS)
#endif
#define IBP_DECODE_BOUNDS __launch_bounds__(IBP_DECODE_THREADS, IBP_DECODE_MIN_BLOCKS)

#define IBP_COPY_UNROLL 8

#ifndef IBP_BASE_UNROLL
#define IBP_BASE_UNROLL 4
#endif

// Words [0, n) of `src` handed to put(k, word) by the warp, lane k % 32 taking word k: loads
// are issued IBP_COPY_UNROLL at a time before any is consumed, so a warp keeps several bus
// transactions in flight instead of one round trip per 128 bytes.
template <typename Word, typename Put>
__device__ __forceinline__ void warp_copy(const Word* src, long long n, int lane, Put put) {
  for (long long k0 = 0; k0 < n; k0 += 32 * IBP_COPY_UNROLL) {
    Word r[IBP_COPY_UNROLL];
#pragma unroll
    for (int u = 0; u < IBP_COPY_UNROLL; ++u) {
      const long long k = k0 + u * 32 + lane;
      r[u] = k < n ? src[k] : (Word)0;
    }
#pragma unroll
    for (int u = 0; u < IBP_COPY_UNROLL; ++u) {
      const long long k = k0 + u * 32 + lane;
      if (k < n) put(k, r[u]);
    }
  }
}

// The n stream bits at bit `off` of `stream`, right-aligned; n in [0, W]. Stream bit k is bit
// W-1-(k%W) of word k/W: words fill from the top down. The next word is read only when the
// bits straddle into it (then sh > 0, so its shift is in [1, W-1]), so a read never passes
// the row's last word.
template <typename Word>
__device__ __forceinline__ Word read_bits(const Word* stream, u64 off, int n) {
  constexpr int W = WordOps<Word>::BITS;
  if (n == 0) return (Word)0;
  const u64 wi = off / W;
  const int sh = (int)(off % W);
  Word top = (Word)(stream[wi] << sh);
  if (sh + n > W) top |= (Word)(stream[wi + 1] >> (W - sh));
  return (Word)(top >> (W - n));
}

// Bit `lane` set when chunk j0 + lane is listed in a list header: a round's entries are the
// next ones of the ascending list, at most 32. Advances *done past them and sets *next to the
// position of the entry that follows them (`none` when there is none; skipped when next is
// null), mostly from what the lanes already read.
template <typename Word>
__device__ __forceinline__ unsigned listed_in_round(const Word* stream, long long listed,
                                                    long long* done, long long j0, u64 entries_at,
                                                    int pos_bits, int lane, long long* next,
                                                    long long none) {
  const long long e = *done + lane;
  unsigned bit = 0;
  long long pos = none;
  if (e < listed) {
    pos = (long long)read_bits<Word>(stream, entries_at + (u64)e * pos_bits, pos_bits);
    if (pos >= j0 && pos < j0 + 32) bit = 1u << (int)(pos - j0);
  }
  const unsigned in_round = __ballot_sync(IBP_FULL_MASK, bit != 0);
  const int taken = __popc(in_round);
  *done += taken;
  if (next != nullptr) {  // warp-uniform
    // lane `taken` read the following entry, unless the round took all 32 lanes' entries
    pos = __shfl_sync(IBP_FULL_MASK, pos, taken & 31);
    if (taken == 32)
      pos = *done < listed ? (long long)read_bits<Word>(
                                 stream, entries_at + (u64)*done * pos_bits, pos_bits)
                           : none;
    *next = pos;
  }
  return warp_or(bit);
}

// Bit k set when chunk j0 + k is not stored in its base pattern, from a bitmap header (bit set:
// base pattern); none for chunks >= C.
template <typename Word>
__device__ __forceinline__ unsigned bitmap_nonbase_round(const Word* header, long long j0,
                                                         long long C) {
  const long long left = C - j0;
  const unsigned in_row = left >= 32 ? IBP_FULL_MASK : (1u << (int)left) - 1u;
  return ~header_round<Word>(header, j0, C) & in_row;
}

// All-base rounds among the 32 from round r of a bitmap header: how many in a row from r on
// (round r itself is one, so at least 1), lane k reading round r + k.
template <typename Word>
__device__ __forceinline__ long long bitmap_base_rounds(const Word* header, long long r,
                                                        long long C, int lane) {
  const long long rounds = (C + 31) / 32;
  const long long rk = r + lane;
  const bool base = rk < rounds && bitmap_nonbase_round<Word>(header, rk * 32, C) == 0u;
  const unsigned run = ~__ballot_sync(IBP_FULL_MASK, base);
  return run == 0u ? 32 : __ffs((int)run) - 1;
}

// Decode `count` rounds from round r0 on whose chunks all match their base patterns: every
// chunk's free bits lie at a precomputed offset from the round's start (prefix), and a
// round's start is the previous one's plus its total (round_bits), so nothing waits on an
// earlier round. The rounds' loads are issued IBP_BASE_UNROLL rounds at a time before any of
// their stores. Returns the stream position after them.
template <typename Word>
__device__ __forceinline__ u64 decode_base_rounds(const Word* stream, const Patterns<Word>& pat,
                                                  const u16* __restrict__ prefix,
                                                  const u16* __restrict__ round_bits,
                                                  long long r0, long long count, long long C,
                                                  u64 bitpos, u8* __restrict__ dst,
                                                  long long row_bytes, int unit, int lane) {
  constexpr int W = WordOps<Word>::BITS;
  for (long long t0 = 0; t0 < count; t0 += IBP_BASE_UNROLL) {
    Word v[IBP_BASE_UNROLL];
#pragma unroll
    for (int u = 0; u < IBP_BASE_UNROLL; ++u) {
      v[u] = (Word)0;
      if (t0 + u < count) {  // warp-uniform
        const long long r = r0 + t0 + u;
        const long long j = r * 32 + lane;
        const unsigned free_in_round = __ldg(round_bits + r);
        if (j < C) {
          v[u] = pat.bitval[j];
          // base patterns without free bits (most rounds of a sparse row): their bit values
          // are the chunks, so neither the masks nor the offsets are read
          if (free_in_round != 0u) {
            const Word m = pat.mask[j];
            const int nbits = W - WordOps<Word>::popc(m);
            const Word bits = read_bits<Word>(stream, bitpos + (u64)__ldg(prefix + j), nbits);
            v[u] = deposit_bits<Word>(bits, (Word)~m, v[u]);
          }
        }
        bitpos += (u64)free_in_round;
      }
    }
#pragma unroll
    for (int u = 0; u < IBP_BASE_UNROLL; ++u) {
      const long long j = (r0 + t0 + u) * 32 + lane;
      if (t0 + u < count && j < C) store_chunk<Word>(dst, j, v[u], row_bytes, unit);
    }
  }
  return bitpos;
}

// Where the next fields of a row's stream lie: its free bits fill the stream from the start
// forward, its selectors from the end backward (docs/format.md), so neither position waits on
// the other.
struct StreamCursors {
  u64 free_at;  // the next free bits
  u64 sel_end;  // the next selector ends here
};

// With IBP_DECODE_SCAN_SHORTCUTS (the default) a scan whose nonzero terms are all equal is
// a ballot and a popcount instead of five dependent shuffles, and a round without free bits
// skips their reading: in binary features every chunk's pattern fixes all its bits, so a
// round of them holds selectors of one width and no free bits. 0 scans every round in full
// (for comparison).
#ifndef IBP_DECODE_SCAN_SHORTCUTS
#define IBP_DECODE_SCAN_SHORTCUTS 1
#endif

// Inclusive warp scan of x and the warp's total; every lane of the warp must call it.
__device__ __forceinline__ int warp_scan_with_total(int x, int lane, int* total) {
#if IBP_DECODE_SCAN_SHORTCUTS
  const unsigned nonzero = __ballot_sync(IBP_FULL_MASK, x != 0);
  if (nonzero == 0u) {
    *total = 0;
    return 0;
  }
  const int x0 = __shfl_sync(IBP_FULL_MASK, x, __ffs((int)nonzero) - 1);
  if (__all_sync(IBP_FULL_MASK, x == 0 || x == x0)) {
    *total = x0 * __popc(nonzero);
    return x0 * __popc(nonzero & ((2u << lane) - 1u));   // lanes 0..lane (2u << 31 is 0)
  }
#endif
  const int incl = warp_inclusive_scan(x, lane);
  *total = __shfl_sync(IBP_FULL_MASK, incl, 31);
  return incl;
}

// Decode the next chunks of a row that hold stream fields, one per active lane: active lanes
// hold ascending chunk positions `pos` (inactive lanes may sit between them); `nonbase` lanes
// miss their base pattern and read a selector. Their selectors and free bits are the next ones
// at both ends of the stream, so two warp scans place every field and the lanes decode side by
// side. Advances `at` past them.
template <typename Word>
__device__ __forceinline__ void decode_chunks(const Word* stream, const Patterns<Word>& pat,
                                              bool active, bool nonbase, long long pos,
                                              StreamCursors* at, u8* __restrict__ dst,
                                              long long row_bytes, int unit, int lane) {
  constexpr int W = WordOps<Word>::BITS;
  const int s = active && nonbase ? (int)__ldg(pat.sel + pos) : 0;
  int sel_total;
  const int sel_incl = warp_scan_with_total(s, lane, &sel_total);
  Word m = 0, bv = 0;
  int nbits = 0;
  if (active) {
    if (nonbase) {
      const unsigned v = (unsigned)read_bits<Word>(stream, at->sel_end - (u64)sel_incl, s);
      const unsigned a = __ldg(pat.alt_base + pos) + v;
      m = __ldg(pat.alt_mask + a);
      bv = __ldg(pat.alt_bitval + a);
    } else {
      m = pat.mask[pos];
      bv = pat.bitval[pos];
    }
    nbits = W - WordOps<Word>::popc(m);
  }
  at->sel_end -= (u64)sel_total;
  int free_total;
  const int incl = warp_scan_with_total(nbits, lane, &free_total);
#if IBP_DECODE_SCAN_SHORTCUTS
  if (free_total == 0) {  // every chunk is its pattern's bit values
    if (active) store_chunk<Word>(dst, pos, bv, row_bytes, unit);
    return;
  }
#endif
  if (active) {
    const Word v = read_bits<Word>(stream, at->free_at + (u64)(incl - nbits), nbits);
    store_chunk<Word>(dst, pos, deposit_bits<Word>(v, (Word)~m, bv), row_bytes, unit);
  }
  at->free_at += (u64)free_total;
}

// Zero the n bytes at p by threads t = 0 .. nt-1 (nt >= 16, a warp or a block), 16 bytes per
// thread and store where p allows, single bytes at the ends.
__device__ __forceinline__ void zero_bytes(u8* __restrict__ p, long long n, int t, int nt) {
  long long head = (long long)((16u - (unsigned)((u64)p & 15u)) & 15u);
  if (head > n) head = n;
  if (t < head) p[t] = 0;
  const long long vecs = (n - head) >> 4;
  uint4* v = reinterpret_cast<uint4*>(p + head);
  const uint4 zero = {0u, 0u, 0u, 0u};
  for (long long k = t; k < vecs; k += nt) v[k] = zero;
  const long long tail = head + (vecs << 4);
  if (t < n - tail) p[tail + t] = 0;
}

// Decode a row whose group's base patterns have no free bits (every chunk that matches its
// base pattern is its bit value): the row is written with the bit values, then only the
// chunks that miss their base patterns ("entries") are decoded over them, 32 entries at a time
// for a list header, a round at a time (skipping rounds without entries) for a bitmap. In
// sparse rows that is a few steps of work instead of one per 32 chunks.
// fill: 1 the row is written with the bit values; 2 they are all zero (bag-of-words rows), so
// the row is cleared with wide stores and no loads; 3 they are all zero and the row is clear
// already (rows_clear in decode_encoded_row), so only the entries are written.
template <typename Word>
__device__ __forceinline__ void decode_filled_row(const Word* header, const Word* stream,
                                                  u64 stream_bits, const Patterns<Word>& pat,
                                                  int fill, long long C, int group_bits,
                                                  int list_header, int count_bits, int pos_bits,
                                                  u8* __restrict__ dst, long long row_bytes,
                                                  int unit, int lane) {
  if (fill == 2) {
    zero_bytes(dst, row_bytes, lane, 32);
  } else if (fill == 1) {
    warp_copy<Word>(pat.bitval, C, lane,
                    [&](long long k, Word v) { store_chunk<Word>(dst, k, v, row_bytes, unit); });
  }
  __syncwarp();  // an entry may overwrite a chunk another lane wrote just now
  StreamCursors at = {(u64)group_bits, stream_bits};
  if (list_header) {
    const long long listed = (long long)read_bits<Word>(stream, at.free_at, count_bits);
    const u64 entries_at = at.free_at + (u64)count_bits;
    at.free_at = entries_at + (u64)listed * pos_bits;
    for (long long done = 0; done < listed; done += 32) {  // warp-uniform
      const long long e = done + lane;
      const long long pos =
          e < listed ? (long long)read_bits<Word>(stream, entries_at + (u64)e * pos_bits, pos_bits)
                     : C;
      // (a position past the row, only in a corrupt stream, is never written)
      decode_chunks<Word>(stream, pat, pos < C, true, pos, &at, dst, row_bytes, unit, lane);
    }
  } else {
    const long long rounds = (C + 31) / 32;
    for (long long r0 = 0; r0 < rounds; r0 += 32) {
      // lane k: does round r0 + k hold entries?
      const long long rk = r0 + lane;
      unsigned todo = __ballot_sync(
          IBP_FULL_MASK, rk < rounds && bitmap_nonbase_round<Word>(header, rk * 32, C) != 0u);
      while (todo) {  // warp-uniform
        const long long r = r0 + __ffs((int)todo) - 1;
        todo &= todo - 1u;
        const unsigned nonbase = bitmap_nonbase_round<Word>(header, r * 32, C);
        decode_chunks<Word>(stream, pat, (nonbase >> lane) & 1u, true, r * 32 + lane, &at,
                            dst, row_bytes, unit, lane);
      }
    }
  }
}

// Decode one encoded row of `len` words (bitmap header words or a list, then the bit stream)
// from `src`, which is either the warp's shared-memory copy of the row or the payload itself.
// The stream starts with the row's group id (group_bits bits, none for one group), which
// selects the column patterns, then holds the free bits of the chunks in order; the selectors
// of the non-base chunks fill it from its end backward.
//
// base_prefix / round_bits (optional, null to go without): per row group, each chunk's offset
// among its round's free bits when every chunk of the round matches its base pattern, and the
// round's total. Such rounds, nearly all of them in sparse rows, then need no warp scans and,
// with a list header, no reading of list entries. Up to max_stretch (>= 1) such rounds in a
// row are decoded together (decode_base_rounds).
//
// fill_groups (optional): per row group, 1 fill its rows with the base bit values first, 2
// clear them first (the bit values are all zero), 0 neither (decode_filled_row); rows_clear:
// dst is clear already, so rows of groups of 2 skip the clearing.
template <typename Word>
__device__ __forceinline__ void decode_encoded_row(const Word* src, const Patterns<Word>& all,
                                                   const u8* __restrict__ fill_groups,
                                                   bool rows_clear,
                                                   const u16* __restrict__ base_prefix,
                                                   const u16* __restrict__ round_bits,
                                                   long long max_stretch, long long len,
                                                   long long C, long long H, int num_groups,
                                                   int group_bits, int list_header,
                                                   int count_bits, int pos_bits,
                                                   u8* __restrict__ dst, long long row_bytes,
                                                   int unit, int lane) {
  constexpr int W = WordOps<Word>::BITS;
  const Word* stream = src + H;
  const u64 stream_bits = (u64)(len - H) * W;
  long long group = (long long)read_bits<Word>(stream, 0, group_bits);
  if (group >= num_groups) group = 0;  // validated on load; never index past the tables
  const Patterns<Word> pat = group_patterns<Word>(all, group * C);
  int fill = fill_groups != nullptr ? (int)__ldg(fill_groups + group) : 0;
  if (fill == 2 && rows_clear) fill = 3;
  if (fill) {  // 1: fill with the bit values, 2: clear, 3: clear already
    decode_filled_row<Word>(src, stream, stream_bits, pat, fill, C, group_bits,
                            list_header, count_bits, pos_bits, dst, row_bytes, unit, lane);
    return;
  }
  const bool fixed_rounds = base_prefix != nullptr;
  const u16* prefix = fixed_rounds ? base_prefix + group * C : nullptr;
  const u16* rbits = fixed_rounds ? round_bits + group * ((C + 31) / 32) : nullptr;
  // 64-bit positions: a row of 2^27 64-bit chunks has more bits than an int
  StreamCursors at = {(u64)group_bits, stream_bits};
  long long listed = 0, done = 0;
  const u64 entries_at = (u64)(group_bits + count_bits);
  long long next_listed = C;  // position of list entry `done` (C: none left); warp-uniform
  if (list_header) {
    listed = (long long)read_bits<Word>(stream, at.free_at, count_bits);
    at.free_at += (u64)count_bits + (u64)listed * pos_bits;
    if (listed > 0) next_listed = (long long)read_bits<Word>(stream, entries_at, pos_bits);
  }
  for (long long j0 = 0; j0 < C; j0 += 32) {
    unsigned nonbase_round;  // bit k: chunk j0 + k is not stored in its base pattern
    if (list_header) {
      if (fixed_rounds && next_listed >= j0 + 32) {
        nonbase_round = 0u;
      } else {
        nonbase_round = listed_in_round<Word>(stream, listed, &done, j0, entries_at, pos_bits,
                                              lane, fixed_rounds ? &next_listed : nullptr, C);
      }
    } else {
      // All lanes read the same one or two words: broadcast transactions.
      nonbase_round = bitmap_nonbase_round<Word>(src, j0, C);
    }
    if (fixed_rounds && nonbase_round == 0u) {
      // this round and the all-base rounds right after it (up to max_stretch), together
      const long long r = j0 / 32;
      long long count = 1;
      if (max_stretch > 1) {
        count = list_header ? (next_listed >= C ? (C + 31) / 32 : next_listed / 32) - r
                            : bitmap_base_rounds<Word>(src, r, C, lane);
        if (count > max_stretch) count = max_stretch;
      }
      at.free_at = decode_base_rounds<Word>(stream, pat, prefix, rbits, r, count, C, at.free_at,
                                            dst, row_bytes, unit, lane);
      j0 += (count - 1) * 32;
      continue;
    }
    const long long j = j0 + lane;
    decode_chunks<Word>(stream, pat, j < C, (nonbase_round >> lane) & 1u, j, &at, dst,
                        row_bytes, unit, lane);
  }
}

// Who clears the rows of groups whose bit values are all zero (fill_groups 2), the
// clear_rows argument: each row's warp, just before decoding it; the caller, who clears the
// whole output before the launch in one contiguous pass; or each block, all of its warps'
// rows of a round together, one contiguous stretch of the output (requests in the caller's
// order only: with out_pos the rows lie apart, and their warps clear them).
#define IBP_CLEAR_BY_WARP 0
#define IBP_CLEAR_BY_CALLER 1
#define IBP_CLEAR_BY_BLOCK 2

// Clearing by blocks is compiled only with IBP_DECODE_CLEAR_BY_BLOCK (else such launches clear
// by warp): compiled in, its round loop gives the 64-bit kernels 28 and 68 bytes of spill
// stores and loads a thread against 16 and 16 (nvcc 13.0, sm_90), used or not.
#ifndef IBP_DECODE_CLEAR_BY_BLOCK
#define IBP_DECODE_CLEAR_BY_BLOCK 0
#endif

template <typename Word, typename Index, typename Off>
__device__ __forceinline__ void ibp_gather_decode(
    const Word* __restrict__ payload, const Off* __restrict__ offset_lo,
    const u64* __restrict__ block_base, int offset_shift, const Word* __restrict__ mask_g,
    const Word* __restrict__ bitval_g, const u8* __restrict__ sel,
    const unsigned* __restrict__ alt_base, const Word* __restrict__ alt_mask,
    const Word* __restrict__ alt_bitval, const u8* __restrict__ fill_groups,
    const u16* __restrict__ base_prefix, const u16* __restrict__ round_bits,
    long long max_stretch, int list_header, int num_groups,
    long long num_rows, long long C,
    const Index* __restrict__ index, const long long* __restrict__ out_pos, long long B,
    u8* __restrict__ out, long long row_bytes, int unit, int stage_masks, long long cap_words,
    int clear_rows) {
  constexpr int W = WordOps<Word>::BITS;
  // u64 elements so the dynamic buffer is 8-byte aligned for either word width.
  extern __shared__ u64 ibp_smem_u64[];
  Word* smem = reinterpret_cast<Word*>(ibp_smem_u64);
  const long long H = list_header ? 0 : (C + W - 1) / W;
  // list headers: a count of up to C entries, then positions below C
  const int count_bits = list_count_bits(C);
  const int pos_bits = list_pos_bits(C);
  const int group_bits = bits_below(num_groups);

  // per-column base patterns of every row group: GC entries each
  const long long GC = (long long)num_groups * C;
  const Word* maskp = mask_g;
  const Word* bitvp = bitval_g;
  Word* warp_bufs = smem;
  if (stage_masks) {  // uniform over the grid, so the barrier is safe
    for (long long j = threadIdx.x; j < GC; j += blockDim.x) {
      smem[j] = __ldg(mask_g + j);
      smem[GC + j] = __ldg(bitval_g + j);
    }
    __syncthreads();
    maskp = smem;
    bitvp = smem + GC;
    warp_bufs = smem + 2 * GC;
  }

  const Patterns<Word> pat = {maskp, bitvp, sel, alt_base, alt_mask, alt_bitval};
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const long long warps_per_block = blockDim.x >> 5;
  Word* buf = warp_bufs + warp * cap_words;
  // uniform over the grid, so the block's barriers below are safe
  const bool by_block =
      IBP_DECODE_CLEAR_BY_BLOCK && clear_rows == IBP_CLEAR_BY_BLOCK && out_pos == nullptr;
  const bool rows_clear = clear_rows == IBP_CLEAR_BY_CALLER || by_block;

  // the encoded row of len words at src (the warp's buffer or the payload) decoded into dst
  auto decode_row = [&](const Word* src, long long len, u8* dst) {
    decode_encoded_row<Word>(src, pat, fill_groups, rows_clear, base_prefix, round_bits,
                             max_stretch, len, C, H, num_groups, group_bits, list_header,
                             count_bits, pos_bits, dst, row_bytes, unit, lane);
  };

  // request b decoded into its row of the output
  auto decode_request = [&](long long b) {
    const long long row = (long long)__ldg(index + b);
    u8* dst = out + (out_pos ? (long long)__ldg(out_pos + b) : b) * row_bytes;
    // Python validates indices first; this keeps a bad index from reading out of bounds
    // even when validation was skipped.
    if (row < 0 || row >= num_rows) {
      for (long long k = lane; k < row_bytes; k += 32) dst[k] = 0;
      return;
    }
    const u64 start = row_offset<Off>(offset_lo, block_base, offset_shift, row);
    const u64 end = row_offset<Off>(offset_lo, block_base, offset_shift, row + 1);
    const long long len = (long long)(end - start);
    const Word* src = payload + start;

    if (len == C) {  // stored raw: a straight copy
      warp_copy<Word>(src, C, lane,
                      [&](long long k, Word v) { store_chunk<Word>(dst, k, v, row_bytes, unit); });
      return;
    }

    if (len <= cap_words) {
      // Fetch the whole encoded row with independent coalesced loads (few bus round trips),
      // then decode from shared memory.
      warp_copy<Word>(src, len, lane, [&](long long k, Word v) { buf[k] = v; });
      __syncwarp();
      decode_row(buf, len, dst);
      __syncwarp();  // the next row overwrites buf
    } else {
      // Long rows: decode straight from the payload, one dependent read per round.
      decode_row(src, len, dst);
    }
  };

  // Persistent warps: the shared mask/bitval copy is paid once per block, not once per row.
  // Each round a block serves requests [first, first + warps_per_block), a warp each; the
  // next round's lie gridDim.x * warps_per_block further on. (One loop for both ways of
  // clearing: with the request's decoding written out twice, ptxas spilled far more.)
  for (long long first = blockIdx.x * warps_per_block; first < B;
       first += (long long)gridDim.x * warps_per_block) {
    if (by_block) {
      const long long rows = B - first < warps_per_block ? B - first : warps_per_block;
      zero_bytes(out + first * row_bytes, rows * row_bytes, threadIdx.x, blockDim.x);
      __syncthreads();  // the rows are clear before any warp writes into them
    }
    if (first + warp < B) decode_request(first + warp);
  }
}

#define IBP_DECODE_KERNEL(NAME, WORD, INDEX, OFF)                                              \
  extern "C" __global__ void IBP_DECODE_BOUNDS NAME(                                           \
      const WORD* payload, const OFF* offset_lo, const u64* block_base, int offset_shift,      \
      const WORD* mask, const WORD* bitval, const u8* sel, const unsigned* alt_base,          \
      const WORD* alt_mask, const WORD* alt_bitval, const u8* fill_groups,                   \
      const u16* base_prefix, const u16* round_bits, long long max_stretch, int list_header,   \
      int num_groups, long long num_rows, long long C, const INDEX* index,                     \
      const long long* out_pos,                                                                \
      long long B, u8* out, long long row_bytes, int unit, int stage_masks,                    \
      long long cap_words, int clear_rows) {                                                   \
    ibp_gather_decode<WORD, INDEX, OFF>(payload, offset_lo, block_base, offset_shift, mask,    \
                                        bitval, sel, alt_base, alt_mask, alt_bitval,           \
                                        fill_groups, base_prefix, round_bits, max_stretch,     \
                                        list_header, num_groups, num_rows, C, index, out_pos,  \
                                        B, out, row_bytes, unit, stage_masks, cap_words,       \
                                        clear_rows);                                           \
  }

// ibp_decode_w{chunk bits}_i{index bits}_o{offset_lo bits}
IBP_DECODE_KERNEL(ibp_decode_w16_i32_o16, u16, int, u16)
IBP_DECODE_KERNEL(ibp_decode_w16_i64_o16, u16, long long, u16)
IBP_DECODE_KERNEL(ibp_decode_w16_i32_o32, u16, int, u32)
IBP_DECODE_KERNEL(ibp_decode_w16_i64_o32, u16, long long, u32)
IBP_DECODE_KERNEL(ibp_decode_w32_i32_o16, u32, int, u16)
IBP_DECODE_KERNEL(ibp_decode_w32_i64_o16, u32, long long, u16)
IBP_DECODE_KERNEL(ibp_decode_w64_i32_o16, u64, int, u16)
IBP_DECODE_KERNEL(ibp_decode_w64_i64_o16, u64, long long, u16)
IBP_DECODE_KERNEL(ibp_decode_w32_i32_o32, u32, int, u32)
IBP_DECODE_KERNEL(ibp_decode_w32_i64_o32, u32, long long, u32)
IBP_DECODE_KERNEL(ibp_decode_w64_i32_o32, u64, int, u32)
IBP_DECODE_KERNEL(ibp_decode_w64_i64_o32, u64, long long, u32)
