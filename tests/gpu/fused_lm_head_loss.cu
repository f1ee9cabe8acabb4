// Fused lm_head + GRPO loss (corl/cuda/fused_lm_head_loss.cuh) against (1) an unfused path written out here: one GEMM
// for all N x V logits, grpo_loss_from_logits over all rows, two gradient GEMMs; and (2) a host reference in double
// computed from the same bf16 inputs (on-policy PPO: dL/dlogp = -w A, so dlogits = -w A (onehot - softmax)).
// Tolerances: the fused and unfused paths round the same bf16 logits / dlogits but cuBLAS may pick different kernels
// for different n, so loss totals agree to 2e-3 relative and gradients to 1e-2 in relative Frobenius norm; against the
// double reference (which does not round logits and dlogits to bf16) log-probs agree to 3e-2 absolute and gradients to
// 3e-2 relative Frobenius norm.
#include "gpu_test_main.cuh"

#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include <corl/core/half_types.hpp>
#include <corl/core/rng.hpp>
#include <corl/cuda/fused_lm_head_loss.cuh>
#include <corl/cuda/grpo_loss.cuh>
#include <corl/loss/gspo.hpp>
#include <corl/loss/kl.hpp>
#include <corl/loss/ppo_clip.hpp>

namespace {

using corl::index_t;

template <class T>
struct Dev {
  T* ptr = nullptr;
  std::size_t n = 0;
  explicit Dev(std::size_t count) : n(count) { corl::cuda::check_cuda(cudaMalloc(&ptr, count * sizeof(T) + 256), "cudaMalloc"); }
  Dev(const std::vector<T>& host) : Dev(host.size()) {
    corl::cuda::check_cuda(cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  ~Dev() { cudaFree(ptr); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  std::vector<T> get() const {
    std::vector<T> h(n);
    corl::cuda::check_cuda(cudaMemcpy(h.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return h;
  }
};

struct Problem {
  index_t sequences, seq_len, hidden, vocab;
  std::vector<corl::bfloat16> x, w;  // [N, H], [V, H]
  std::vector<std::int32_t> targets;
  std::vector<std::uint8_t> mask;
  std::vector<float> advantages, token_weight, logp_old, logp_ref;
};

Problem make_problem(index_t sequences, index_t seq_len, index_t hidden, index_t vocab, std::uint64_t seed) {
  Problem p{sequences, seq_len, hidden, vocab, {}, {}, {}, {}, {}, {}, {}, {}};
  corl::CounterRng rng(seed, 0);
  const index_t n = sequences * seq_len;
  p.x.resize(static_cast<std::size_t>(n * hidden));
  p.w.resize(static_cast<std::size_t>(vocab * hidden));
  for (auto& v : p.x) v = corl::bfloat16(static_cast<float>(rng.normal()));
  for (auto& v : p.w) v = corl::bfloat16(static_cast<float>(0.25 * rng.normal()));
  for (index_t i = 0; i < n; ++i) {
    p.targets.push_back(static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(vocab))));
    p.mask.push_back(rng.uniform() < 0.85 ? 1 : 0);
  }
  long tokens = 0;
  for (const auto m : p.mask) tokens += m;
  for (index_t b = 0; b < sequences; ++b) {
    p.advantages.push_back(static_cast<float>(rng.normal()));
    p.token_weight.push_back(1.0f / static_cast<float>(tokens));  // token-mean with the global normaliser
  }
  return p;
}

struct Outputs {
  corl::GrpoLossTotals totals;
  std::vector<corl::bfloat16> dhidden;
  std::vector<float> dweight;
  std::vector<float> logp;
};

struct Inputs {
  Dev<corl::bfloat16> x, w;
  Dev<std::int32_t> targets;
  Dev<std::uint8_t> mask;
  Dev<float> adv, tw;
  explicit Inputs(const Problem& p)
      : x(p.x), w(p.w), targets(p.targets), mask(p.mask), adv(p.advantages), tw(p.token_weight) {}
};

template <class Policy, class Kl>
Outputs run_fused(const Problem& p, const Policy& policy, const Kl& kl, float kl_coef, index_t chunk_sequences,
                  cublasHandle_t handle) {
  Inputs in(p);
  const index_t n = p.sequences * p.seq_len;
  Dev<float> old_d(p.logp_old.empty() ? std::vector<float>(1) : p.logp_old);
  Dev<float> ref_d(p.logp_ref.empty() ? std::vector<float>(1) : p.logp_ref);
  Dev<corl::bfloat16> dx(static_cast<std::size_t>(n * p.hidden));
  Dev<float> dw(static_cast<std::size_t>(p.vocab * p.hidden));
  Dev<float> logp(static_cast<std::size_t>(n));
  corl::cuda::FusedLmHeadArgs a;
  a.hidden = reinterpret_cast<const __nv_bfloat16*>(in.x.ptr);
  a.weight = reinterpret_cast<const __nv_bfloat16*>(in.w.ptr);
  a.sequences = p.sequences;
  a.seq_len = p.seq_len;
  a.hidden_size = p.hidden;
  a.vocab = p.vocab;
  a.targets = in.targets.ptr;
  a.mask = in.mask.ptr;
  a.logp_old = p.logp_old.empty() ? nullptr : old_d.ptr;
  a.logp_ref = p.logp_ref.empty() ? nullptr : ref_d.ptr;
  a.advantages = in.adv.ptr;
  a.token_weight = in.tw.ptr;
  a.kl_coef = kl_coef;
  a.dhidden = reinterpret_cast<__nv_bfloat16*>(dx.ptr);
  a.dweight = dw.ptr;
  a.logp_out = logp.ptr;
  a.chunk_sequences = chunk_sequences;
  const std::size_t bytes = corl::cuda::fused_lm_head_loss_scratch_bytes(a);
  Dev<char> scratch(bytes);
  Outputs o;
  o.totals = corl::cuda::fused_lm_head_grpo_loss(a, policy, kl, handle, scratch.ptr, bytes);
  o.dhidden = dx.get();
  o.dweight = dw.get();
  o.logp = logp.get();
  return o;
}

// The unfused path: all N x V logits at once.
template <class Policy, class Kl>
Outputs run_unfused(const Problem& p, const Policy& policy, const Kl& kl, float kl_coef, cublasHandle_t handle) {
  Inputs in(p);
  const index_t n = p.sequences * p.seq_len;
  const int h = static_cast<int>(p.hidden), v = static_cast<int>(p.vocab), ni = static_cast<int>(n);
  Dev<float> old_d(p.logp_old.empty() ? std::vector<float>(1) : p.logp_old);
  Dev<float> ref_d(p.logp_ref.empty() ? std::vector<float>(1) : p.logp_ref);
  Dev<__nv_bfloat16> logits(static_cast<std::size_t>(n * p.vocab));
  Dev<corl::bfloat16> dx(static_cast<std::size_t>(n * p.hidden));
  Dev<float> dw(static_cast<std::size_t>(p.vocab * p.hidden));
  Dev<float> logp(static_cast<std::size_t>(n));
  Dev<corl::cuda::GrpoLossResult> result(1);
  const float one = 1.0f, zero = 0.0f;
  corl::cuda::check_cublas(cublasSetStream(handle, nullptr), "cublasSetStream");
  corl::cuda::check_cublas(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, v, ni, h, &one, in.w.ptr, CUDA_R_16BF, h, in.x.ptr,
                                        CUDA_R_16BF, h, &zero, logits.ptr, CUDA_R_16BF, v, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT),
                           "logits GEMM");
  corl::cuda::GrpoLossArgs<__nv_bfloat16> la;
  la.logits = logits.ptr;
  la.dlogits = logits.ptr;
  la.sequences = p.sequences;
  la.seq_len = p.seq_len;
  la.vocab = p.vocab;
  la.targets = in.targets.ptr;
  la.mask = in.mask.ptr;
  la.logp_old = p.logp_old.empty() ? nullptr : old_d.ptr;
  la.logp_ref = p.logp_ref.empty() ? nullptr : ref_d.ptr;
  la.advantages = in.adv.ptr;
  la.token_weight = in.tw.ptr;
  la.kl_coef = kl_coef;
  la.logp_out = logp.ptr;
  la.result = result.ptr;
  const std::size_t sb = corl::cuda::grpo_loss_scratch_bytes(n, p.sequences);
  Dev<char> scratch(sb);
  corl::cuda::grpo_loss_from_logits(la, policy, kl, scratch.ptr, sb);
  corl::cuda::check_cublas(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, h, ni, v, &one, in.w.ptr, CUDA_R_16BF, h,
                                        logits.ptr, CUDA_R_16BF, v, &zero, dx.ptr, CUDA_R_16BF, h, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT),
                           "dhidden GEMM");
  corl::cuda::check_cublas(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_T, h, v, ni, &one, in.x.ptr, CUDA_R_16BF, h,
                                        logits.ptr, CUDA_R_16BF, v, &zero, dw.ptr, CUDA_R_32F, h, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT),
                           "dweight GEMM");
  corl::cuda::check_cuda(cudaDeviceSynchronize(), "unfused");
  Outputs o;
  o.totals = result.get()[0].totals;
  o.dhidden = dx.get();
  o.dweight = dw.get();
  o.logp = logp.get();
  return o;
}

template <class A, class B>
double rel_frobenius(const std::vector<A>& a, const std::vector<B>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = corl::to_real<double>(a[i]), y = corl::to_real<double>(b[i]);
    num += (x - y) * (x - y);
    den += y * y;
  }
  return std::sqrt(num / (den > 0 ? den : 1.0));
}

