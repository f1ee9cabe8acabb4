// sft.cpp — see sft.hpp.
#include "sft.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>

#include "corl/core/rng.hpp"
#include "corl/optim/adamw.hpp"
#include "parallel_shards.hpp"

namespace ulm {

Sequence t2i_prompt(const Tokenizer& tok, std::string_view prompt) {
  Sequence s{Token{Tokenizer::kBos, Modality::text}};
  for (int id : tok.encode(prompt)) s.push_back(Token{id, Modality::text});
  s.push_back(Token{Tokenizer::kImageBegin, Modality::text});
  return s;
}

Sequence understanding_prompt(const Tokenizer& tok, const Grid& image, std::string_view instruction) {
  Sequence s{Token{Tokenizer::kBos, Modality::text}, Token{Tokenizer::kImageBegin, Modality::text}};
  for (int code : image) s.push_back(Token{code, Modality::image_in});
  s.push_back(Token{Tokenizer::kImageEnd, Modality::text});
  for (int id : tok.encode(instruction)) s.push_back(Token{id, Modality::text});
  return s;
}

Sequence answer_completion(const Tokenizer& tok, std::string_view answer) {
  Sequence s;
  for (int id : tok.encode(answer)) s.push_back(Token{id, Modality::text});
  s.push_back(Token{Tokenizer::kEos, Modality::text});
  return s;
}

Sequence image_completion(const Grid& image) { return image_sequence(image, Modality::image_out); }

ModelConfig model_config_for(const WorldConfig& world, const Tokenizer& tok, ModelConfig base, bool factored_codes) {
  base.text_vocab = tok.vocab_size();
  base.image_vocab = world.codebook_size();
  base.image_tokens = world.num_cells();
  base.pad_id = Tokenizer::kPad;
  base.bos_id = Tokenizer::kBos;
  base.eos_id = Tokenizer::kEos;
  base.image_begin_id = Tokenizer::kImageBegin;
  base.max_seq = std::max(base.max_seq, world.num_cells() + 96);
  base.code_colours = factored_codes ? world.num_colours() : 0;
  base.code_shapes = factored_codes ? world.num_shapes() : 0;
  base.validate();
  return base;
}

ScoreRow t2i_example(const Tokenizer& tok, const UnifiedRow& row) {
  return ScoreRow{t2i_prompt(tok, row.prompt), image_completion(row.image)};
}
ScoreRow qa_example(const Tokenizer& tok, const UnifiedRow& row) {
  return ScoreRow{understanding_prompt(tok, row.image, row.question), answer_completion(tok, row.solution)};
}
ScoreRow caption_example(const Tokenizer& tok, const UnifiedRow& row) {
  return ScoreRow{understanding_prompt(tok, row.image, kCaptionInstruction), answer_completion(tok, row.caption)};
}

SftResult run_sft(const SftOptions& o, std::ostream* progress) {
  corl::require(o.steps >= 1, "ulm::run_sft: steps = ", o.steps, ", expected >= 1");
  corl::require(o.batch >= 1, "ulm::run_sft: batch = ", o.batch, ", expected >= 1");
  corl::require(o.shards >= 1 && o.shards <= o.batch, "ulm::run_sft: shards = ", o.shards, ", expected in [1, batch]");
  corl::require(o.train_rows >= 1, "ulm::run_sft: train_rows = ", o.train_rows, ", expected >= 1");
  const double share_sum = o.t2i_share + o.qa_share + o.caption_share;
  corl::require(o.t2i_share >= 0 && o.qa_share >= 0 && o.caption_share >= 0 && share_sum > 0,
                "ulm::run_sft: task shares must be >= 0 with a positive sum");
  const auto t0 = std::chrono::steady_clock::now();
  const Tokenizer tok(o.world);
  GeneratorOptions gen;
  gen.seed = o.seed;
  gen.rows = o.train_rows;
  gen.split = Split::train;
  const std::vector<UnifiedRow> rows = generate_rows(o.world, gen);

  SftResult result{Model<float>(model_config_for(o.world, tok, o.model, o.factored_codes), o.seed), {}, 0};
  Model<float>& model = result.model;
  const ModelConfig& mc = model.config();
  const std::size_t n_params = model.parameters().size();
  std::vector<float> grad(n_params), m(n_params, 0.0f), v(n_params, 0.0f);
  std::vector<std::vector<float>> shard_grads(static_cast<std::size_t>(o.shards), std::vector<float>(n_params));
  corl::AdamWConfig adam;
  adam.weight_decay = o.weight_decay;
  adam.beta2 = 0.99;

  for (int step = 0; step < o.steps; ++step) {
    // the batch: a pure function of (seed, step)
    corl::CounterRng rng(o.seed ^ 0x5f7a11ull, static_cast<std::uint32_t>(step));
    std::vector<ScoreRow> batch;
    batch.reserve(static_cast<std::size_t>(o.batch));
    for (int b = 0; b < o.batch; ++b) {
      const UnifiedRow& row = rows[rng.below(rows.size())];
      const double u = rng.uniform() * share_sum;
      if (u < o.t2i_share) {
        ScoreRow ex = t2i_example(tok, row);
        if (rng.uniform() < o.uncond_prob) ex.prompt = unconditional_prompt(ex.prompt, mc);
        batch.push_back(std::move(ex));
      } else if (u < o.t2i_share + o.qa_share) {
        batch.push_back(qa_example(tok, row));
      } else {
        batch.push_back(caption_example(tok, row));
      }
    }
    // token counts per shard, so that the summed gradient is that of the batch mean
    std::vector<std::vector<ScoreRow>> shards(static_cast<std::size_t>(o.shards));
    std::vector<double> shard_tokens(shards.size(), 0.0);
    double total_tokens = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const std::size_t s = i % shards.size();
      shard_tokens[s] += static_cast<double>(batch[i].completion.size());
      total_tokens += static_cast<double>(batch[i].completion.size());
      shards[s].push_back(std::move(batch[i]));
    }
    std::vector<double> shard_loss(shards.size(), 0.0);
    auto run_shard = [&](std::size_t s) {
      std::fill(shard_grads[s].begin(), shard_grads[s].end(), 0.0f);
      const float scale = static_cast<float>(shard_tokens[s] / total_tokens);
      shard_loss[s] = static_cast<double>(model.cross_entropy(shards[s], shard_grads[s], scale)) * shard_tokens[s] /
                      total_tokens;
    };
    parallel_shards(shards.size(), o.threads, run_shard);
    std::fill(grad.begin(), grad.end(), 0.0f);
    double loss = 0;
    for (std::size_t s = 0; s < shards.size(); ++s) {
      for (std::size_t i = 0; i < n_params; ++i) grad[i] += shard_grads[s][i];
      loss += shard_loss[s];
    }
    clip_grad_norm<float>(grad, o.clip_norm);
    // schedule: linear warm-up, cosine decay to final_lr_fraction * lr
    double lr = o.lr;
    if (step < o.warmup_steps) {
      lr = o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
    } else {
      const double t = static_cast<double>(step - o.warmup_steps) /
                       std::max(1.0, static_cast<double>(o.steps - o.warmup_steps));
      lr = o.lr * (o.final_lr_fraction + (1 - o.final_lr_fraction) * 0.5 * (1 + std::cos(3.14159265358979 * t)));
    }
    adam.lr = lr;
    const auto scalars = corl::adamw_scalars<float>(adam, step + 1);
    corl::adamw_update<float>(model.parameters(), grad, m, v, scalars);
    result.losses.push_back(loss);

    if (progress && o.progress_every > 0 && ((step + 1) % o.progress_every == 0 || step + 1 == o.steps)) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double eta = elapsed / (step + 1) * (o.steps - step - 1);
      *progress << "sft step " << std::setw(5) << step + 1 << "/" << o.steps << "  loss " << std::fixed
                << std::setprecision(4) << loss << "  lr " << std::scientific << std::setprecision(2) << lr
                << std::fixed << std::setprecision(1) << "  elapsed " << elapsed << " s  eta " << eta << " s"
                << std::endl;
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace ulm
