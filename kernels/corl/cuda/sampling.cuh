// corl/cuda/sampling.cuh — GPU sampler for a batch of rows of logits (fp32 / bf16 / fp16), with classifier-free
// guidance mixed in the kernel, temperature, top-k, top-p, min-p; returns the token and its exact log-probability.
// Same semantics and the same Philox counter as the CPU reference corl/sampling/sampler.hpp (read its header and
// corl/sampling/sampling_math.hpp for the formulas and for why both pick the same token).
//
// Design: one thread block per row. Pass 1 reads the row once (cond and, under CFG, uncond) and computes, per thread
// and then block-reduced, the running max m, the normaliser sum exp(z - m) (online rescaling, as in online softmax),
// the argmax, and the winner of the group race (sampling_math.hpp): thread t folds the quads (runs of four logits)
// t + 512 n with vector loads, and each eight consecutive of them, n = 8i .. 8i + 7, form its race group G = t + 512 i
// of 32 logits; the group with the largest key log S_G - log E_G wins, S_G its mass. Pass 1 races the groups
// with the certified race (corl/sampling/certified_race.hpp): a group's key is approximated from the mass the fold
// already holds (no reload of its logits), groups that cannot beat B, the best key of the WARP so far less a slack
// (the lanes share it with a shuffle after every group), are skipped without one (x_G >= S_G exp(-B), 1e-3 margin),
// and the block keeps its best two groups and the largest other key: the winner is the exact race's when the runner-up
// is more than twice the slack below it, else the exact keys of the two decide (two reloads by one thread, ~1e-3 of
// the rows), else (a third key that close, ~1e-6) one more read runs the exact race (exact_race_pass). The block
// merges its threads' states by one warp all-reduction per field (warp_merge_pass1), per warp and then over the warps.
// The loop loads the next round of quads before it folds the current one (two rounds, 64 bytes per thread, in
// flight), or, with PathLimits::pass1_loads = kStaged (kernels without truncation), copies the round three ahead into
// a ring in shared memory with cp.async (four rounds per thread, 64 KB per block, no registers held). Per logit
// pass 1 is a multiply (none at T = 1), a max, an FFMA (z log2 e less m log2 e, stream_exp_shifted), the online sum's
// exp (ex2.approx) and an add; per round one branchless rescale and the shift's correction (an ex2 and a multiply);
// per group of 32 a compare, and a quarter of a Philox call (RaceWordCache) when the group can win with the smallest
// uniform. Sampling without truncation does not track the argmax (greedy rows and the truncated kernels do).
// Unguided scores are not tested for NaN / +inf one by one: the merged state shows them (row_is_bad). Without
// truncation (the common case: text at T = 1, images under CFG) that single read is all, plus one re-read of the
// winning group's 32 logits by one warp, a lane per logit, to draw the token inside it: logp = z - m - log(sum).
// With truncation the thresholds are exact values of z found by an MSB-first radix selection on the ordered float bits
// (11 + 11 + 10 bits, vector loads; the row is re-read, normally from L2: two reads per criterion when the first
// digit's chosen bin holds at most 8192 entries of a row of at most 2^18, whose keys are then listed in shared memory
// for the last two digits, else three) on counts (top-k) or on probability mass held in 2^-40 fixed point (top-p), so
// the sums are order-independent and the result is deterministic. The race over the kept set rides on the last
// selection's listing read (FusedKeptRace in the kernel): groups whose entries the first digit already decides are
// raced there with their exact kept keys, the few others that can still win are deferred until the threshold is known,
// and the read also sums the mass of the entries kept for sure. So top-p reads the row three times in all (pass 1,
// first digit, listing), and top-k, whose first digit (counts) pass 1 takes, twice. Without a list (min-p alone, a bin
// too wide), the whole-row winning group still wins the kept set when all of it is kept (truncation only removes mass),
// and one more pass races the kept set when it is not. Every read after pass 1 goes through for_each_row_quad (one
// quad per thread and step, the next one's load already issued, no per-entry bound test inside the row), and the
// fused kept race folds its groups' masses at the row's max, which pass 1 found (no running max per thread).
//
// Output per row: tokens[r] (int64) and logps[r] (float). A row with a NaN or +inf logit (or a guided logit that
// overflows) gets token kBadLogit (-1), a row without a finite logit kNoFiniteLogit (-2), and logp 0 in both cases;
// check_sampled_tokens() turns these into corl::Error naming the row once the tokens are on the host.
// CUB's manners: the stream comes last; no scratch memory is needed (shared memory only), so there is no size query.
// Measured (H200, B = 256, bench/gpu/sampling.cu, copy bandwidth 4.24 TB/s; docs/kernels.md section 6 has every
// run), plain rows at V = 102400: per-element race 121 us (2026-11-26); quad race 68 us; group race 69 us (fp32) /
// 72 us (bf16): issue-bound, the exact keys' reloads and the new-max branch diverging in most rounds; certified race
// with pipelined loads (2026-11-27, session 13) 42 / 36 us (lone launches). Session 16 (2026-11-28), device time per
// launch back to back: 34.4 us fp32 (1.39x the one-read floor of 24.7 us), 26.0 us bf16 (2.10x its 12.4 us floor),
// CFG 5 61.4 / 53.0 us (1.24x / 2.15x); top-k 50 0.142 ms, top-p 0.9 0.208 ms (PyTorch's sort-based top-p in the same
// run 2.91 ms). The staged loads measured slower than the register loads in every case (fp32 43.5 against 35.3 us):
// the kernel is bound by instruction issue (bf16: 4150 warp instructions per warp and row, IPC 2.9, DRAM 34%).
// Session 17 (no device; not yet run): groups of 32 logits, no argmax without truncation, one FFMA per exp; its SASS
// counts predict ~2650 instead of ~3550 instructions per bf16 warp and row in pass 1's loop (docs/kernels.md).
// Sources: as corl/sampling/sampler.hpp; radix select: Alabi et al. 2012 ("Fast k-selection algorithms for GPUs").
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <limits>
#include <span>
#include <type_traits>

#include <corl/cuda/check.cuh>
#include "corl/cuda/reduce.cuh"

#include "corl/core/error.hpp"
#include "corl/sampling/sampler.hpp"
#include "corl/sampling/certified_race.hpp"
#include "corl/sampling/sampling_math.hpp"
#include "corl/sampling/streaming_race.hpp"

namespace corl::cuda {

inline constexpr std::int64_t kBadLogit = -1;        ///< token written for a row with a NaN / +inf logit
inline constexpr std::int64_t kNoFiniteLogit = -2;   ///< token written for a row whose logits are all -inf

namespace sampling_detail {

/// One block per row. 512 threads: 4 blocks of 16 KB-in-flight per SM keep HBM busy for B >= 2 * SMs rows.
inline constexpr int kBlock = 512;
inline constexpr int kRadixBins = 2048;  // 11-bit digits: 11 + 11 + 10 = 32
/// Rows of at most this many entries keep their radix histograms in 32-bit words, the fixed-point mass split into
/// three pieces of 14 bits (a bin's piece sum is at most 2^18 * (2^14 - 1) < 2^32): shared-memory atomics on 32-bit
/// words are single instructions (ATOMS.ADD, ATOMS.POPC.INC), while a 64-bit atomicAdd on shared memory compiles to a
/// compare-and-swap loop (ATOMS.CAST.SPIN.64) that spins under contention on the few bins the first digit uses. Wider
/// rows keep 64-bit bins. Both give the same integer sums, hence the same thresholds.
inline constexpr index_t kNarrowHistMaxVocab = index_t{1} << 18;
inline constexpr int kMassPieceBits = 14;
/// Groups the kept race fused into the listing read may defer (their exact keys wait for the threshold): about one per
/// row is typical, since the filter bound is a key some kept group reaches; more falls back to the race pass.
inline constexpr std::uint32_t kDeferredCap = 512;

/// How pass 1's winner is settled: only where its certificate fails (first by the exact keys of the best two groups,
/// then, when a third key is as close, by the exact race), or for tests on every row by either path.
enum class SettlePass1 : std::uint8_t { kAsNeeded, kBestTwo, kExactRace };

struct Args {
  index_t vocab;
  std::uint32_t quads;        // (vocab + 3) / 4 <= 2^31 (the launcher checks vocab / 4 < 2^31)
  std::uint32_t whole_quads;  // vocab / 4: the quads with all four entries inside the row
  index_t row_stride;
  float weight;
  float inv_temperature;
  float top_p;
  float log_min_p;
  index_t top_k;  // 0 = off
  std::uint32_t candidate_cap;  // length of radix_select's candidate list (dynamic shared memory; truncated kernels)
  std::uint32_t deferred_cap;   // groups the fused kept race may defer (<= kDeferredCap; PathLimits)
  std::uint64_t seed;
  std::uint64_t offset;
  bool guided;
  bool greedy;
  bool use_top_p;
  bool use_min_p;
  bool unit_temperature;  // 1 / T is 1 (and PathLimits::unit_temperature): pass 1 scores without the multiply
  SettlePass1 settle;  // how pass 1's winner is settled (PathLimits; kAsNeeded outside tests)
};

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

/// Four consecutive logits as loaded: one 16-byte (fp32) or 8-byte (16-bit) word group, kept packed in registers
/// until the group is folded (2 registers instead of 4 for 16-bit inputs).
template <class In>
struct Raw4 {
  std::uint32_t w[sizeof(In)];  // 4 words for fp32, 2 for 16-bit types
};

/// A quad as one load: a 16-byte word for fp32, an 8-byte one for 16-bit types.
template <class In>
using QuadWord = std::conditional_t<sizeof(In) == 4, uint4, uint2>;

/// A quad's loaded word (16 bytes for fp32, 8 for 16-bit types) as Raw4.
template <class In, class Word>
__device__ __forceinline__ Raw4<In> unpack_word(const Word& v) {
  Raw4<In> r;
  if constexpr (sizeof(In) == 4) {
    static_assert(std::is_same_v<Word, uint4>);
    r.w[0] = v.x;
    r.w[1] = v.y;
    r.w[2] = v.z;
    r.w[3] = v.w;
  } else {
    static_assert(std::is_same_v<Word, uint2>);
    r.w[0] = v.x;
    r.w[1] = v.y;
  }
  return r;
}

/// cp.async (sm_80+): copies one 16-byte (.cg: not kept in L1) or 8-byte word from global to shared memory without
/// holding registers; copy_async_commit closes a group of copies, copy_async_wait<N> waits until at most N of this
/// thread's groups are in flight. A thread waits only for its own copies, so a thread that reads back only what it
/// copied needs no barrier. (Before sm_80 the copies are plain loads and stores.)
template <class Word>
__device__ __forceinline__ void copy_async(std::uint32_t shared, const Word* global) {
  static_assert(sizeof(Word) == 16 || sizeof(Word) == 8, "cp.async copies 16- or 8-byte words here");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (sizeof(Word) == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(shared), "l"(global) : "memory");
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(shared), "l"(global) : "memory");
  }
#else
  const Word w = *global;
  if constexpr (sizeof(Word) == 16) {
    asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(shared), "r"(w.x), "r"(w.y), "r"(w.z), "r"(w.w)
                 : "memory");
  } else {
    asm volatile("st.shared.v2.u32 [%0], {%1, %2};\n" ::"r"(shared), "r"(w.x), "r"(w.y) : "memory");
  }