double norm(const std::vector<corl::bfloat16>& a) {
  double s = 0;
  for (const auto v : a) s += static_cast<double>(static_cast<float>(v)) * static_cast<float>(v);
  return std::sqrt(s);
}

void compare(const Outputs& f, const Outputs& u) {
  CHECK(f.totals.tokens == u.totals.tokens);
  CHECK(f.totals.loss == doctest::Approx(u.totals.loss).epsilon(2e-3));
  CHECK(f.totals.policy_loss == doctest::Approx(u.totals.policy_loss).epsilon(2e-3));
  CHECK(f.totals.kl == doctest::Approx(u.totals.kl).epsilon(2e-3).scale(1e-6));
  CHECK(rel_frobenius(f.dhidden, u.dhidden) < 1e-2);
  CHECK(rel_frobenius(f.dweight, u.dweight) < 1e-2);
  CHECK(rel_frobenius(f.logp, u.logp) < 1e-3);
  CHECK(norm(f.dhidden) > 0.0);
}

struct Cublas {
  cublasHandle_t h = nullptr;
  Cublas() { corl::cuda::check_cublas(cublasCreate(&h), "cublasCreate"); }
  ~Cublas() { cublasDestroy(h); }
};

}  // namespace

TEST_CASE("fused lm_head + PPO loss equals the unfused path and a double host reference (on-policy)") {
  Cublas cublas;
  for (const index_t vocab : {1000, 1003}) {  // 1003: rows not 16-byte aligned, the loss kernel's scalar path
    CAPTURE(vocab);
    const Problem p = make_problem(5, 24, 64, vocab, 17 + static_cast<std::uint64_t>(vocab));
    const Outputs u = run_unfused(p, corl::PpoClip{}, corl::NoKl{}, 0.0f, cublas.h);
    for (const index_t chunk : {1, 2, 0}) {  // 2: the last chunk holds one sequence; 0: auto (one chunk here)
      CAPTURE(chunk);
      compare(run_fused(p, corl::PpoClip{}, corl::NoKl{}, 0.0f, chunk, cublas.h), u);
    }
    // Host reference in double from the same bf16 inputs.
    const index_t n = p.sequences * p.seq_len, h = p.hidden;
    std::vector<double> dx(static_cast<std::size_t>(n * h), 0.0), dw(static_cast<std::size_t>(vocab * h), 0.0);
    double loss = 0;
    const Outputs f = run_fused(p, corl::PpoClip{}, corl::NoKl{}, 0.0f, 2, cublas.h);
    for (index_t r = 0; r < n; ++r) {
      std::vector<double> logits(static_cast<std::size_t>(vocab));
      double mx = -1e300;
      for (index_t v = 0; v < vocab; ++v) {
        double s = 0;
        for (index_t k = 0; k < h; ++k) {
          s += static_cast<double>(static_cast<float>(p.x[static_cast<std::size_t>(r * h + k)])) *
               static_cast<float>(p.w[static_cast<std::size_t>(v * h + k)]);
        }
        logits[static_cast<std::size_t>(v)] = s;
        mx = std::max(mx, s);
      }
      double z = 0;
      for (const double l : logits) z += std::exp(l - mx);
      const std::int32_t t = p.targets[static_cast<std::size_t>(r)];
      const double logp = logits[static_cast<std::size_t>(t)] - mx - std::log(z);
      if (p.mask[static_cast<std::size_t>(r)]) {
        CHECK(std::abs(f.logp[static_cast<std::size_t>(r)] - logp) < 3e-2);
      }
      if (!p.mask[static_cast<std::size_t>(r)]) continue;
      const index_t b = r / p.seq_len;
      const double g = -static_cast<double>(p.advantages[static_cast<std::size_t>(b)]) * p.token_weight[static_cast<std::size_t>(b)];
      loss += g;  // on-policy PPO: value = -A per token, times w
      for (index_t v = 0; v < vocab; ++v) {
        const double d = g * ((v == t ? 1.0 : 0.0) - std::exp(logits[static_cast<std::size_t>(v)] - mx) / z);
        for (index_t k = 0; k < h; ++k) {
          dx[static_cast<std::size_t>(r * h + k)] += d * static_cast<float>(p.w[static_cast<std::size_t>(v * h + k)]);
          dw[static_cast<std::size_t>(v * h + k)] += d * static_cast<float>(p.x[static_cast<std::size_t>(r * h + k)]);
        }
      }
    }
    CHECK(f.totals.loss == doctest::Approx(loss).epsilon(1e-5));
    CHECK(rel_frobenius(f.dhidden, dx) < 3e-2);
    CHECK(rel_frobenius(f.dweight, dw) < 3e-2);
  }
}

