// corl/cuda/text_image_matching.cuh — batched text-image matching reward R_TIM (CoRL) on the GPU.
//   R_TIM(b) = 0.5 ( mean_i max_k cos(h_img_i, h_txt_k) + mean_k max_i cos(h_img_i, h_txt_k) )
// CPU reference and exact definition (zero-vector convention, offsets layout): corl/reward/text_image_matching.hpp.
//
// Design note. The work is a small batched GEMM (I x D times D x K per sample, I ~ 576 image tokens, K ~ tens of text
// tokens, D ~ 2048) followed by row and column maxima; the I x K matrix is never stored.
//   - Grid (num_samples, ceil(max_image_rows / 32)); a block of 32 x 8 threads owns 32 image rows of one sample and
//     sweeps the sample's text rows in tiles of 32, staging 32 x 32 slices of both operands in shared memory; each
//     thread accumulates 4 dot products in fp32. Row norms are computed by the block itself (text norms are recomputed
//     by each row tile of a sample: ~3% extra reads for I = 576), so no separate normalisation pass or launch.
//   - A row maximum is owned by one block: it is written to scratch with a plain store. A column maximum is shared by the
//     row tiles of the sample: it is merged with atomicMax on an order-preserving integer encoding of the float —
//     max is exact, so the result does not depend on the order of the atomics.
//   - The last block of each sample to finish (a per-sample atomic counter after __threadfence, as in CUB's
//     single-pass patterns) sums the row and column maxima in a fixed order and writes the reward. One launch, and two
//     runs give identical bits.
// Scratch (caller-owned; size from text_image_matching_scratch_bytes): row maxima, encoded column maxima, per-sample
// counters and a status word. The launcher clears the part that needs it with cudaMemsetAsync on the same stream.
// Preconditions the kernel checks itself (the offsets are on the device): each sample has 1..max_image_rows image rows
// and >= 1 text rows; otherwise its reward is 0 and the status word is set (text_image_matching_status reads it).
// Measured on an H200: 128 samples x 576 image rows x 64 text rows x D 2048: 2.0 ms (9.6 TFLOP/s), 256 samples 3.8 ms;
// bf16 inputs the same. The inner loop is shared-memory bound (5 loads per 4 FMAs); register blocking or tensor cores
// would speed it up if the reward ever mattered next to the policy's forward pass.
// Inputs: float or bf16 hidden states (fp32 accumulation); rewards are fp32. Deviation from the CPU reference (double
// accumulation): about 1e-6 relative for D = 2048.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "corl/core/error.hpp"
#include "corl/core/hd.hpp"
#include "corl/cuda/check.cuh"
#include "corl/reward/text_image_matching.hpp"