#endif
}
__device__ __forceinline__ void copy_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void copy_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}
/// A 16- or 8-byte word from shared memory (address as from shared_address).
template <class Word>
__device__ __forceinline__ Word load_shared(std::uint32_t shared) {
  Word w;
  if constexpr (sizeof(Word) == 16) {
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(w.x), "=r"(w.y), "=r"(w.z), "=r"(w.w)
                 : "r"(shared)
                 : "memory");
  } else {
    asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];\n" : "=r"(w.x), "=r"(w.y) : "r"(shared) : "memory");
  }
  return w;
}
__device__ __forceinline__ std::uint32_t shared_address(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

/// Quad q of a row whose base is aligned to four elements, all four entries inside the row: one vector load.
template <class In>
__device__ __forceinline__ Raw4<In> load4_vector(const In* row, std::uint32_t q) {
  return unpack_word<In>(reinterpret_cast<const QuadWord<In>*>(row)[q]);
}

/// Four -inf logits (a quad beyond the row), as bits.
template <class In>
__device__ __forceinline__ Raw4<In> neg_inf4() {
  Raw4<In> r;
  constexpr std::uint32_t kNegInf16 = std::is_same_v<In, __half> ? 0xfc00u : 0xff80u;
#pragma unroll
  for (int k = 0; k < static_cast<int>(sizeof(In)); ++k)
    r.w[k] = sizeof(In) == 4 ? 0xff800000u : (kNegInf16 * 0x10001u);
  return r;
}

/// Loads the four logits starting at i0 = 4q (-inf beyond the row): one vector load when `vector_ok` (row and stride
/// aligned) and the quad is complete, else element by element.
template <class In>
__device__ __forceinline__ Raw4<In> load4_raw(const In* row, index_t i0, index_t vocab, bool vector_ok) {
  if (vector_ok && i0 + 3 < vocab) return load4_vector(row + i0, 0u);
  Raw4<In> r;
  // -inf beyond the row, as bits (no conversion to __half / __nv_bfloat16: builds with __CUDA_NO_HALF_CONVERSIONS__)
  constexpr std::uint32_t kNegInf32 = 0xff800000u;
  constexpr unsigned short kNegInf16 = std::is_same_v<In, __half> ? 0xfc00 : 0xff80;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const bool in_row = i0 + k < vocab;
    if constexpr (sizeof(In) == 4) {
      r.w[k] = in_row ? __float_as_uint(to_float(row[i0 + k])) : kNegInf32;
    } else {
      unsigned short bits = kNegInf16;
      if (in_row) memcpy(&bits, &row[i0 + k], 2);
      if (k % 2 == 0) {
        r.w[k / 2] = bits;
      } else {
        r.w[k / 2] |= static_cast<std::uint32_t>(bits) << 16;
      }
    }
  }
  return r;
}

/// The four logits of a loaded group as floats.
template <class In>
__device__ __forceinline__ void unpack4(const Raw4<In>& r, float out[4]) {
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    if constexpr (sizeof(In) == 4) {
      out[k] = __uint_as_float(r.w[k]);
    } else if constexpr (std::is_same_v<In, __nv_bfloat16>) {
      // a bf16 is the upper half of the float it converts to, exactly: one instruction per entry (a mask or a shift)
      // instead of the shift down and back up that the conversion through __bfloat162float compiles to
      const std::uint32_t w = r.w[k >> 1];
      out[k] = __uint_as_float((k & 1) != 0 ? (w & 0xffff0000u) : (w << 16));
    } else {
      const unsigned short bits = static_cast<unsigned short>(r.w[k >> 1] >> (16 * (k & 1)));
      In h;
      memcpy(&h, &bits, sizeof(h));
      out[k] = to_float(h);
    }
  }
}

/// Guided (kGuided; `u` unused otherwise), tempered score; sets *bad when an input is NaN / +inf or the result
/// overflows. Unguided, "z is NaN or +inf" says it all: c * (1 / T) with 1 / T > 0 is NaN or +inf exactly when c is,
/// or when it overflows; guided, the inputs are checked too (a negative weight can turn c = +inf into z = -inf).
/// 1 / T is positive and nonzero (validate_params caps T at 1e30; it is +inf for T below ~3e-39), so -inf * (1 / T) is
/// -inf without a test: the same value as the CPU reference's "-inf stays -inf".
/// kUnitTemperature: the caller knows that 1 / T is 1 (T = 1, the common case of rollouts), and the multiply, which
/// would give z = mixed bit for bit, is left out.
template <bool kGuided, bool kUnitTemperature = false>
__device__ __forceinline__ float score(float c, float u, const Args& a, bool* bad) {
  float mixed = c;
  if constexpr (kGuided) mixed = corl::sampling::cfg_mix(c, u, a.weight);
  const float z = kUnitTemperature ? mixed : corl::sampling::mul_rn(mixed, a.inv_temperature);
  bool invalid = !(z < INFINITY);  // NaN or +inf
  if constexpr (kGuided) invalid = invalid || isnan(c) || c == INFINITY || isnan(u) || u == INFINITY;
  *bad = invalid;
  return z;
}
__device__ __forceinline__ float score(float c, float u, const Args& a, bool* bad) {
  return a.guided ? score<true>(c, u, a, bad) : score<false>(c, u, a, bad);
}

/// Quad q's logits as loaded (load_quad): the cond words and, guided, the uncond ones.
template <class In, bool kGuided>
struct QuadLogits {
  Raw4<In> cond;
  Raw4<In> uncond;  // loaded only when kGuided
};

/// Loads quad q: one vector load per row when the row is aligned (`vector_ok`) and the quad lies wholly inside it
/// (q < a.whole_quads), else element by element, -inf beyond the row (load4_raw).
template <class In, bool kGuided>
__device__ __forceinline__ QuadLogits<In, kGuided> load_quad(const In* cond, const In* uncond, std::uint32_t q,
                                                             const Args& a, bool vector_ok) {
  QuadLogits<In, kGuided> r;
  if (vector_ok && q < a.whole_quads) {
    r.cond = load4_vector(cond, q);
    if constexpr (kGuided) r.uncond = load4_vector(uncond, q);
  } else {
    r.cond = load4_raw(cond, index_t{q} * 4, a.vocab, vector_ok);
    if constexpr (kGuided) r.uncond = load4_raw(uncond, index_t{q} * 4, a.vocab, vector_ok);
  }
  return r;
}

/// How many of quad q's four entries lie inside the row (q < a.quads): 4 but for the row's last quad.
__device__ __forceinline__ std::uint32_t quad_in_row(std::uint32_t q, const Args& a) {
  return q < a.whole_quads ? 4u : static_cast<std::uint32_t>(a.vocab - index_t{q} * 4);
}

