// bench/from_logits.cpp — the CPU from-logits path (corl/logprob/from_logits.hpp, grpo_from_logits.hpp): forward
// log-probs + entropy, backward, and the whole GRPO loss (forward + backward), on bf16 and fp32 logits.
// The GPU problem sizes (B32 T512 V102400) are far too large for a 2-core CPU run, so rows = 256 tokens of V = 32768
// (the shape is a benchmark argument). Counters: tokens/s (rows per second) and bytes/s (logit bytes read, plus
// gradient bytes written for the backward passes), for 1 and all threads.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include <corl/core/half_types.hpp>
#include <corl/logprob/from_logits.hpp>
#include <corl/logprob/grpo_from_logits.hpp>
#include <corl/loss/kl.hpp>
#include <corl/loss/ppo_clip.hpp>

namespace {

template <class Logit>
struct Inputs {
  corl::index_t rows, vocab;
  std::vector<Logit> logits;
  std::vector<std::int32_t> targets;
  Inputs(corl::index_t r, corl::index_t v) : rows(r), vocab(v) {
    std::mt19937 gen(42);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    logits.resize(static_cast<std::size_t>(rows * vocab));
    for (auto& x : logits) x = corl::from_real<Logit>(normal(gen));
    targets.resize(static_cast<std::size_t>(rows));
    for (std::size_t i = 0; i < targets.size(); ++i) targets[i] = static_cast<std::int32_t>((i * 7919) % vocab);
  }
};

template <class Logit>
void set_counters(benchmark::State& state, const Inputs<Logit>& in, double passes_bytes_factor) {
  const double rows = static_cast<double>(in.rows) * static_cast<double>(state.iterations());
  state.counters["tokens_per_second"] = benchmark::Counter(rows, benchmark::Counter::kIsRate);
  state.SetBytesProcessed(static_cast<std::int64_t>(rows * static_cast<double>(in.vocab) * sizeof(Logit) *
                                                    passes_bytes_factor));
  state.counters["threads"] = static_cast<double>(state.range(2));
}

template <class Logit>
void BM_LogprobsForward(benchmark::State& state) {
  const Inputs<Logit> in(state.range(0), state.range(1));
  const int threads = static_cast<int>(state.range(2));
  std::vector<float> logp(static_cast<std::size_t>(in.rows)), ent(logp.size());
  for (auto _ : state) {
    corl::logprobs_from_logits<float>(std::span<const Logit>(in.logits), in.vocab,
                                      std::span<const std::int32_t>(in.targets), 1.0f, std::span<float>(logp),
                                      std::span<float>(ent), {}, threads);
    benchmark::DoNotOptimize(logp.data());
  }
  set_counters(state, in, 1.0);  // one read
}

template <class Logit>
void BM_GrpoLossFwdBwd(benchmark::State& state) {
  const Inputs<Logit> in(state.range(0), state.range(1));
  const int threads = static_cast<int>(state.range(2));
  const corl::index_t B = 4, T = in.rows / B;
  std::vector<float> old(static_cast<std::size_t>(in.rows), -10.0f), ref(old.size(), -10.2f);
  const std::vector<float> adv{1.0f, -1.0f, 0.5f, -0.5f}, w(4, 1.0f / static_cast<float>(in.rows));
  corl::GrpoLogitsBatch<Logit, float> batch;
  batch.logits = std::span<const Logit>(in.logits);
  batch.sequences = B;
  batch.seq_len = T;
  batch.vocab = in.vocab;
  batch.targets = std::span<const std::int32_t>(in.targets);
  batch.logp_old = std::span<const float>(old);
  batch.logp_ref = std::span<const float>(ref);
  batch.advantages = std::span<const float>(adv);
  batch.token_weight = std::span<const float>(w);
  batch.kl_coef = 0.04f;
  std::vector<Logit> grad(in.logits.size());
  for (auto _ : state) {
    const auto totals = corl::grpo_loss_from_logits<float>(batch, corl::PpoClip{}, corl::K3{}, std::span<Logit>(grad),
                                                           {}, {}, threads);
    benchmark::DoNotOptimize(totals.loss);
  }
  set_counters(state, in, 3.0);  // two reads of the logits + one write of the gradient
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 0}) b->Args({256, 32768, threads});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK_TEMPLATE(BM_LogprobsForward, float)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_LogprobsForward, corl::bfloat16)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_GrpoLossFwdBwd, float)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_GrpoLossFwdBwd, corl::bfloat16)->Apply(shapes);

BENCHMARK_MAIN();
