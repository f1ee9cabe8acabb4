// Rollout benchmark of the bundled model: sampled tokens per second for the two CoRL tasks (images under CFG, text
// answers), and the share of a training step spent in rollout versus teacher-forced log-probs + backward.
// One "step" is the unified CoRL step on `prompts` rows with group G: G images (CFG weight 5, 16 codes each) and G
// answers (T = 1, up to 48 tokens) per row, then score + backward of all of them. The model is the default SFT size
// (ModelConfig defaults, world vocabularies), randomly initialised unless ULM_R1_BENCH_CKPT names a checkpoint (an
// untrained model rarely emits <eos>, so its answers run to the 48-token limit: an upper bound on text cost).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>

#include "checkpoint.hpp"
#include "sft.hpp"

using namespace ulm;

namespace {

struct Fixture {
  WorldConfig world;
  Tokenizer tok{world};
  Model<float> model;
  std::vector<UnifiedRow> rows;
  explicit Fixture(int n_rows)
      : model(std::getenv("ULM_R1_BENCH_CKPT") ? load_checkpoint<float>(std::getenv("ULM_R1_BENCH_CKPT"))
                                               : Model<float>(model_config_for(world, tok), 1)) {
    GeneratorOptions g;
    g.rows = n_rows;
    rows = generate_rows(world, g);
  }
  std::vector<Sequence> t2i() const {
    std::vector<Sequence> out;
    for (const auto& r : rows) out.push_back(t2i_prompt(tok, r.prompt));
    return out;
  }
  std::vector<Sequence> qa() const {
    std::vector<Sequence> out;
    for (const auto& r : rows) out.push_back(understanding_prompt(tok, r.image, r.question));
    return out;
  }
};

SampleOptions image_options(std::uint64_t offset) {
  SampleOptions o;
  o.cfg_weight = 5.0;
  o.offset = offset;
  return o;
}
SampleOptions text_options(std::uint64_t offset) {
  SampleOptions o;
  o.max_new_tokens = 48;
  o.offset = offset;
  return o;
}

void BM_RolloutImages(benchmark::State& state) {
  const int prompts = static_cast<int>(state.range(0)), group = static_cast<int>(state.range(1));
  Fixture f(prompts);
  const auto p = f.t2i();
  std::int64_t tokens = 0;
  std::uint64_t offset = 0;
  for (auto _ : state) {
    const auto s = f.model.sample(p, Modality::image_out, group, image_options(offset += 64));
    for (const auto& x : s) tokens += static_cast<std::int64_t>(x.tokens.size());
  }
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RolloutImages)->Args({16, 8})->Unit(benchmark::kMillisecond);

void BM_RolloutText(benchmark::State& state) {
  const int prompts = static_cast<int>(state.range(0)), group = static_cast<int>(state.range(1));
  Fixture f(prompts);
  const auto p = f.qa();
  std::int64_t tokens = 0;
  std::uint64_t offset = 0;
  for (auto _ : state) {
    const auto s = f.model.sample(p, Modality::text, group, text_options(offset += 64));
    for (const auto& x : s) tokens += static_cast<std::int64_t>(x.tokens.size());
  }
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RolloutText)->Args({16, 8})->Unit(benchmark::kMillisecond);

/// The whole step, timed by phase: counters rollout_ms, logp_backward_ms and rollout_share.
void BM_UnifiedStep(benchmark::State& state) {
  const int prompts = static_cast<int>(state.range(0)), group = static_cast<int>(state.range(1));
  Fixture f(prompts);
  const auto pi = f.t2i();
  const auto pq = f.qa();
  std::vector<float> grad(f.model.parameters().size());
  double rollout_s = 0, train_s = 0;
  std::int64_t tokens = 0;
  std::uint64_t offset = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto images = f.model.sample(pi, Modality::image_out, group, image_options(offset += 64));
    const auto texts = f.model.sample(pq, Modality::text, group, text_options(offset += 64));
    const auto t1 = std::chrono::steady_clock::now();
    std::vector<ScoreRow> ri, rt;
    for (std::size_t i = 0; i < images.size(); ++i) {
      ri.push_back(ScoreRow{pi[i / static_cast<std::size_t>(group)], image_sequence(images[i].tokens, Modality::image_out)});
      rt.push_back(ScoreRow{pq[i / static_cast<std::size_t>(group)], text_sequence(texts[i].tokens)});
      tokens += static_cast<std::int64_t>(images[i].tokens.size() + texts[i].tokens.size());
    }
    const auto si = f.model.score(ri, ScoreOptions{1.0, 5.0});
    const auto st = f.model.score(rt, ScoreOptions{1.0, 1.0});
    std::vector<std::vector<float>> di(si.logp.size()), dt(st.logp.size());
    for (std::size_t i = 0; i < di.size(); ++i) di[i].assign(si.logp[i].size(), 1e-3f);
    for (std::size_t i = 0; i < dt.size(); ++i) dt[i].assign(st.logp[i].size(), 1e-3f);
    f.model.backward(si, di, grad);
    f.model.backward(st, dt, grad);
    const auto t2 = std::chrono::steady_clock::now();
    rollout_s += std::chrono::duration<double>(t1 - t0).count();
    train_s += std::chrono::duration<double>(t2 - t1).count();
    benchmark::DoNotOptimize(grad.data());
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["rollout_ms"] = 1e3 * rollout_s / n;
  state.counters["logp_backward_ms"] = 1e3 * train_s / n;
  state.counters["rollout_share"] = rollout_s / (rollout_s + train_s);
  state.counters["sampled_tokens_per_s"] = static_cast<double>(tokens) / rollout_s;
}
BENCHMARK(BM_UnifiedStep)->Args({16, 8})->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