/// The scores of a loaded quad whose first `in_row` entries lie inside the row (-inf for the others).
template <class In, bool kGuided>
__device__ __forceinline__ void score_loaded(const QuadLogits<In, kGuided>& l, std::uint32_t in_row, const Args& a,
                                             float z[4]) {
  float c[4], u[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  unpack4(l.cond, c);
  if constexpr (kGuided) unpack4(l.uncond, u);
#pragma unroll
  for (std::uint32_t k = 0; k < 4; ++k) {
    bool bad = false;
    z[k] = k < in_row ? score<kGuided>(c[k], u[k], a, &bad) : -INFINITY;
  }
}

/// Scores of quad g < a.quads (elements 4g .. 4g + 3; -inf beyond the row), loaded as vectors when `vector_ok`: the
/// guidance tested at run time, for the single quads that the draw, the reloads and greedy rows read.
template <class In>
__device__ __forceinline__ void score4(const In* cond, const In* uncond, index_t g, const Args& a, bool vector_ok,
                                       float z[4]) {
  const auto q = static_cast<std::uint32_t>(g);
  if (a.guided) {
    score_loaded(load_quad<In, true>(cond, uncond, q, a, vector_ok), quad_in_row(q, a), a, z);
  } else {
    score_loaded(load_quad<In, false>(cond, uncond, q, a, vector_ok), quad_in_row(q, a), a, z);
  }
}

/// The truncation passes' read of a row (a selection digit, the listing read, the race and mass passes): calls
/// f(q, z, in_row) for the quads q = threadIdx.x + kBlock n in order, z being their four scores as score4 gives them
/// (-inf beyond the row) and in_row how many of the four lie inside the row (4 but for the row's last quad). Quad
/// indices are 32-bit, a quad wholly inside an aligned row is one vector load with no test per entry, the guidance is
/// known at compile time, and the next quad's load is issued before f runs on the current one, so that each thread has
/// two loads in flight (session 13's profile of top-p: these reads issued one load at a time, with a 64-bit bound test
/// per entry).
template <class In, bool kGuided, class F>
__device__ __forceinline__ void for_each_row_quad(const In* cond, const In* uncond, const Args& a, bool vector_ok,
                                                  F&& f) {
  const std::uint32_t quads = a.quads;
  std::uint32_t q = threadIdx.x;
  if (q >= quads) return;
  QuadLogits<In, kGuided> next = load_quad<In, kGuided>(cond, uncond, q, a, vector_ok);
  for (; q < quads; q += kBlock) {
    const QuadLogits<In, kGuided> cur = next;
    if (q + kBlock < quads) next = load_quad<In, kGuided>(cond, uncond, q + kBlock, a, vector_ok);
    const std::uint32_t in_row = quad_in_row(q, a);
    float z[4];
    score_loaded(cur, in_row, a, z);
    f(q, z, in_row);
  }
}

/// The 32 scores of group `group` (quad j's at 4j .. 4j + 3), reloaded from the row; entries beyond the row and
/// entries below `threshold` (or NaN) are -inf.
template <class In>
__device__ __forceinline__ void group_scores(const In* cond, const In* uncond, index_t group, const Args& a,
                                             bool vector_ok, float threshold,
                                             float (&z)[corl::sampling::kRaceGroupSize]) {
  const index_t quads = (a.vocab + 3) / 4;
#pragma unroll
  for (int j = 0; j < corl::sampling::kRaceGroupQuads; ++j) {
    const auto q = static_cast<index_t>(corl::sampling::group_quad(static_cast<std::uint64_t>(group), j));
    float zq[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    if (q < quads) score4(cond, uncond, q, a, vector_ok, zq);
#pragma unroll
    for (int k = 0; k < 4; ++k) z[4 * j + k] = zq[k] >= threshold ? zq[k] : -INFINITY;
  }
}

/// Exact race key of group `group` from its uniform x (the same float operations as the CPU reference), its scores
/// reloaded from the row (normally from L2: the group was read moments ago). Not inlined: the race calls it for the few
/// groups that can still win, and keeping the reload and expf / logf / log1pf out of the hot loop keeps that loop
/// within 64 registers. Takes the fields of Args it needs by value (a reference would put the kernel's Args in local
/// memory).
template <class In>
__device__ __noinline__ float group_key_reload(const In* cond, const In* uncond, index_t vocab, float weight,
                                               float inv_temperature, bool guided, bool vector_ok, index_t group,
                                               float threshold, float x) {
  Args a{};
  a.vocab = vocab;
  a.weight = weight;
  a.inv_temperature = inv_temperature;
  a.guided = guided;
  float z[corl::sampling::kRaceGroupSize];
  group_scores(cond, uncond, group, a, vector_ok, threshold, z);
  return corl::sampling::group_race_key(z, corl::sampling::race_exponential(x));
}

/// The exact-key source of close_race_group for one row and one threshold (-inf: the whole row). Holds the fields of
/// Args by value (they stay uniform and are re-read from the kernel's parameters).
template <class In>
struct ReloadGroupKey {
  const In* cond;
  const In* uncond;
  index_t vocab;
  float weight;
  float inv_temperature;
  bool guided;
  bool vector_ok;
  float threshold;
  __device__ float operator()(index_t group, float x) const {
    return group_key_reload(cond, uncond, vocab, weight, inv_temperature, guided, vector_ok, group, threshold, x);
  }
};

/// Summary of a race over (part of) a row: the exact race state (corl/sampling/streaming_race.hpp), which the race
/// passes after pass 1 fold, and into which pass 1's result is copied once its winner is settled.
using RowState = corl::sampling::RaceState;

struct MergeRowState {
  __device__ RowState operator()(const RowState& a, const RowState& b) const {
    return corl::sampling::merge_race_states(a, b);
  }
};

/// Exact race key of group `group` over its entries >= threshold, from the group's own race word (race_word); -inf
/// for no group (group < 0). One thread's reload: the bounds and settling steps call it for one or two groups.
template <class In>
__device__ __forceinline__ float group_key_own_word(const In* cond, const In* uncond, const Args& a, bool vector_ok,
                                                   std::uint32_t stream, index_t group, float threshold) {
  if (group < 0) return -INFINITY;
  const float x = corl::sampling::word_to_race_uniform<float>(
      corl::sampling::race_word(a.seed, a.offset, stream, static_cast<std::uint64_t>(group)));
  return group_key_reload(cond, uncond, a.vocab, a.weight, a.inv_temperature, a.guided, vector_ok, group, threshold,
                          x);
}

/// Per-thread (then per-block) summary of pass 1: the certified race (corl/sampling/certified_race.hpp).
using Pass1State = corl::sampling::CertifiedRaceState;

/// Warp all-reduction of 32-bit keys, the largest (kMax) or the smallest: one REDUX instruction on sm_80 and later
/// (__reduce_max_sync / __reduce_min_sync), reduce.cuh's butterfly before. Exact either way: every lane gets the
/// same bits.
template <bool kMax>
__device__ __forceinline__ std::uint32_t warp_extreme_u32(std::uint32_t x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return kMax ? __reduce_max_sync(kFullWarpMask, x) : __reduce_min_sync(kFullWarpMask, x);
#else
  return warp_allreduce(x, [](std::uint32_t p, std::uint32_t q) { return kMax ? max(p, q) : min(p, q); });
#endif
}
/// The warp's largest float, as fmaxf's butterfly gives it (NaN lanes are left out; -0.0 and +0.0, which compare
/// equal, both come back as +0.0): one max over ordered_bits, whose order is the floats' (NaN taken as -inf first).
__device__ __forceinline__ float warp_all_max_float(float x) {
  return corl::sampling::from_ordered_bits(
      warp_extreme_u32<true>(corl::sampling::ordered_bits(isnan(x) ? -INFINITY : x)));
}
/// The warp's largest 64-bit value: the max of the high words, then the max of the low words of the lanes that hold
/// it (two REDUX instead of five 64-bit shuffle-and-compare steps).
__device__ __forceinline__ std::uint64_t warp_all_max_u64(std::uint64_t x) {
  const auto high = static_cast<std::uint32_t>(x >> 32);
  const std::uint32_t top = warp_extreme_u32<true>(high);
  const std::uint32_t low = warp_extreme_u32<true>(high == top ? static_cast<std::uint32_t>(x) : 0u);
  return (std::uint64_t{top} << 32) | low;
}

/// The merge of the pass-1 states of a warp's 32 lanes, on every lane: one all-reduction per field
/// (corl/sampling/certified_race.hpp, race_rank). The maxima and minima are REDUX instructions on 32-bit keys
/// (warp_extreme_u32); the sum is reduce.cuh's butterfly of rounded adds, which gives every lane the same bits (each
/// step adds a pair in both orders, and float addition is commutative). Run 1 of session 16 (H200): the shuffle version
/// of the maxima ran ~210 instructions per call, two calls per warp and row, 9% of a bf16 row's instructions at V =
/// 102400 (the staged kernel's profile); CUB's reduction of the whole state with merge_certified_race_states ran ~500
/// (session 13).
__device__ __forceinline__ Pass1State warp_merge_pass1(const Pass1State& st) {
  namespace cs = corl::sampling;
  const float m = warp_all_max_float(st.max);
  const std::uint32_t argmax = warp_extreme_u32<false>(cs::argmax_candidate(st, m));
  const float sum = warp_allreduce(cs::scaled_sum(st, m), [](float p, float q) { return cs::add_rn(p, q); });
  const std::uint64_t winner = warp_all_max_u64(cs::race_rank(st.best_key, st.best_group));
  const std::uint64_t second = warp_all_max_u64(cs::second_rank(st, winner));
  const float third = warp_all_max_float(cs::third_key(st, winner, second));
  return cs::assemble_certified(m, sum, argmax, winner, second, third);
}

/// Whether pass 1 saw a NaN / +inf score or input. Scores are not tested one by one: a +inf score becomes the row's
/// max, and a NaN one makes the row's sum NaN (exp(NaN - m) is NaN, and NaN survives every later add, rescale and
/// merge), so the finished state says it; a guided entry with a NaN / +inf input is given a NaN score for this (see
/// score_quad). The kernel reports the row, not the index.
__device__ __forceinline__ bool row_is_bad(const RowState& r) { return !(r.max < INFINITY) || isnan(r.sum); }

/// Histogram weights of a radix digit: element count and fixed-point mass.
struct CountMass {
  unsigned long long count;
  unsigned long long mass;
};
struct SumCountMass {
  __device__ CountMass operator()(const CountMass& a, const CountMass& b) const {
    return {a.count + b.count, a.mass + b.mass};
  }
};

/// A radix digit's histogram in shared memory, in the layout `narrow` picks (kNarrowHistMaxVocab): 32-bit counts and
/// the fixed-point mass in three 32-bit pieces of 14 bits, or 64-bit counts and mass. Both give the same integer sums.
template <int kBins>
union RadixHistogram {
  struct {
    unsigned long long count[kBins];
    unsigned long long mass[kBins];
  } wide;
  struct {
    std::uint32_t count[kBins];
    std::uint32_t mass[3][kBins];  // mass = mass[0] + mass[1] 2^14 + mass[2] 2^28
  } narrow;

  __device__ void clear(int bin, bool is_narrow) {
    if (is_narrow) {
      narrow.count[bin] = 0;
#pragma unroll
      for (int piece = 0; piece < 3; ++piece) narrow.mass[piece][bin] = 0;
    } else {
      wide.count[bin] = 0;
      wide.mass[bin] = 0;
    }
  }
  __device__ void add_count(int bin, bool is_narrow) {
    if (is_narrow) {
      atomicAdd(&narrow.count[bin], 1u);
    } else {
      atomicAdd(&wide.count[bin], 1ull);
    }
  }
  // One test for the whole weight, not one per piece: a nonzero weight adds its three pieces unconditionally (adding
  // 0 to a piece changes nothing), which saves a branch and its reconvergence per piece; a zero weight (an entry more
  // than 27.7 nats below the max: most of a peaked row) adds nothing.
  __device__ void add_mass(int bin, unsigned long long w, bool is_narrow) {  // w <= 2^40
    if (w == 0) return;
    if (is_narrow) {
      constexpr unsigned long long kPieceMask = (1ull << kMassPieceBits) - 1;
      atomicAdd(&narrow.mass[0][bin], static_cast<std::uint32_t>(w & kPieceMask));
      atomicAdd(&narrow.mass[1][bin], static_cast<std::uint32_t>((w >> kMassPieceBits) & kPieceMask));
      atomicAdd(&narrow.mass[2][bin], static_cast<std::uint32_t>(w >> (2 * kMassPieceBits)));
    } else {
      atomicAdd(&wide.mass[bin], w);
    }
  }
  __device__ CountMass read(int bin, bool is_narrow) const {
    if (!is_narrow) return {wide.count[bin], wide.mass[bin]};
    return {narrow.count[bin], static_cast<unsigned long long>(narrow.mass[0][bin]) +
                                   (static_cast<unsigned long long>(narrow.mass[1][bin]) << kMassPieceBits) +
                                   (static_cast<unsigned long long>(narrow.mass[2][bin]) << (2 * kMassPieceBits))};
  }
};

template <bool kTruncate>
struct SharedStorage {
  union {
    typename cub::BlockReduce<RowState, kBlock>::TempStorage row_reduce;
    typename cub::BlockReduce<unsigned long long, kBlock>::TempStorage mass_reduce;
    typename cub::BlockScan<CountMass, kBlock>::TempStorage scan;
  } cub;
  RadixHistogram<kTruncate ? kRadixBins : 1> hist;
  RowState row;
  Pass1State pass1_warps[kBlock / 32];  // pass 1's state merged per warp (not in the union: read until the end)
  // radix selection results
  std::uint32_t prefix;
  unsigned long long target;
  CountMass above;
  CountMass equal;
  unsigned long long total;
  std::uint32_t listed;    // number of keys in the candidate list (list_candidates)
  std::uint32_t deferred;  // number of groups the fused kept race deferred (FusedKeptRace)
  float bound_key[2];      // FusedKeptRace: lower bounds of the kept winner's key
  bool rerace;  // the winning group is not wholly kept: race again over the kept set
};

/// One truncation criterion as a radix selection: the elements that take part are those inside the row with ordered
/// key >= restrict_min (and z > -inf when by_mass); the threshold key K is the largest one such that the weight (count,
/// or fixed-point mass) of {key >= K} reaches the target (count_target, or ceil(fraction * total mass) when by_mass).
struct Selection {
  std::uint32_t restrict_min;
  bool by_mass;
  unsigned long long count_target;
  float fraction;

  __device__ bool takes_part(float z, std::uint32_t key) const {
    return !(by_mass && z == -INFINITY) && key >= restrict_min;
  }
};

/// Starts a selection (every thread calls it): clears the results in shared memory.
__device__ __forceinline__ void radix_begin(const Selection& sel, SharedStorage<true>& s) {
  __syncthreads();  // everyone has read the previous selection's results
  if (threadIdx.x == 0) {
    s.prefix = 0;
    s.above = {0, 0};
    s.equal = {0, 0};
    s.target = sel.count_target;
    s.listed = 0;
    s.deferred = 0;
  }
}

/// MSB-first radix selection, one digit (11 + 11 + 10 bits: pass 0, 1, 2) per call, every thread calling: histograms
/// the elements whose key matches the digits chosen so far (read from the row, or from the candidate list when
/// `listed`), scans the bins from the top and extends s.prefix by the bin where the weight reaches the target. After
/// pass 2, s.prefix = K, s.above = weight of {key > K}, s.equal = weight of {key == K}. Pass 0 also counts by_mass
/// (on narrow rows: a 64-bit count is a compare-and-swap loop), so that s.equal.count then sizes the candidate list.
/// `counted`: pass 0's histogram was filled by the kernel's pass 1 (top-k on a narrow row), so pass 0 only scans.
template <class In, bool kGuided>
__device__ void radix_digit(int pass, const In* cond, const In* uncond, const Args& a, bool vector_ok, float m,
                            const Selection& sel, bool listed, const std::uint32_t* candidates, SharedStorage<true>& s,
                            bool counted = false) {
  const int tid = threadIdx.x;
  const int shift = pass == 0 ? 21 : (pass == 1 ? 10 : 0);
  const std::uint32_t mask = pass == 0 ? 0u : (pass == 1 ? 0xffe00000u : 0xfffffc00u);  // digits already chosen
  const bool narrow = a.vocab <= kNarrowHistMaxVocab;
  const bool by_mass = sel.by_mass;
  const bool fill = !(pass == 0 && counted);  // counted: pass 1 filled pass 0's histogram (count mode, narrow rows)
  if (fill) {
    for (int b = tid; b < kRadixBins; b += kBlock) s.hist.clear(b, narrow);
  }
  __syncthreads();
  const std::uint32_t prefix = s.prefix;
  const bool count = !by_mass || (pass == 0 && narrow);
  auto weigh = [&](std::uint32_t key, float z) {
    if ((key & mask) != prefix) return;
    const int bin = static_cast<int>((key >> shift) & (kRadixBins - 1));
    if (count) s.hist.add_count(bin, narrow);
    if (by_mass) s.hist.add_mass(bin, corl::sampling::fixed_point_mass(z, m), narrow);
  };
  if (!fill) {
    // the histogram is ready
  } else if (listed) {
    const std::uint32_t n = s.listed;
    for (std::uint32_t i = tid; i < n; i += kBlock) {
      const std::uint32_t key = candidates[i];
      weigh(key, corl::sampling::from_ordered_bits(key));
    }
  } else {
    for_each_row_quad<In, kGuided>(cond, uncond, a, vector_ok,
                                   [&](std::uint32_t, const float (&zs)[4], std::uint32_t in_row) {
#pragma unroll
                                     for (std::uint32_t k = 0; k < 4; ++k) {
                                       const std::uint32_t key = corl::sampling::ordered_bits(zs[k]);
                                       if (k < in_row && sel.takes_part(zs[k], key)) weigh(key, zs[k]);
                                     }
                                   });
  }
  __syncthreads();
  // Scan bins from the top (largest keys) down: thread t owns bins 2047 - 4t ... 2044 - 4t.
  constexpr int kPer = kRadixBins / kBlock;
  CountMass local[kPer];
  CountMass thread_total{0, 0};
#pragma unroll
  for (int q = 0; q < kPer; ++q) {
    local[q] = s.hist.read(kRadixBins - 1 - (tid * kPer + q), narrow);
    thread_total.count += local[q].count;
    thread_total.mass += local[q].mass;
  }
  CountMass before{0, 0}, all{0, 0};
  cub::BlockScan<CountMass, kBlock>(s.cub.scan).ExclusiveScan(thread_total, before, CountMass{0, 0}, SumCountMass{},
                                                               all);
  if (pass == 0 && by_mass && tid == 0) {
    s.total = all.mass;
    const double t = std::ceil(static_cast<double>(sel.fraction) * static_cast<double>(all.mass));
    // At most the total: with a fraction that rounds to 1.0f and a total above 2^53, the double can round up past it,
    // and no bin would reach the target.
    const unsigned long long want = t < 1.0 ? 1ull : static_cast<unsigned long long>(t);
    s.target = want < all.mass ? want : all.mass;
  }
  __syncthreads();
  const unsigned long long target = s.target;
  __syncthreads();  // every thread has read the target before the selecting thread updates it
  CountMass cum = before;
#pragma unroll
  for (int q = 0; q < kPer; ++q) {
    const unsigned long long w_before = by_mass ? cum.mass : cum.count;
    const unsigned long long w_bin = by_mass ? local[q].mass : local[q].count;
    if (w_before < target && w_before + w_bin >= target) {
      const int bin = kRadixBins - 1 - (tid * kPer + q);
      s.prefix = prefix | (static_cast<std::uint32_t>(bin) << shift);
      s.target = target - w_before;
      s.above.count += cum.count;
      s.above.mass += cum.mass;
      s.equal = local[q];
    }
    cum.count += local[q].count;
    cum.mass += local[q].mass;
  }
  __syncthreads();
}

/// Whether the first digit's chosen bin fits the candidate list (read after radix_digit(0): the same on every thread).
__device__ __forceinline__ bool candidates_fit(const Args& a, const SharedStorage<true>& s) {
  return a.vocab <= kNarrowHistMaxVocab && s.equal.count <= a.candidate_cap;
}

/// After radix_digit(0), when candidates_fit: one read of the row copies the keys of the chosen first-digit bin (the
/// elements that take part; at most s.equal.count of them) into `candidates`, and calls on_quad(q, z) for every quad
/// with its four scores (-inf beyond the row): the hook of the kept race that rides on this read (FusedKeptRace).
template <class In, bool kGuided, class OnQuad>
__device__ void list_candidates(const In* cond, const In* uncond, const Args& a, bool vector_ok, const Selection& sel,
                                std::uint32_t* candidates, SharedStorage<true>& s, OnQuad&& on_quad) {
  const std::uint32_t bin_prefix = s.prefix;
  for_each_row_quad<In, kGuided>(
      cond, uncond, a, vector_ok, [&](std::uint32_t q, const float (&zs)[4], std::uint32_t in_row) {
#pragma unroll
        for (std::uint32_t k = 0; k < 4; ++k) {
          const std::uint32_t key = corl::sampling::ordered_bits(zs[k]);
          if (k < in_row && sel.takes_part(zs[k], key) && (key & 0xffe00000u) == bin_prefix) {
            candidates[atomicAdd(&s.listed, 1u)] = key;
          }
        }
        on_quad(index_t{q}, zs);
      });
  __syncthreads();
}

/// A whole selection without a rider on the listing read. The first digit reads the row (or takes the counts pass 1
/// made, `counted`) and counts the elements of each bin. When the chosen bin holds at most a.candidate_cap elements
/// (and the row is narrow, kNarrowHistMaxVocab), one more read of the row copies their keys into `candidates` (dynamic
/// shared memory) and the last two digits histogram that list instead of the row: two reads of the row instead of
/// three. The weights are recomputed from the keys (from_ordered_bits gives z back bit for bit, but for -0.0, which
/// comes back +0.0 with the same weight), and the integer sums do not depend on the order in which the atomics filled
/// the list, so the threshold is the same as with three reads. A wider bin (a flat row) takes three.
template <class In, bool kGuided>
__device__ void radix_select(const In* cond, const In* uncond, const Args& a, bool vector_ok, float m,
                             const Selection& sel, SharedStorage<true>& s, std::uint32_t* candidates,
                             bool counted = false) {
  radix_begin(sel, s);
  radix_digit<In, kGuided>(0, cond, uncond, a, vector_ok, m, sel, false, candidates, s, counted);
  const bool listed = candidates_fit(a, s);
  if (listed) {
    list_candidates<In, kGuided>(cond, uncond, a, vector_ok, sel, candidates, s, [](index_t, const float (&)[4]) {});
  }
  radix_digit<In, kGuided>(1, cond, uncond, a, vector_ok, m, sel, listed, candidates, s);
  radix_digit<In, kGuided>(2, cond, uncond, a, vector_ok, m, sel, listed, candidates, s);
}

/// The race words of one thread: thread t folds the groups G = t mod 512, and four consecutive ones share one Philox
/// call (sampling_math.hpp), so the call is made once, when the first of the four asks for its word, and kept.
struct RaceWordCache {
  std::uint32_t call = 0xffffffffu;  // no call yet (a real call index is < 2^29)
  Philox4x32 words;

  /// Group G's race word (corl::sampling::race_word), from the kept call or a new one. G < 2^31 (the launcher's rows
  /// have fewer than 2^31 quads): the call and word index in 32 bits.
  __device__ __forceinline__ std::uint32_t word(const Args& a, std::uint32_t stream, index_t group) {
    const auto g = static_cast<std::uint32_t>(group);
    const std::uint32_t c = corl::sampling::race_call(g);
    if (c != call) {
      words = random_words(a.seed, a.offset, stream, c);
      call = c;
    }
    return corl::sampling::philox_word(words, corl::sampling::race_word_lane(g));
  }
};

/// Scores of the four loaded logits of quad q (indices 4q .. 4q + 3). Unguided: one multiply per element (see
/// row_is_bad for NaN / +inf). Guided: the inputs are checked, since a negative weight can turn a +inf logit into a
/// -inf score, and an entry with a bad input gets the score NaN, which row_is_bad then sees. Beyond the row load4_raw
/// gives -inf, whose score is -inf; the row's last quad is masked explicitly when guided all the same.
/// kUnitTemperature: 1 / T is 1, so the multiply is left out (score).
template <bool kGuided, bool kUnitTemperature = false>
__device__ __forceinline__ void score_quad(const float (&c)[4], const float (&u)[4], index_t q, const Args& a,
                                           float (&z)[4]) {
  if constexpr (!kGuided) {
#pragma unroll
    for (int k = 0; k < 4; ++k) z[k] = kUnitTemperature ? c[k] : corl::sampling::mul_rn(c[k], a.inv_temperature);
  } else {
    const index_t i0 = q * 4;
    const bool tail = i0 + 3 >= a.vocab;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      bool bad = false;
      z[k] = score<kGuided, kUnitTemperature>(c[k], u[k], a, &bad);
      z[k] = bad ? NAN : z[k];
      if (tail && i0 + k >= a.vocab) z[k] = -INFINITY;
    }
  }
}

/// The scores of a round of pass 1: U loaded quads (the cond words and, guided, the uncond ones), quad j being
/// q0 + j * kBlock, as score_quad gives them.
template <class In, bool kGuided, bool kUnitTemperature, int U>
__device__ __forceinline__ void score_round(const Raw4<In> (&rc)[U], const Raw4<In> (&ru)[kGuided ? U : 1],
                                            std::uint32_t q0, const Args& a, float (&z)[U][4]) {
#pragma unroll
  for (int j = 0; j < U; ++j) {
    float c[4], u[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    unpack4(rc[j], c);
    if constexpr (kGuided) unpack4(ru[j], u);
    score_quad<kGuided, kUnitTemperature>(c, u, index_t{q0 + static_cast<std::uint32_t>(j) * kBlock}, a, z[j]);
  }
}

/// The token drawn inside group `group` (its kept entries: z >= threshold) and its score, by the 32 lanes of one warp
/// (all must call): lane e scores entry e of the 32 and draws its key z - log(E') from word e % 4 of
/// pick_words(quad e / 4), then the warp takes the largest key, ties to the smaller entry. That is pick_in_group's
/// result (its loop runs the entries in order and keeps the first largest key), without its 32 serial logs and eight
/// Philox calls on one thread while the block waits. Lane 0 gets the token and its score.
template <class In>
__device__ __forceinline__ void pick_token_warp(const In* cond, const In* uncond, index_t group, float threshold,
                                                const Args& a, std::uint32_t stream, index_t* token, float* token_z) {
  static_assert(corl::sampling::kRaceGroupSize <= 32, "one lane of the warp per entry of the group");
  constexpr int kNone = corl::sampling::kRaceGroupSize;  // "no kept entry" (loses to every kept one)
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int e = lane % corl::sampling::kRaceGroupSize;
  const std::uint64_t q = corl::sampling::group_quad(static_cast<std::uint64_t>(group), e / 4);
  const auto i = static_cast<index_t>(corl::sampling::group_entry_token(static_cast<std::uint64_t>(group), e));
  float z = -INFINITY;
  if (lane < corl::sampling::kRaceGroupSize && group >= 0 && i < a.vocab) {
    const float c = to_float(cond[i]);
    const float u = a.guided ? to_float(uncond[i]) : 0.0f;
    bool bad = false;
    z = score(c, u, a, &bad);  // the value score4 gives this entry
  }
  const bool kept = z >= threshold && z != -INFINITY;  // NaN is not kept
  float key = -INFINITY;
  int best = kNone;
  if (kept) {
    const Philox4x32 words = corl::sampling::pick_words(a.seed, a.offset, stream, q);
    key = corl::sampling::token_race_key(z, corl::sampling::race_exponential(
                                                corl::sampling::word_to_race_uniform<float>(
                                                    corl::sampling::philox_word(words, e % 4))));
    best = e;
  }
  float best_z = z;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const float other_key = __shfl_xor_sync(0xffffffffu, key, off);
    const int other = __shfl_xor_sync(0xffffffffu, best, off);
    const float other_z = __shfl_xor_sync(0xffffffffu, best_z, off);
    const bool take = other != kNone && (best == kNone || other_key > key || (other_key == key && other < best));
    key = take ? other_key : key;
    best = take ? other : best;
    best_z = take ? other_z : best_z;
  }
  *token = static_cast<index_t>(corl::sampling::group_entry_token(static_cast<std::uint64_t>(group), best));
  *token_z = best_z;
}

/// Warp 0 (threads 0..31 call it): draws the token inside the winning group (pick_token_warp) and writes it with its
/// log-probability z - kept_max - log(kept_mass), kept_mass = sum over the kept set of exp(z - kept_max).
template <class In>
__device__ __forceinline__ void write_draw(const In* cond, const In* uncond, index_t group, float threshold,
                                           const Args& a, std::uint32_t stream, float kept_max, float kept_mass,
                                           std::int64_t* token_out, float* logp_out) {
  index_t token = 0;
  float token_z = 0.0f;
  pick_token_warp(cond, uncond, group, threshold, a, stream, &token, &token_z);
  if (threadIdx.x == 0) {
    *token_out = token;
    *logp_out = (token_z - kept_max) - logf(kept_mass);
  }
}

/// The best approximate race key of the warp in pass 1 (-inf when no lane has a winner yet): the key of some group of
/// the row, which certified_bound turns into a bound.
__device__ __forceinline__ float lane_best_key(const Pass1State& st) {
  return st.best_group < 0 ? -INFINITY : st.best_key;
}
__device__ __forceinline__ float warp_best_key(const Pass1State& st) { return warp_all_max_float(lane_best_key(st)); }

/// The exact race (corl/sampling/streaming_race.hpp) over the kept part {z >= threshold} of the row (-inf: all of it),
/// in one more read: thread t folds the quads t + 512 n as in pass 1, and only groups that can beat `bound_key` (a key
/// some kept group certainly reaches) ask for their words and exact keys (group_key_reload). Every thread calls it and
/// gets the merged state (also left in s.row): the winning group, and the max and sum exp(z - max) of the kept set.
/// Serves the race over the kept set of truncation and pass 1's uncertified rows.
template <class In, bool kGuided, bool kTruncate>
__device__ RowState exact_race_pass(const In* cond, const In* uncond, const Args& a, bool vector_ok, float threshold,
                                    float bound_key, std::uint32_t stream, SharedStorage<kTruncate>& s) {
  RowState st = corl::sampling::empty_race_state();
  float c_bound = INFINITY;
  RaceWordCache cache;
  const ReloadGroupKey<In> exact_key{
      cond, uncond, a.vocab, a.weight, a.inv_temperature, a.guided, vector_ok, threshold};
  for_each_row_quad<In, kGuided>(cond, uncond, a, vector_ok, [&](std::uint32_t q, const float (&zs)[4], std::uint32_t) {
    float z[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) z[k] = zs[k] >= threshold ? zs[k] : -INFINITY;
    corl::sampling::fold_race_quad(st, c_bound, z, index_t{q}, bound_key);
    if (corl::sampling::closes_group(std::uint64_t{q}, std::uint64_t{a.quads})) {
      auto word_of = [&](index_t group) { return cache.word(a, stream, group); };
      const auto group = static_cast<index_t>(corl::sampling::race_group(std::uint64_t{q}));
      corl::sampling::close_race_group(st, c_bound, group, word_of, exact_key, bound_key);
    }
  });
  __syncthreads();  // every thread has read what the caller passed from shared memory (s.row, s.pass1_warps)
  const RowState total = cub::BlockReduce<RowState, kBlock>(s.cub.row_reduce).Reduce(st, MergeRowState{});
  if (threadIdx.x == 0) s.row = total;
  __syncthreads();
  return s.row;
}

/// Quads per round of pass 1 (one batch of loads, folded together): 32 bytes per thread for every input type, guided
/// or not (2 x 16 B fp32, 4 x 8 B 16-bit; half as many quads under CFG, which reads two rows), held packed (8
/// registers); with the next round's loads issued before a round is folded, 64 bytes (16 registers) are in flight. It
/// divides the eight quads of a race group, so a round closes a group only at its end.
template <class In, bool kGuided>
inline constexpr int kUnroll = (sizeof(In) == 4 ? 2 : 4) / (kGuided ? 2 : 1);

/// Pass 1's staging ring (Pass1Loads::kStaged): kStages rounds of every thread's quads in dynamic shared memory, the
/// round kStages - 1 ahead copied with cp.async while the current one is folded. A quad is one 16-byte (fp32) or
/// 8-byte (16-bit) word; slot (stage, which (cond / uncond), j) of thread t is word ((stage * P + which) * U + j) *
/// kBlock + t, so a warp's cp.async writes and its shared loads touch consecutive words (no bank conflicts). 16 KB per
/// stage for every input type and guidance (U words of 16 or 8 bytes, 1 or 2 rows): 64 KB per block, two blocks per
/// SM on sm_80 / sm_90 (the launcher checks the device).
inline constexpr std::uint32_t kStages = 4;

template <class In, bool kGuided>
constexpr std::size_t staging_bytes() {
  return std::size_t{kStages} * (kGuided ? 2 : 1) * kUnroll<In, kGuided> * kBlock * sizeof(QuadWord<In>);
}

static_assert(kBlock == static_cast<int>(corl::sampling::kRaceQuadInterleave),
              "corl::cuda::sample_rows: thread t folds the quads t + 512 n, which is what makes its four consecutive "
              "quads one race group; the block size must equal the race's quad interleave");

/// kTruncate = false: plain / CFG / greedy rows, pass 1 only. kTruncate = true: top-k / top-p / min-p, pass 1 then the
/// selection passes. Both at 64 registers, 2 blocks of 512 threads per SM: the truncated kernel then spills, mostly in
/// the once-per-digit scan of radix_select. Element loops (cuobjdump, sm_90, 2578120): pass 1 uses no local memory in
/// any kernel (the bf16 ones store the row pointer, two STL per round); nor do the radix histograms, the plain listing
/// read, the list loops and the mass pass; the exact race pass (rare in pass 1; the kept race of truncation when not
/// fused) and the fused kept race reload ~18-22 spilled values per quad, mostly where a group closes (session 15: the
/// fused loop's common path has two reloads per quad). Static loop bodies of the fp32 truncated kernel (session 15,
/// for_each_row_quad): count digit 165, mass digit ~315, listing read with the fused race 543, exact race pass 315,
/// mass pass 110 SASS instructions per quad (2578120: 256, 464, 653, 401, 209).
/// kGuided: whether an unconditional row is read (a.guided says the same; the template keeps registers down).
/// kStaged (kernels without truncation): pass 1's loads go through the staging ring in dynamic shared memory
/// (Pass1Loads::kStaged), kStages - 1 rounds ahead, instead of registers one round ahead.
template <class In, bool kTruncate, bool kGuided, bool kStaged>
__global__ void __launch_bounds__(kBlock, 2)
    sample_rows_kernel(const In* __restrict__ cond_all, const In* __restrict__ uncond_all, Args a,
                       std::int64_t* __restrict__ tokens, float* __restrict__ logps) {
  static_assert(!(kTruncate && kStaged), "the truncated kernels keep their dynamic shared memory for their lists");
  __shared__ SharedStorage<kTruncate> s;
  // truncated kernels: a.candidate_cap keys (radix_select), then the deferred groups; staged kernels: the staging ring
  extern __shared__ __align__(16) std::uint32_t dynamic_shared[];
  std::uint32_t* const candidate_list = dynamic_shared;
  const index_t row = blockIdx.x;
  const std::uint32_t stream = static_cast<std::uint32_t>(row);
  const In* cond = cond_all + row * a.row_stride;
  const In* uncond = a.guided ? uncond_all + row * a.row_stride : nullptr;
  const bool vector_ok = (reinterpret_cast<std::uintptr_t>(cond) % (4 * sizeof(In)) == 0) &&
                         (!a.guided || reinterpret_cast<std::uintptr_t>(uncond) % (4 * sizeof(In)) == 0);

  // Top-k counts its first radix digit (count mode: every entry of the row) in pass 1, on rows narrow enough for 32-bit
  // bins: one read of the row less.
  const bool count_in_pass1 =
      kTruncate && !a.greedy && a.top_k > 0 && a.top_k < a.vocab && a.vocab <= kNarrowHistMaxVocab;
  if constexpr (kTruncate) {
    if (count_in_pass1) {
      for (int b = threadIdx.x; b < kRadixBins; b += kBlock) s.hist.clear(b, true);
      __syncthreads();
    }
  }

  // ---- pass 1: one read of the row, kUnroll quads loaded, then folded as one round ----
  // Thread t folds the quads t + 512 n, n = 0, 1, ...: quads n = 4i .. 4i + 3 are its race group t + 512 i, raced
  // (certified race: approximate keys, no reload) at the end of the round that holds its last quad. The loop runs the
  // same number of rounds on every lane of a warp (from the warp's first quad), and n is the same on every lane, so the
  // lanes share their best key after each round that closes a group: the filter of every lane then uses the warp's.
  Pass1State st = corl::sampling::empty_certified_race_state();
  RaceWordCache cache;
  float known_key = -INFINITY;  // the best approximate key of the warp after the previous group
  const index_t quads = (a.vocab + 3) / 4;
  // Pass 1 counts quads in 32 bits: q < quads <= 2^31, so q + 2048 cannot wrap. a.quads and a.whole_quads are read from
  // the kernel's parameters where they are compared (held in registers across the loop, they were spilled).
  constexpr int U = kUnroll<In, kGuided>;
  static_assert(corl::sampling::kRaceGroupQuads % U == 0, "a round of loads must not straddle two race groups");
  const std::uint32_t lane = threadIdx.x % 32;
  int n0 = 0;  // the round's first n (quad t + 512 n), modulo kRaceGroupQuads
  // The warp's round starting at quad `base` (its lanes' quads base + lane + 512 j, j < U), loaded as one batch.
  auto load_round = [&](std::uint32_t base, Raw4<In>(&rc)[U], Raw4<In>(&ru)[kGuided ? U : 1]) {
    const std::uint32_t q0 = base + lane;
    if (vector_ok && base + kBlock * U <= a.whole_quads) {  // the warp's round lies inside the row: plain vector loads
      // one 64-bit address per row and round, the quads at constant offsets from it (LDG's immediate), instead of a
      // wide multiply-add per quad
      const In* const c_round = cond + index_t{q0} * 4;
      const In* const u_round = kGuided ? uncond + index_t{q0} * 4 : nullptr;
#pragma unroll
      for (int j = 0; j < U; ++j) {
        rc[j] = load4_vector(c_round, static_cast<std::uint32_t>(j) * kBlock);
        if constexpr (kGuided) ru[j] = load4_vector(u_round, static_cast<std::uint32_t>(j) * kBlock);
      }
    } else {
#pragma unroll
      for (int j = 0; j < U; ++j) {
        const std::uint32_t q = q0 + j * kBlock;
        if (q < a.quads) {
          rc[j] = load4_raw(cond, index_t{q} * 4, a.vocab, vector_ok);
          if constexpr (kGuided) ru[j] = load4_raw(uncond, index_t{q} * 4, a.vocab, vector_ok);
        } else {  // a quad beyond the row: four -inf, whose scores are -inf (guided: masked by score_quad)
          rc[j] = neg_inf4<In>();
          if constexpr (kGuided) ru[j] = neg_inf4<In>();
        }
      }
    }
  };
  // Folds the round starting at the warp's quad `base` from its loaded quads, closes the lanes' groups that end in it
  // and shares the warp's best key.
  auto fold_round = [&](std::uint32_t base, const Raw4<In>(&rc)[U], const Raw4<In>(&ru)[kGuided ? U : 1]) {
    const std::uint32_t q0 = base + lane;
    float z[U][4];
    if constexpr (kTruncate) {
      score_round<In, kGuided, false>(rc, ru, q0, a, z);
      if (count_in_pass1) {  // top-k's first radix digit (radix_digit, counted)
#pragma unroll
        for (int j = 0; j < U; ++j) {
          const std::uint32_t q = q0 + j * kBlock;
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            if (q < a.whole_quads || index_t{q} * 4 + k < a.vocab) {
              s.hist.add_count(static_cast<int>(corl::sampling::ordered_bits(z[j][k]) >> 21), true);
            }
          }
        }
      }
      corl::sampling::fold_certified_round<U>(st, z, q0, static_cast<std::uint32_t>(kBlock));
    } else if (a.greedy) {  // the argmax (1 / T is 1 for greedy rows: no multiply)
      score_round<In, kGuided, true>(rc, ru, q0, a, z);
      corl::sampling::fold_certified_round<U, true>(st, z, q0, static_cast<std::uint32_t>(kBlock));
    } else if (a.unit_temperature) {  // 1 / T = 1 (T = 1, the common case of rollouts): scores without the multiply;
      // the same fold in both branches: each a straight run, no select per score. Sampling without truncation never
      // reads the argmax: the fold leaves it out.
      score_round<In, kGuided, true>(rc, ru, q0, a, z);
      corl::sampling::fold_certified_round<U, false>(st, z, q0, static_cast<std::uint32_t>(kBlock));
    } else {
      score_round<In, kGuided, false>(rc, ru, q0, a, z);
      corl::sampling::fold_certified_round<U, false>(st, z, q0, static_cast<std::uint32_t>(kBlock));
    }
    // the round holds the group's last quad (closes_group, with the slot taken from the round counter, which is the
    // same on every lane): slot kRaceGroupQuads - 1, or the row ends before the lane's next quad
    // The warp's best key changes only when some lane's best does (a group entered as its best), which most rounds
    // after the first few do not see: one vote then skips the reduction (the same known_key either way).
    bool improved = false;
    constexpr int kGroupQuads = corl::sampling::kRaceGroupQuads;
    if (!a.greedy && q0 < a.quads && (n0 + U == kGroupQuads || q0 + kBlock * U >= a.quads)) {
      auto word_of = [&](index_t group) { return cache.word(a, stream, group); };
      const auto group = static_cast<index_t>(corl::sampling::race_group(q0));
      const float before = lane_best_key(st);
      corl::sampling::close_certified_group(st, group, word_of, known_key);
      improved = lane_best_key(st) != before;
    }
    if (!a.greedy && n0 + U == kGroupQuads && __any_sync(0xffffffffu, improved)) known_key = warp_best_key(st);
    n0 = (n0 + U) & (kGroupQuads - 1);
  };
  // Software pipelining. Registers (kStaged = false): the next round's loads are issued before this round is folded,
  // so that two rounds of loads (64 bytes per thread, 64 KB per SM) are in flight while a round is folded (the profile
  // of the unpipelined loop: half of its stall samples were waits for its loads; of the pipelined one, a third, at the
  // copies of the next round's registers). Staged (kStaged, rows loaded as vectors): each thread copies its own quads
  // of the round kStages - 1 ahead into its slots of a ring in dynamic shared memory (cp.async: no registers held), and
  // waits for its own oldest copies only (cp.async.wait_group), so no barrier is needed; a round whose quads (the
  // warp's) do not all lie inside the row (the last one, if any) loads directly, in a loop of its own.
  constexpr std::uint32_t kRound = kBlock * U;  // quads per round of the block
  std::uint32_t base = threadIdx.x - lane;
  if constexpr (kStaged) {
    if (vector_ok) {
      using Word = QuadWord<In>;
      constexpr std::uint32_t kWordBytes = sizeof(Word);
      constexpr auto kRingBytes = static_cast<std::uint32_t>(staging_bytes<In, kGuided>());
      constexpr std::uint32_t kStageBytes = kRingBytes / kStages;  // 16 KB
      static_assert((kRingBytes & (kRingBytes - 1)) == 0, "the ring's stage offsets wrap with a mask");
      // this thread's first slot, as a shared-memory address; its word j of a stage (cond, then uncond) lies j * kBlock
      // words further
      const std::uint32_t ring = shared_address(dynamic_shared) + threadIdx.x * kWordBytes;
      const Word* const cond_words = reinterpret_cast<const Word*>(cond) + lane;
      const Word* const uncond_words = kGuided ? reinterpret_cast<const Word*>(uncond) + lane : nullptr;
      // copies this thread's quads of the round at `round_base` (the warp's first quad of it) to the stage at
      // `stage_offset` bytes
      auto stage_round = [&](std::uint32_t round_base, std::uint32_t stage_offset) {
        const Word* const c = cond_words + round_base;
#pragma unroll
        for (int j = 0; j < U; ++j) {
          copy_async(ring + stage_offset + static_cast<std::uint32_t>(j) * kBlock * kWordBytes, c + j * kBlock);
          if constexpr (kGuided) {
            copy_async(ring + stage_offset + (U + static_cast<std::uint32_t>(j)) * kBlock * kWordBytes,
                       uncond_words + round_base + j * kBlock);
          }
        }
      };
      // whether the warp's quads of the round at `round_base` (round_base + lane + kBlock j) all lie inside the row,
      // with all four entries: whole rounds are a prefix of the warp's rounds (< 2^31 + 8192 here: no wrap)
      auto whole = [&](std::uint32_t round_base) { return round_base + (U - 1) * kBlock + 32 <= a.whole_quads; };
#pragma unroll
      for (std::uint32_t k = 0; k + 1 < kStages; ++k) {
        if (whole(base + k * kRound)) stage_round(base + k * kRound, k * kStageBytes);
        copy_async_commit();  // one group per round, empty or not: the wait counts groups
      }
      std::uint32_t stage_offset = 0;  // this round's stage
      for (; whole(base); base += kRound) {
        const std::uint32_t ahead = base + (kStages - 1) * kRound;
        if (whole(ahead)) stage_round(ahead, (stage_offset + (kStages - 1) * kStageBytes) & (kRingBytes - 1));
        copy_async_commit();
        copy_async_wait<kStages - 1>();  // this round's group (the kStages - 1 younger ones may still fly)
        Raw4<In> rc[U], ru[kGuided ? U : 1];
#pragma unroll
        for (int j = 0; j < U; ++j) {
          const std::uint32_t at = ring + stage_offset + static_cast<std::uint32_t>(j) * kBlock * kWordBytes;
          rc[j] = unpack_word<In>(load_shared<Word>(at));
          if constexpr (kGuided) ru[j] = unpack_word<In>(load_shared<Word>(at + U * kBlock * kWordBytes));
        }
        fold_round(base, rc, ru);
        stage_offset = (stage_offset + kStageBytes) & (kRingBytes - 1);
      }
      copy_async_wait<0>();  // (every copy issued was consumed: nothing is in flight)
    }
    for (; base < a.quads; base += kRound) {  // the row's last round, or every round of an unaligned row
      Raw4<In> rc[U], ru[kGuided ? U : 1];
      load_round(base, rc, ru);
      fold_round(base, rc, ru);
    }
  } else {
    Raw4<In> next_c[U], next_u[kGuided ? U : 1];
    if (base < a.quads) load_round(base, next_c, next_u);
    for (; base < a.quads; base += kRound) {
      Raw4<In> rc[U], ru[kGuided ? U : 1];
#pragma unroll
      for (int j = 0; j < U; ++j) {
        rc[j] = next_c[j];
        if constexpr (kGuided) ru[j] = next_u[j];
      }
      if (base + kRound < a.quads) load_round(base + kRound, next_c, next_u);
      fold_round(base, rc, ru);
    }
  }
  // The block's merge: per warp, then every warp merges the 16 warps' states (no second barrier, no broadcast).
  {
    const Pass1State warp_total = warp_merge_pass1(st);
    if (lane == 0) s.pass1_warps[threadIdx.x / 32] = warp_total;
  }
  __syncthreads();
  const Pass1State p1 = warp_merge_pass1(lane < kBlock / 32 ? s.pass1_warps[lane]
                                                            : corl::sampling::empty_certified_race_state());
  // r.argmax: the first entry of the argmax's quad for now (truncation only needs the quad); greedy finds the entry.
  // Sampling rows without truncation do not track it (fold_certified_round<U, false>): no one reads it there.
  // r.best_key: not kept (pass 1's keys are approximate, and the settling below may change the group).
  RowState r{p1.max, p1.sum, index_t{4} * p1.argmax_quad, NAN, p1.best_group, 0.0f};
  const bool bad = row_is_bad(r);
  if (bad || r.max == -INFINITY) {
    if (threadIdx.x == 0) {
      tokens[row] = bad ? kBadLogit : kNoFiniteLogit;
      logps[row] = 0.0f;
    }
    return;
  }
  if (a.greedy) {
    if (threadIdx.x == 0) {  // the first entry of the first quad holding the max
      float z[4];
      score4(cond, uncond, index_t{p1.argmax_quad}, a, vector_ok, z);
      const int first = z[0] == r.max ? 0 : (z[1] == r.max ? 1 : (z[2] == r.max ? 2 : 3));
      tokens[row] = r.argmax + first;
      logps[row] = 0.0f;
    }
    return;
  }
  // The winner of pass 1's certified race is the exact race's unless its best two approximate keys are too close to
  // tell apart (about one row in a thousand): then the exact keys of the best two groups decide (two reloads by one
  // thread), or, when a third key is that close too (~1e-6 of the rows), one more read runs the exact race.
  if (!corl::sampling::certified_winner(p1) || a.settle != SettlePass1::kAsNeeded) {
    if (a.settle != SettlePass1::kExactRace && corl::sampling::settled_by_best_two(p1)) {
      if (threadIdx.x == 0) {
        const float best = group_key_own_word(cond, uncond, a, vector_ok, stream, p1.best_group, -INFINITY);
        const float runner = group_key_own_word(cond, uncond, a, vector_ok, stream, p1.runner_group, -INFINITY);
        s.row.best_group =
            corl::sampling::race_beats(runner, p1.runner_group, best, p1.best_group) ? p1.runner_group : p1.best_group;
      }
      __syncthreads();
      r.best_group = s.row.best_group;
    } else {
      const float bound = p1.best_key - corl::sampling::certified_key_slack(p1.best_key);
      r.best_group = exact_race_pass<In, kGuided>(cond, uncond, a, vector_ok, -INFINITY, bound, stream, s).best_group;
    }
  }
  if constexpr (!kTruncate) {
    if (threadIdx.x < 32) {
      write_draw(cond, uncond, r.best_group, -INFINITY, a, stream, r.max, r.sum, &tokens[row], &logps[row]);
    }
    return;
  } else {

  // ---- truncation (extra passes) ----
  const auto argmax_group = static_cast<index_t>(corl::sampling::race_group(std::uint64_t{p1.argmax_quad}));
  const bool select_k = a.top_k > 0 && a.top_k < a.vocab;
  const float t_min = a.use_min_p ? corl::sampling::add_rn(r.max, a.log_min_p) : -INFINITY;
  std::uint32_t* deferred_group = candidate_list + a.candidate_cap;  // FusedKeptRace's list, after the candidates
  float* deferred_x = reinterpret_cast<float*>(deferred_group + kDeferredCap);
  float threshold = -INFINITY;
  bool truncated = false;
  bool mass_known = false;
  unsigned long long kept_fixed = 0;
  std::uint32_t restrict_min = 0;
  // The kept race riding on the last selection's listing read (FusedKeptRace, below): what outlives that read.
  bool fused = false;
  float fused_key = -INFINITY;        // this thread's best kept key (or lower bound)
  index_t fused_group = -1;           // and its group
  unsigned long long sure_fixed = 0;  // fixed-point mass of the entries kept for sure (see below)
  if (select_k && a.use_top_p) {  // top-k first, then top-p among its kept entries
    const Selection top_k{0u, false, static_cast<unsigned long long>(a.top_k), 0.0f};
    radix_select<In, kGuided>(cond, uncond, a, vector_ok, r.max, top_k, s, candidate_list, count_in_pass1);
    restrict_min = s.prefix;
  }
  if (select_k || a.use_top_p) {
    // ---- the last selection, with the kept race fused into the read that lists its candidates ----
    // FusedKeptRace: after the first digit chose bin [lo, hi) of keys, an entry with key >= hi (and z >= t_min) is
    // kept for sure whatever the last two digits choose; one with z >= max(from_ordered(max(lo, restrict_min)), t_min)
    // (thr_det) and not kept for sure is undetermined; the others are dropped for sure. The listing read folds every
    // group's possibly kept entries into the race (so its filter sees an upper bound of the group's kept mass), and
    // races a group whose entries are all determined with its exact kept key (reload at thr_det). A group with an
    // undetermined entry that can still win is deferred: it enters the race with a lower bound of its key (the key of
    // its entries kept for sure) and its (group, uniform) goes to a list, whose exact keys are taken once the
    // threshold is known. Every group then holds its exact kept key or a lower bound that its exact key replaces, so
    // the race's winner is the kept race's. The filter bound B is the larger of two keys some kept group certainly
    // reaches: those of the whole-row winner's and of the argmax's group over their entries kept for sure (at least the
    // argmax itself). Unless the selection gives the kept mass (top-p, min-p not raising the threshold), the listing
    // read also sums the fixed-point mass of the entries kept for sure, so that the kept mass is that plus the listed
    // candidates at or above the threshold: no race pass and no mass pass. When the deferred groups overflow their
    // list (a.deferred_cap), the race pass after the selection runs as without fusion, with that kept mass.
    // When nothing lies above the bin but the max (t_hi > m: the threshold is in the max's first-digit bin), a
    // deferred group's lower bound is -inf (its entries kept for sure could only be maxima): no reload for it.
    const Selection sel = a.use_top_p ? Selection{restrict_min, true, 0ull, a.top_p}
                                      : Selection{0u, false, static_cast<unsigned long long>(a.top_k), 0.0f};
    radix_begin(sel, s);
    radix_digit<In, kGuided>(0, cond, uncond, a, vector_ok, r.max, sel, false, candidate_list, s,
                !a.use_top_p && count_in_pass1);
    const bool listed = candidates_fit(a, s);
    const std::uint32_t bin_prefix = s.prefix;
    // keys >= 0x00800000 are finite or +inf values (below: -inf and NaN patterns), so the bounds below are numbers
    fused = listed && bin_prefix >= 0x00800000u;
    if (fused) {
      const std::uint32_t bin_hi_key = bin_prefix >= 0xffe00000u ? 0u : bin_prefix + 0x00200000u;  // 0: top bin
      const float t_hi = bin_hi_key == 0u ? INFINITY : corl::sampling::from_ordered_bits(bin_hi_key);
      const std::uint32_t lo_key = bin_prefix > sel.restrict_min ? bin_prefix : sel.restrict_min;
      const float t_lo = corl::sampling::from_ordered_bits(lo_key);
      const float thr_det = fmaxf(t_lo, t_min);
      // Entries >= thr_sure are kept for sure: above the bin, or, when nothing lies above the bin, the row's max alone.
      const float thr_sure = t_hi <= r.max ? fmaxf(t_hi, t_min) : r.max;
      if (threadIdx.x == 0 || threadIdx.x == 32) {
        const index_t g = threadIdx.x == 0 ? r.best_group : argmax_group;
        s.bound_key[threadIdx.x / 32] = group_key_own_word(cond, uncond, a, vector_ok, stream, g, thr_sure);
      }
      __syncthreads();
      const float bound = fmaxf(s.bound_key[0], s.bound_key[1]);
      const bool sure_bounds = t_hi <= r.max;  // deferred groups can have entries kept for sure
      const bool sure_mass = !a.use_top_p || a.use_min_p;  // the selection does not give the kept mass
      // Every kept score is at most the row's max: the groups' masses are folded at that one scale, and the filter
      // starts from the bound (corl::sampling::fixed_scale_race_state; the bound is at least r.max - log 22.9).
      RowState kept = corl::sampling::fixed_scale_race_state(r.max);
      float kept_bound = corl::sampling::race_filter_bound(kept, bound);
      RaceWordCache kept_cache;  // thread t folds the quads t + 512 n, as in pass 1
      bool open_undetermined = false;  // the open group has an undetermined entry
      auto word_of = [&](index_t group) { return kept_cache.word(a, stream, group); };
      auto exact_key = [&](index_t group, float x) -> float {
        if (!open_undetermined) {
          return group_key_reload(cond, uncond, a.vocab, a.weight, a.inv_temperature, kGuided, vector_ok, group,
                                  thr_det, x);
        }
        const std::uint32_t slot = atomicAdd(&s.deferred, 1u);
        if (slot < a.deferred_cap) {
          deferred_group[slot] = static_cast<std::uint32_t>(group);
          deferred_x[slot] = x;
        }
        if (!sure_bounds) return -INFINITY;
        return group_key_reload(cond, uncond, a.vocab, a.weight, a.inv_temperature, kGuided, vector_ok, group,
                                thr_sure, x);
      };
      auto fold_kept = [&](index_t q, const float (&zs)[4]) {
        float zr[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const float z = zs[k];
          const bool sure = bin_hi_key != 0u && corl::sampling::ordered_bits(z) >= bin_hi_key && z >= t_min;
          const bool maybe = z >= thr_det;  // kept for sure or undetermined (sure implies maybe)
          zr[k] = maybe ? z : -INFINITY;
          open_undetermined = open_undetermined || (maybe && !sure);
          if (sure_mass && sure) sure_fixed += corl::sampling::fixed_point_mass(z, r.max);
        }
        corl::sampling::add_quad_mass(kept, zr);
        if (corl::sampling::closes_group(static_cast<std::uint64_t>(q), static_cast<std::uint64_t>(quads))) {
          const auto group = static_cast<index_t>(corl::sampling::race_group(static_cast<std::uint64_t>(q)));
          corl::sampling::close_race_group(kept, kept_bound, group, word_of, exact_key, bound);
          open_undetermined = false;
        }
      };
      list_candidates<In, kGuided>(cond, uncond, a, vector_ok, sel, candidate_list, s, fold_kept);
      fused_key = kept.best_key;
      fused_group = kept.best_group;
    } else if (listed) {
      list_candidates<In, kGuided>(cond, uncond, a, vector_ok, sel, candidate_list, s,
                                   [](index_t, const float (&)[4]) {});
    }
    radix_digit<In, kGuided>(1, cond, uncond, a, vector_ok, r.max, sel, listed, candidate_list, s);
    radix_digit<In, kGuided>(2, cond, uncond, a, vector_ok, r.max, sel, listed, candidate_list, s);
    threshold = corl::sampling::from_ordered_bits(s.prefix);
    if (a.use_top_p) {
      kept_fixed = s.above.mass + s.equal.mass;
      truncated = true;
      mass_known = true;
    } else {
      truncated = threshold != -INFINITY;
    }
  }
  if (a.use_min_p && t_min > threshold) {
    threshold = t_min;
    truncated = true;
    mass_known = false;
  }
  if (fused && !mass_known) {
    // The kept mass: the entries kept for sure, and the listed candidates at or above the threshold.
    unsigned long long local = sure_fixed;
    const std::uint32_t listed_n = s.listed;  // (read after the selection's barriers)
    for (std::uint32_t i = threadIdx.x; i < listed_n; i += kBlock) {
      const float z = corl::sampling::from_ordered_bits(candidate_list[i]);
      if (z >= threshold) local += corl::sampling::fixed_point_mass(z, r.max);
    }
    const unsigned long long sum = cub::BlockReduce<unsigned long long, kBlock>(s.cub.mass_reduce).Sum(local);
    if (threadIdx.x == 0) s.total = sum;
    __syncthreads();
    kept_fixed = s.total;
    mass_known = true;  // also for the race pass, should the deferred groups have overflowed
  }
  if (fused && s.deferred <= a.deferred_cap) {  // (s.deferred: read after the selection's barriers)
    // The deferred groups' exact kept keys replace their lower bounds; then the block's winner.
    const std::uint32_t n = s.deferred;
    for (std::uint32_t i = threadIdx.x; i < n; i += kBlock) {
      const auto group = static_cast<index_t>(deferred_group[i]);
      const float key = group_key_reload(cond, uncond, a.vocab, a.weight, a.inv_temperature, kGuided, vector_ok,
                                         group, threshold, deferred_x[i]);
      if (corl::sampling::race_beats(key, group, fused_key, fused_group)) {
        fused_key = key;
        fused_group = group;
      }
    }
    RowState winner = corl::sampling::empty_race_state();
    winner.best_key = fused_key;
    winner.best_group = fused_group;
    // (s.cub is free: the mass reduction, or else the last digit's scan, ended with a barrier)
    const RowState total = cub::BlockReduce<RowState, kBlock>(s.cub.row_reduce).Reduce(winner, MergeRowState{});
    if (threadIdx.x == 0) s.row = total;
    __syncthreads();
    if (threadIdx.x < 32) {
      const float kept_mass = corl::sampling::from_fixed_point_mass(kept_fixed);
      write_draw(cond, uncond, s.row.best_group, threshold, a, stream, r.max, kept_mass, &tokens[row], &logps[row]);
    }
    return;
  }

  // ---- without the fused race (min-p alone; a first-digit bin too wide for the list or holding -inf; more deferred
  // groups than kDeferredCap): the whole-row winning group if all of it is kept, else one more pass ----
  // Truncation only removes mass, so no other group's key grows: a wholly kept winner stays the winner. Otherwise the
  // pass races the kept parts of the groups, filtered by the kept key of the group holding the row's argmax (always
  // kept), so that only groups that can beat it ask for their words and exact keys, as in pass 1. That pass also
  // folds the kept mass (sum exp(z - m) over the kept set, m = the row's max, which is kept), so top-k and min-p,
  // whose selection carries no mass, need a separate mass pass only when the winner was wholly kept. (The logp of a
  // top-k / min-p row then uses either this float sum or the 2^-40 fixed-point one, ~1e-6 apart.)
  // every thread has read pass 1's result (s.pass1_warps, s.row.best_group after a best-two settling) before thread 0
  // writes s.row (min-p alone runs no selection, whose barriers would do)
  __syncthreads();
  if (threadIdx.x == 0) {
    float z[corl::sampling::kRaceGroupSize];
    group_scores(cond, uncond, r.best_group, a, vector_ok, -INFINITY, z);
    bool whole = true;
#pragma unroll
    for (int k = 0; k < corl::sampling::kRaceGroupSize; ++k) whole = whole && (z[k] == -INFINITY || z[k] >= threshold);
    s.row.best_group = r.best_group;
    s.rerace = truncated && !whole;
    if (s.rerace) s.row.best_key = group_key_own_word(cond, uncond, a, vector_ok, stream, argmax_group, threshold);
  }
  __syncthreads();
  float kept_max = r.max;  // the scale of kept_mass
  float kept_mass = r.sum;
  if (s.rerace) {
    const float bound_key = s.row.best_key;  // a key some kept group certainly has
    const RowState kept = exact_race_pass<In, kGuided>(cond, uncond, a, vector_ok, threshold, bound_key, stream, s);
    kept_max = kept.max;
    kept_mass = kept.sum;  // (the winner is in s.row.best_group)
  }
  if (truncated && (mass_known || !s.rerace)) {
    if (!mass_known) {  // mass of {z >= threshold}: one pass (a count selection carries no mass)
      unsigned long long local = 0;
      auto add_kept = [&](std::uint32_t, const float (&zs)[4], std::uint32_t) {
#pragma unroll
        for (int k = 0; k < 4; ++k)
          if (zs[k] >= threshold) local += corl::sampling::fixed_point_mass(zs[k], r.max);
      };
      for_each_row_quad<In, kGuided>(cond, uncond, a, vector_ok, add_kept);
      __syncthreads();
      const unsigned long long sum = cub::BlockReduce<unsigned long long, kBlock>(s.cub.mass_reduce).Sum(local);
      if (threadIdx.x == 0) s.total = sum;
      __syncthreads();
      kept_fixed = s.total;
    }
    kept_max = r.max;
    kept_mass = corl::sampling::from_fixed_point_mass(kept_fixed);
  }
  if (threadIdx.x < 32) {
    write_draw(cond, uncond, s.row.best_group, threshold, a, stream, kept_max, kept_mass, &tokens[row], &logps[row]);
  }
  }  // kTruncate
}