namespace corl::cuda {

/// Sizes of one batched R_TIM problem.
struct TimShape {
  index_t num_samples = 0;       ///< B
  index_t dim = 0;               ///< D
  index_t total_image_rows = 0;  ///< image_offsets[B]
  index_t total_text_rows = 0;   ///< text_offsets[B]
  index_t max_image_rows = 0;    ///< max_b (image_offsets[b + 1] - image_offsets[b]); sets the grid
};

inline constexpr int kTimTile = 32;   ///< image rows x text rows x dims per shared-memory tile
inline constexpr int kTimWarps = 8;   ///< block = 32 x 8 threads; each thread accumulates 4 dot products

/// Bytes of scratch text_image_matching needs for `shape`.
inline std::size_t text_image_matching_scratch_bytes(const TimShape& shape) {
  return sizeof(float) * static_cast<std::size_t>(shape.total_image_rows) +
         sizeof(unsigned int) * static_cast<std::size_t>(shape.total_text_rows + shape.num_samples + 1);
}

namespace detail {

__device__ __forceinline__ float tim_load(const float* p) { return *p; }
__device__ __forceinline__ float tim_load(const __nv_bfloat16* p) { return __bfloat162float(*p); }

/// Order-preserving map float -> uint (0 is below every float), and back.
__device__ __forceinline__ unsigned int tim_encode(float f) {
  const unsigned int u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float tim_decode(unsigned int e) {
  return __uint_as_float((e & 0x80000000u) ? (e & 0x7fffffffu) : ~e);
}

__device__ __forceinline__ float tim_warp_sum(float x) {
  for (int s = 16; s > 0; s >>= 1) x += __shfl_xor_sync(0xffffffffu, x, s);
  return x;
}
__device__ __forceinline__ double tim_warp_sum(double x) {
  for (int s = 16; s > 0; s >>= 1) x += __shfl_xor_sync(0xffffffffu, x, s);
  return x;
}
__device__ __forceinline__ float tim_warp_max(float x) {
  for (int s = 16; s > 0; s >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, s));
  return x;
}

/// 1 / max(|row|, eps) of a row of `dim` values, computed by one warp; every lane gets it.
template <class T>
__device__ float tim_inv_norm(const T* row, index_t dim) {
  float sq = 0.0f;
  for (index_t d = threadIdx.x; d < dim; d += 32) {
    const float x = tim_load(row + d);
    sq += x * x;
  }
  sq = tim_warp_sum(sq);
  const float norm = sqrtf(sq);
  const float eps = static_cast<float>(kTimNormEps);
  return 1.0f / (norm > eps ? norm : eps);
}

template <class T>
__global__ void __launch_bounds__(32 * kTimWarps)
    text_image_matching_kernel(const T* __restrict__ image, const index_t* __restrict__ image_offsets,
                               const T* __restrict__ text, const index_t* __restrict__ text_offsets, index_t dim,
                               float* __restrict__ rewards, float* row_max, unsigned int* col_max,
                               unsigned int* counters, unsigned int* status) {
  __shared__ float a_tile[kTimTile][kTimTile + 1];
  __shared__ float b_tile[kTimTile][kTimTile + 1];
  __shared__ float inv_a[kTimTile], inv_b[kTimTile], row_best[kTimTile];
  __shared__ float col_part[kTimWarps][kTimTile];
  __shared__ double partial[2][kTimWarps];
  __shared__ int is_last;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const index_t b = blockIdx.x;
  const index_t i0 = image_offsets[b], i1 = image_offsets[b + 1];
  const index_t t0 = text_offsets[b], t1 = text_offsets[b + 1];
  const index_t num_rows = i1 - i0, num_text = t1 - t0;
  const index_t tile_row0 = static_cast<index_t>(blockIdx.y) * kTimTile;
  constexpr int kRowsPerWarp = kTimTile / kTimWarps;

  if (tile_row0 < num_rows && num_text > 0) {
    const int rows_here = static_cast<int>(num_rows - tile_row0 < kTimTile ? num_rows - tile_row0 : kTimTile);
    const T* a_base = image + (i0 + tile_row0) * dim;
    for (int j = 0; j < kRowsPerWarp; ++j) {
      const int r = ty + kTimWarps * j;
      if (r < rows_here) {
        const float inv = tim_inv_norm(a_base + r * dim, dim);
        if (tx == 0) {
          inv_a[r] = inv;
          row_best[r] = -INFINITY;
        }
      }
    }
    for (index_t k0 = 0; k0 < num_text; k0 += kTimTile) {
      const int cols_here = static_cast<int>(num_text - k0 < kTimTile ? num_text - k0 : kTimTile);
      const T* b_base = text + (t0 + k0) * dim;
      for (int j = 0; j < kRowsPerWarp; ++j) {
        const int c = ty + kTimWarps * j;
        if (c < cols_here) {
          const float inv = tim_inv_norm(b_base + c * dim, dim);
          if (tx == 0) inv_b[c] = inv;
        }
      }
      float acc[kRowsPerWarp] = {};
      for (index_t d0 = 0; d0 < dim; d0 += kTimTile) {
        const bool d_ok = d0 + tx < dim;
        for (int j = 0; j < kRowsPerWarp; ++j) {
          const int r = ty + kTimWarps * j;
          a_tile[r][tx] = (d_ok && r < rows_here) ? tim_load(a_base + r * dim + d0 + tx) : 0.0f;
          b_tile[r][tx] = (d_ok && r < cols_here) ? tim_load(b_base + r * dim + d0 + tx) : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int dd = 0; dd < kTimTile; ++dd) {
          const float bv = b_tile[tx][dd];
          for (int j = 0; j < kRowsPerWarp; ++j) acc[j] += a_tile[ty + kTimWarps * j][dd] * bv;
        }
        __syncthreads();
      }
      float col_best = -INFINITY;
      for (int j = 0; j < kRowsPerWarp; ++j) {
        const int r = ty + kTimWarps * j;
        const bool ok = r < rows_here && tx < cols_here;
        const float c = ok ? acc[j] * inv_a[r] * inv_b[tx] : -INFINITY;
        const float best = tim_warp_max(c);
        if (tx == 0 && r < rows_here) row_best[r] = fmaxf(row_best[r], best);
        col_best = fmaxf(col_best, c);
      }
      col_part[ty][tx] = col_best;
      __syncthreads();
      if (ty == 0 && tx < cols_here) {
        float m = col_part[0][tx];
        for (int w = 1; w < kTimWarps; ++w) m = fmaxf(m, col_part[w][tx]);
        atomicMax(col_max + t0 + k0 + tx, tim_encode(m));
      }
      __syncthreads();
    }
    if (ty == 0) {
      for (int r = tx; r < rows_here; r += 32) row_max[i0 + tile_row0 + r] = row_best[r];
    }
  }

  // The last block of this sample to finish computes the reward.
  __threadfence();
  __syncthreads();
  if (tx == 0 && ty == 0) is_last = atomicAdd(counters + b, 1u) == gridDim.y - 1;
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  if (num_rows < 1 || num_text < 1 || num_rows > static_cast<index_t>(gridDim.y) * kTimTile) {
    if (tx == 0 && ty == 0) {
      rewards[b] = 0.0f;
      atomicOr(status, 1u);
    }
    return;
  }
  const int tid = ty * 32 + tx;
  double sum_rows = 0.0, sum_cols = 0.0;
  for (index_t r = tid; r < num_rows; r += 32 * kTimWarps) sum_rows += static_cast<double>(__ldcg(row_max + i0 + r));
  for (index_t k = tid; k < num_text; k += 32 * kTimWarps) {
    sum_cols += static_cast<double>(tim_decode(__ldcg(col_max + t0 + k)));
  }
  sum_rows = tim_warp_sum(sum_rows);
  sum_cols = tim_warp_sum(sum_cols);
  if (tx == 0) {
    partial[0][ty] = sum_rows;
    partial[1][ty] = sum_cols;
  }
  __syncthreads();
  if (tid == 0) {
    double sr = 0.0, sc = 0.0;
    for (int w = 0; w < kTimWarps; ++w) {
      sr += partial[0][w];
      sc += partial[1][w];
    }
    rewards[b] = static_cast<float>(0.5 * (sr / static_cast<double>(num_rows) + sc / static_cast<double>(num_text)));
    counters[b] = 0u;  // leave the counter clean (the launcher clears it anyway)
  }
}

}  // namespace detail

/// R_TIM for every sample. Device pointers: image[total_image_rows x dim], image_offsets[B + 1], text[...],
/// text_offsets[B + 1], rewards[B]; scratch of at least text_image_matching_scratch_bytes(shape) bytes, 4-byte
/// aligned. T: float or __nv_bfloat16.
template <class T>
void text_image_matching(const T* image, const index_t* image_offsets, const T* text, const index_t* text_offsets,
                         const TimShape& shape, float* rewards, void* scratch, std::size_t scratch_bytes,
                         cudaStream_t stream = nullptr) {
  constexpr const char* where = "corl::cuda::text_image_matching";
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16>, "T must be float or __nv_bfloat16");
  require(image != nullptr && text != nullptr, where, ": image or text is null, expected device pointers");
  require(image_offsets != nullptr && text_offsets != nullptr, where,
          ": image_offsets or text_offsets is null, expected device pointers");
  require(rewards != nullptr, where, ": rewards is null, expected a device pointer");
  require(shape.num_samples >= 1 && shape.num_samples <= 0x7fffffffLL, where, ": shape.num_samples = ",
          shape.num_samples, ", expected 1 <= num_samples < 2^31");
  require(shape.dim >= 1, where, ": shape.dim = ", shape.dim, ", expected >= 1");
  require(shape.total_image_rows >= shape.num_samples, where, ": shape.total_image_rows = ", shape.total_image_rows,
          ", expected >= num_samples = ", shape.num_samples, " (one image row per sample at least)");
  require(shape.total_text_rows >= shape.num_samples, where, ": shape.total_text_rows = ", shape.total_text_rows,
          ", expected >= num_samples = ", shape.num_samples, " (one text row per sample at least)");
  require(shape.max_image_rows >= 1 && shape.max_image_rows <= shape.total_image_rows, where,
          ": shape.max_image_rows = ", shape.max_image_rows, ", expected 1 <= max_image_rows <= total_image_rows = ",
          shape.total_image_rows);
  const index_t row_tiles = (shape.max_image_rows + kTimTile - 1) / kTimTile;
  require(row_tiles <= 65535, where, ": shape.max_image_rows = ", shape.max_image_rows, ", expected <= ",
          65535LL * kTimTile);
  const std::size_t need = text_image_matching_scratch_bytes(shape);
  require(scratch != nullptr && scratch_bytes >= need, where, ": scratch has ", scratch_bytes, " bytes, expected >= ",
          need, " (text_image_matching_scratch_bytes)");
  require(reinterpret_cast<std::uintptr_t>(scratch) % 4 == 0, where, ": scratch is not 4-byte aligned");
  auto* row_max = static_cast<float*>(scratch);
  auto* col_max = reinterpret_cast<unsigned int*>(row_max + shape.total_image_rows);
  auto* counters = col_max + shape.total_text_rows;
  auto* status = counters + shape.num_samples;
  check_cuda(cudaMemsetAsync(col_max, 0, sizeof(unsigned int) * static_cast<std::size_t>(shape.total_text_rows +
                                                                                         shape.num_samples + 1),
                             stream),
             "corl::cuda::text_image_matching: cudaMemsetAsync(scratch)");
  const dim3 grid(static_cast<unsigned int>(shape.num_samples), static_cast<unsigned int>(row_tiles));
  const dim3 block(32, kTimWarps);
  detail::text_image_matching_kernel<T><<<grid, block, 0, stream>>>(image, image_offsets, text, text_offsets,
                                                                    shape.dim, rewards, row_max, col_max, counters,
                                                                    status);
  check_launch("corl::cuda::text_image_matching_kernel");
}

/// Waits for `stream` and returns the status word of the last text_image_matching call that used `scratch`:
/// 0 = fine, 1 = some sample had no image or text rows or more than shape.max_image_rows image rows (its reward is 0).
inline unsigned int text_image_matching_status(const void* scratch, const TimShape& shape,
                                               cudaStream_t stream = nullptr) {
  unsigned int value = 0;
  const auto* status = reinterpret_cast<const unsigned int*>(static_cast<const float*>(scratch) +
                                                             shape.total_image_rows) +
                       shape.total_text_rows + shape.num_samples;
  check_cuda(cudaMemcpyAsync(&value, status, sizeof(value), cudaMemcpyDeviceToHost, stream),
             "corl::cuda::text_image_matching_status: copy");
  check_cuda(cudaStreamSynchronize(stream), "corl::cuda::text_image_matching_status: synchronize");
  return value;
}

}  // namespace corl::cuda