TEST_CASE("fused lm_head: off-policy PPO with K3 KL and GSPO (sequence level) match the unfused path") {
  Cublas cublas;
  Problem p = make_problem(6, 16, 128, 2048, 5);
  // Old / reference log-probs near the current ones so that ratios straddle the clip range.
  const Outputs on = run_unfused(p, corl::PpoClip{}, corl::NoKl{}, 0.0f, cublas.h);
  corl::CounterRng rng(77, 0);
  for (const float l : on.logp) {
    p.logp_old.push_back(l + static_cast<float>(0.3 * rng.normal()));
    p.logp_ref.push_back(l + static_cast<float>(0.3 * rng.normal()));
  }
  {
    const Outputs u = run_unfused(p, corl::PpoClip{}, corl::K3{}, 0.05f, cublas.h);
    CHECK(u.totals.clipped_low + u.totals.clipped_high > 0);
    compare(run_fused(p, corl::PpoClip{}, corl::K3{}, 0.05f, 1, cublas.h), u);
    compare(run_fused(p, corl::PpoClip{}, corl::K3{}, 0.05f, 4, cublas.h), u);
  }
  {
    corl::Gspo gspo;
    gspo.eps_low = 0.2;
    gspo.eps_high = 0.2;
    const Outputs u = run_unfused(p, gspo, corl::NoKl{}, 0.0f, cublas.h);
    compare(run_fused(p, gspo, corl::NoKl{}, 0.0f, 1, cublas.h), u);
    compare(run_fused(p, gspo, corl::NoKl{}, 0.0f, 5, cublas.h), u);
  }
}

TEST_CASE("fused lm_head: bad rows are reported with their global row, bad arguments throw") {
  Cublas cublas;
  Problem p = make_problem(4, 8, 32, 500, 3);
  p.targets[19] = 500;  // out of range, in the third chunk of one sequence
  p.mask[19] = 1;
  try {
    (void)run_fused(p, corl::PpoClip{}, corl::NoKl{}, 0.0f, 1, cublas.h);
    FAIL("expected corl::Error");
  } catch (const corl::Error& e) {
    CHECK(std::string(e.what()).find("targets[19] = 500") != std::string::npos);
  }
  corl::cuda::FusedLmHeadArgs a;
  CHECK_THROWS_AS(corl::cuda::fused_lm_head_grpo_loss(a, corl::PpoClip{}, corl::NoKl{}, cublas.h, nullptr, 0), corl::Error);
}