/// Largest candidate list of radix_select (keys in dynamic shared memory, 32 KB): room for the first-digit bin of
/// rows much flatter than LLM logits (the benchmark's V = 102400 rows, scale ~2.3 nats, put ~4300 entries in the bin of
/// their top-p 0.9 threshold and ~280 in that of their 50th largest). The truncated kernel then takes ~74 KB of shared
/// memory per block: two blocks per SM still fit on sm_80 / sm_90.
inline constexpr std::uint32_t kCandidateCap = 8192;

/// Dynamic shared memory of a truncated launch: the candidate keys, then the deferred groups and their uniforms.
constexpr std::size_t candidate_list_bytes(std::uint32_t cap) {
  return (std::size_t{cap} + 2 * std::size_t{kDeferredCap}) * sizeof(std::uint32_t);
}

/// The candidate list's length for the truncated kernel <In, kGuided> on the current device: kCandidateCap, or less
/// when the device's opt-in shared memory leaves less room beside the kernel's static shared memory and the
/// deferred-group list (found once per device and kept); no more than the vocabulary. The kernel is allowed that much
/// dynamic shared memory (above 48 KB in all, a kernel must opt in) at every call, always the same value, so that host
/// threads launching rows of different widths never lower it under each other, and a cudaDeviceReset, which forgets
/// it, is harmless. The launch passes candidate_list_bytes(cap).
template <class In, bool kGuided>
std::uint32_t prepare_candidate_list(index_t vocab) {
  constexpr const char* where = "corl::cuda::sample_rows (candidate list)";
  constexpr int kMaxDevices = 64;
  static std::array<std::atomic<std::uint32_t>, kMaxDevices> prepared{};  // per device: 1 + list length, 0 = not yet
  int device = 0;
  check_cuda(cudaGetDevice(&device), where);
  std::uint32_t cap = device >= 0 && device < kMaxDevices ? prepared[static_cast<std::size_t>(device)].load() : 0u;
  auto* kernel = &sample_rows_kernel<In, true, kGuided, false>;
  if (cap == 0) {
    int optin = 0;
    check_cuda(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), where);
    cudaFuncAttributes attributes{};
    check_cuda(cudaFuncGetAttributes(&attributes, kernel), where);
    const std::size_t used = attributes.sharedSizeBytes + candidate_list_bytes(0);
    const std::size_t available = static_cast<std::size_t>(optin);
    const std::size_t room = available > used ? (available - used) / sizeof(std::uint32_t) : 0;
    const auto length = static_cast<std::uint32_t>(std::min<std::size_t>(kCandidateCap, room));
    cap = length + 1;
    if (device >= 0 && device < kMaxDevices) prepared[static_cast<std::size_t>(device)].store(cap);
  }
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(candidate_list_bytes(cap - 1))),
             where);
  return static_cast<std::uint32_t>(std::min<index_t>(cap - 1, vocab));
}

/// How pass 1 of the kernels without truncation (plain, CFG, greedy rows) keeps its loads in flight: in registers,
/// one round ahead (the default), or through the staging ring in shared memory, three rounds ahead (session 14;
/// measured slower in every case by session 16, 3-23%: the kernel is bound by instruction issue, and the ring adds
/// instructions; kept as an option, and the benchmark still runs it). Both give the same tokens and log-probabilities,
/// bit for bit (the same values folded in the same order). Truncated rows always use registers.
enum class Pass1Loads : std::uint8_t { kRegisters, kStaged };

/// Whether the staged kernel <In, kGuided> can run here: its ring (staging_bytes) fits beside the static shared memory
/// with two blocks per SM (found once per device and kept). When it can, the kernel is allowed that much dynamic shared
/// memory at every call (see prepare_candidate_list for why at every call).
template <class In, bool kGuided>
bool prepare_staging() {
  constexpr const char* where = "corl::cuda::sample_rows (staged loads)";
  constexpr int kMaxDevices = 64;
  static std::array<std::atomic<std::uint8_t>, kMaxDevices> prepared{};  // per device: 0 = not yet, 1 = no, 2 = yes
  int device = 0;
  check_cuda(cudaGetDevice(&device), where);
  auto* kernel = &sample_rows_kernel<In, false, kGuided, true>;
  constexpr std::size_t bytes = staging_bytes<In, kGuided>();
  std::uint8_t state = device >= 0 && device < kMaxDevices ? prepared[static_cast<std::size_t>(device)].load() : 0;
  if (state == 0) {
    int optin = 0;
    check_cuda(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), where);
    cudaFuncAttributes attributes{};
    check_cuda(cudaFuncGetAttributes(&attributes, kernel), where);
    int blocks = 0;
    if (attributes.sharedSizeBytes + bytes <= static_cast<std::size_t>(optin)) {
      check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
                 where);
      // two blocks need 2 * (64 KB + static) of the SM's unified L1 / shared memory: ask for the largest carveout
      check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                      cudaSharedmemCarveoutMaxShared),
                 where);
      check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kBlock, bytes), where);
    }
    state = blocks >= 2 ? 2 : 1;
    if (device >= 0 && device < kMaxDevices) prepared[static_cast<std::size_t>(device)].store(state);
  }
  if (state != 2) return false;
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)), where);
  return true;
}

/// Choices of paths for tests and benchmarks. Caps on the truncated kernel's shared-memory lists, for tests that must
/// reach the paths typical rows do not take: candidate_cap = 0 lists nothing (three reads per selection, then the
/// separate kept race); deferred_cap = 0 makes every deferral overflow (the fused listing read, then the separate kept
/// race). `settle` forces a rare settling path on every row; `pass1_loads` picks pass 1's loads (Pass1Loads).
/// sample_rows uses the defaults.
struct PathLimits {
  std::uint32_t candidate_cap = kCandidateCap;
  std::uint32_t deferred_cap = kDeferredCap;
  SettlePass1 settle = SettlePass1::kAsNeeded;  // kBestTwo / kExactRace: take that rare path on every row
  Pass1Loads pass1_loads = Pass1Loads::kRegisters;
  /// At T = 1, pass 1 of the kernels without truncation leaves the multiply by 1 / T out (the same scores, bit for
  /// bit); false keeps it, for the test of that and the benchmark's measure of what it saves.
  bool unit_temperature = true;
};

}  // namespace sampling_detail

/// Samples one token per row on the GPU: rows [0, rows) of `cond` (row r at cond + r * row_stride), optionally guided
/// by `uncond` (same layout; nullptr = no guidance). In = float, __nv_bfloat16 or __half. Row r uses the RNG stream r
/// and key (seed, offset), like corl::sampling::sample_rows. Writes tokens[r] (or kBadLogit / kNoFiniteLogit) and
/// logps[r]. Asynchronous on `stream`; throws corl::Error for bad arguments or a failed launch.
/// `limits` is for tests (sampling_detail::PathLimits); the default is what every caller wants.
template <class In>
void sample_rows(const In* cond, const In* uncond, index_t rows, index_t vocab, index_t row_stride,
                 const corl::sampling::SamplingParams& params, corl::sampling::RngKey key, std::int64_t* tokens,
                 float* logps, cudaStream_t stream = nullptr, const sampling_detail::PathLimits& limits = {}) {
  constexpr const char* where = "corl::cuda::sample_rows";
  require(limits.deferred_cap <= sampling_detail::kDeferredCap, where, ": limits.deferred_cap = ", limits.deferred_cap,
          ", expected <= ", sampling_detail::kDeferredCap);
  corl::sampling::validate_params(params, where);
  require(rows >= 0 && rows <= 0x7fffffff, where, ": rows = ", rows, ", expected in [0, 2^31)");
  require(vocab >= 1 && vocab / 4 < (index_t{1} << 31), where, ": vocab = ", vocab, ", expected in [1, 2^33)");
  require(row_stride >= vocab, where, ": row_stride = ", row_stride, ", expected >= vocab = ", vocab);
  if (rows == 0) return;
  require(cond != nullptr && tokens != nullptr && logps != nullptr, where,
          ": cond, tokens and logps must be device pointers, got a null pointer");
  sampling_detail::Args a{};
  a.vocab = vocab;
  a.quads = static_cast<std::uint32_t>((vocab + 3) / 4);
  a.whole_quads = static_cast<std::uint32_t>(vocab / 4);
  a.row_stride = row_stride;
  a.guided = uncond != nullptr;
  a.weight = static_cast<float>(params.cfg_weight);
  a.greedy = params.temperature == 0.0;
  a.inv_temperature = a.greedy ? 1.0f : static_cast<float>(1.0 / params.temperature);
  a.top_k = params.top_k;
  a.use_top_p = params.top_p < 1.0;
  a.top_p = static_cast<float>(params.top_p);
  a.use_min_p = params.min_p > 0.0;
  a.log_min_p = a.use_min_p ? static_cast<float>(std::log(params.min_p)) : 0.0f;
  a.seed = key.seed;
  a.offset = key.offset;
  a.deferred_cap = limits.deferred_cap;
  a.settle = limits.settle;
  a.unit_temperature = limits.unit_temperature && a.inv_temperature == 1.0f;
  const bool truncate = !a.greedy && ((a.top_k > 0 && a.top_k < vocab) || a.use_top_p || a.use_min_p);
  const unsigned int grid = static_cast<unsigned int>(rows);
  constexpr int block = sampling_detail::kBlock;
  using sampling_detail::sample_rows_kernel;
  // Staged loads need every row aligned for vector loads (the kernel checks each row too, and loads an unaligned one
  // directly, round by round).
  const auto aligned = [&](const In* p) { return reinterpret_cast<std::uintptr_t>(p) % (4 * sizeof(In)) == 0; };
  const bool rows_aligned = aligned(cond) && (!a.guided || aligned(uncond)) && row_stride % 4 == 0;
  const bool want_staged = limits.pass1_loads == sampling_detail::Pass1Loads::kStaged && rows_aligned;
  if (truncate && a.guided) {
    a.candidate_cap = std::min(sampling_detail::prepare_candidate_list<In, true>(vocab), limits.candidate_cap);
    const std::size_t list_bytes = sampling_detail::candidate_list_bytes(a.candidate_cap);
    sample_rows_kernel<In, true, true, false><<<grid, block, list_bytes, stream>>>(cond, uncond, a, tokens, logps);
  } else if (truncate) {
    a.candidate_cap = std::min(sampling_detail::prepare_candidate_list<In, false>(vocab), limits.candidate_cap);
    const std::size_t list_bytes = sampling_detail::candidate_list_bytes(a.candidate_cap);
    sample_rows_kernel<In, true, false, false><<<grid, block, list_bytes, stream>>>(cond, uncond, a, tokens, logps);
  } else {
    // without truncation: the staged kernel when asked for and available, else the register one
    auto launch = [&](auto guided) {
      constexpr bool kGuided = decltype(guided)::value;
      if (want_staged && sampling_detail::prepare_staging<In, kGuided>()) {
        constexpr std::size_t ring = sampling_detail::staging_bytes<In, kGuided>();
        sample_rows_kernel<In, false, kGuided, true><<<grid, block, ring, stream>>>(cond, uncond, a, tokens, logps);
      } else {
        sample_rows_kernel<In, false, kGuided, false><<<grid, block, 0, stream>>>(cond, uncond, a, tokens, logps);
      }
    };
    if (a.guided) {
      launch(std::true_type{});
    } else {
      launch(std::false_type{});
    }
  }
  check_launch("corl::cuda::sample_rows (sample_rows_kernel)");
}

/// Throws corl::Error naming the first row whose token is a failure code of sample_rows (host copy of the tokens).
inline void check_sampled_tokens(std::span<const std::int64_t> tokens, const char* where) {
  for (std::size_t r = 0; r < tokens.size(); ++r) {
    require(tokens[r] != kBadLogit, where, ": row ", r, " has a NaN or +inf logit (or its guided logit overflows)");
    require(tokens[r] != kNoFiniteLogit, where, ": row ", r, " has no finite logit (all are -inf)");
  }
}

}  // namespace corl::cuda
