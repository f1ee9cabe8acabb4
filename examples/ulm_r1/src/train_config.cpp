// train_config.cpp — see train_config.hpp.
#include "train_config.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <utility>

#include "corl/core/error.hpp"

namespace ulm {

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

long long parse_int(const std::string& key, const std::string& v, const std::string& source) {
  long long x = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  corl::require(ec == std::errc{} && p == v.data() + v.size() && !v.empty(), source, ": ", key, " = '", v,
                "' is not an integer");
  return x;
}
double parse_double(const std::string& key, const std::string& v, const std::string& source) {
  char* end = nullptr;
  errno = 0;
  const double x = std::strtod(v.c_str(), &end);
  corl::require(!v.empty() && end == v.c_str() + v.size() && errno == 0 && std::isfinite(x), source, ": ", key,
                " = '", v, "' is not a finite number");
  return x;
}
bool parse_bool(const std::string& key, const std::string& v, const std::string& source) {
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  corl::fail(source, ": ", key, " = '", v, "' is not a boolean (true/false)");
}

constexpr std::pair<const char*, corl::LrSchedule> kSchedules[] = {
    {"constant", corl::LrSchedule::constant},
    {"linear", corl::LrSchedule::linear},
    {"cosine", corl::LrSchedule::cosine}};
corl::LrSchedule parse_schedule(const std::string& key, const std::string& v, const std::string& source) {
  for (const auto& [name, schedule] : kSchedules)
    if (v == name) return schedule;
  corl::fail(source, ": ", key, " = '", v, "' is not a learning-rate schedule (constant, linear or cosine)");
}
std::string schedule_name(corl::LrSchedule s) {
  for (const auto& [name, schedule] : kSchedules)
    if (s == schedule) return name;
  return "constant";
}

struct Field {
  std::string key;
  std::function<void(TrainConfig&, const std::string&, const std::string&)> set;
  std::function<std::string(const TrainConfig&)> get;
};

template <class T>
std::string text_of(const T& v) {
  std::ostringstream os;
  os.precision(10);
  os << v;
  return os.str();
}

std::vector<Field> fields() {
  std::vector<Field> f;
  auto add_int = [&](std::string key, auto member) {
    f.push_back({key,
                 [key, member](TrainConfig& c, const std::string& v, const std::string& s) {
                   c.*member = static_cast<std::remove_reference_t<decltype(c.*member)>>(parse_int(key, v, s));
                 },
                 [member](const TrainConfig& c) { return text_of(c.*member); }});
  };
  auto add_double = [&](std::string key, auto member) {
    f.push_back({key, [key, member](TrainConfig& c, const std::string& v, const std::string& s) {
                   c.*member = parse_double(key, v, s);
                 },
                 [member](const TrainConfig& c) { return text_of(c.*member); }});
  };
  auto add_string = [&](std::string key, auto member) {
    f.push_back({key, [member](TrainConfig& c, const std::string& v, const std::string&) { c.*member = v; },
                 [member](const TrainConfig& c) { return c.*member; }});
  };
  add_int("seed", &TrainConfig::seed);
  add_string("out_dir", &TrainConfig::out_dir);
  add_string("sft.ckpt", &TrainConfig::sft_ckpt);
  add_int("sft.steps", &TrainConfig::sft_steps);
  add_string("unified.ckpt", &TrainConfig::unified_ckpt);
  add_int("sft.batch", &TrainConfig::sft_batch);
  add_double("sft.lr", &TrainConfig::sft_lr);
  add_int("model.factored_codes", &TrainConfig::model_factored_codes);
  add_int("threads", &TrainConfig::threads);
  add_int("data.train_rows", &TrainConfig::train_rows);
  for (auto [name, stage] : {std::pair{"unified", &TrainConfig::unified}, std::pair{"refined_t2i", &TrainConfig::refined_t2i},
                             std::pair{"refined_mc", &TrainConfig::refined_mc}, std::pair{"refined_oe", &TrainConfig::refined_oe}}) {
    const std::string p = name;
    auto add_stage_int = [&](const std::string& k, int TrainStageSettings::*m) {
      const std::string key = p + "." + k;
      f.push_back({key, [key, stage, m](TrainConfig& c, const std::string& v, const std::string& s) {
                     (c.*stage).*m = static_cast<int>(parse_int(key, v, s));
                   },
                   [stage, m](const TrainConfig& c) { return text_of((c.*stage).*m); }});
    };
    auto add_stage_double = [&](const std::string& k, double TrainStageSettings::*m) {
      const std::string key = p + "." + k;
      f.push_back({key, [key, stage, m](TrainConfig& c, const std::string& v, const std::string& s) {
                     (c.*stage).*m = parse_double(key, v, s);
                   },
                   [stage, m](const TrainConfig& c) { return text_of((c.*stage).*m); }});
    };
    add_stage_int("steps", &TrainStageSettings::steps);
    add_stage_int("rows_per_step", &TrainStageSettings::rows_per_step);
    add_stage_int("group_size", &TrainStageSettings::group_size);
    add_stage_double("lr", &TrainStageSettings::learning_rate);
    add_stage_double("beta", &TrainStageSettings::beta);
    add_stage_double("max_grad_norm", &TrainStageSettings::max_grad_norm);
    add_stage_double("entropy_coef", &TrainStageSettings::entropy_coef);
    {
      const std::string key = p + ".lr_schedule";
      f.push_back({key, [key, stage](TrainConfig& c, const std::string& v, const std::string& s) {
                     (c.*stage).lr_schedule = parse_schedule(key, v, s);
                   },
                   [stage](const TrainConfig& c) { return schedule_name((c.*stage).lr_schedule); }});
    }
    add_stage_int("warmup_steps", &TrainStageSettings::warmup_steps);
    add_stage_int("checkpoint_every", &TrainStageSettings::checkpoint_every);
    if (p == "unified") {
      add_stage_double("weight_t2i", &TrainStageSettings::weight_t2i);
      add_stage_double("weight_mm2t", &TrainStageSettings::weight_mm2t);
    }
  }
  add_double("merge.qa_alpha", &TrainConfig::qa_merge_alpha);
  add_double("reward.cycle", &TrainConfig::reward_cycle);
  add_double("reward.tim", &TrainConfig::reward_tim);
  add_double("reward.lambda", &TrainConfig::reward_lambda);
  add_int("reward.caption_max_tokens", &TrainConfig::caption_max_tokens);
  add_double("sampling.image_temperature", &TrainConfig::image_temperature);
  add_double("sampling.text_temperature", &TrainConfig::text_temperature);
  add_double("sampling.cfg_weight", &TrainConfig::cfg_weight);
  add_int("sampling.max_answer_tokens", &TrainConfig::max_answer_tokens);
  add_int("eval.rows", &TrainConfig::eval_rows);
  add_int("eval.seed", &TrainConfig::eval_seed);
  add_int("eval.sheet_prompts", &TrainConfig::sheet_prompts);
  f.push_back({"ablation", [](TrainConfig& c, const std::string& v, const std::string& s) {
                 c.ablation = parse_bool("ablation", v, s);
               },
               [](const TrainConfig& c) { return std::string(c.ablation ? "true" : "false"); }});
  return f;
}

}  // namespace

std::vector<std::string> train_config_keys() {
  std::vector<std::string> keys;
  for (const auto& f : fields()) keys.push_back(f.key);
  return keys;
}

void set_train_config_value(TrainConfig& config, const std::string& key, const std::string& value,
                            const std::string& source) {
  for (const auto& f : fields()) {
    if (f.key == key) {
      f.set(config, trim(value), source);
      return;
    }
  }
  std::string known;
  for (const auto& k : train_config_keys()) known += (known.empty() ? "" : ", ") + k;
  corl::fail(source, ": unknown key '", key, "' (known keys: ", known, ")");
}

void read_train_config_file(TrainConfig& config, const std::string& path) {
  std::ifstream in(path);
  corl::require(static_cast<bool>(in), "ulm_r1 train: cannot open config file '", path, "'");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    const auto hash = line.find('#');
    if (hash != std::string::npos) line = line.substr(0, hash);
    line = trim(line);
    if (line.empty()) continue;
    const auto eq = line.find('=');
    const std::string source = path + ":" + std::to_string(n);
    corl::require(eq != std::string::npos, source, ": expected 'key = value', got '", line, "'");
    set_train_config_value(config, trim(line.substr(0, eq)), line.substr(eq + 1), source);
  }
}

std::map<std::string, std::string> train_config_values(const TrainConfig& config) {
  std::map<std::string, std::string> out;
  for (const auto& f : fields()) out[f.key] = f.get(config);
  return out;
}

namespace {
void check_stage(const TrainStageSettings& s, const std::string& name) {
  const std::string p = "ulm_r1 train: " + name + ".";
  corl::require(s.steps >= 0, p, "steps = ", s.steps, ", expected >= 0");
  corl::require(s.rows_per_step >= 1, p, "rows_per_step = ", s.rows_per_step, ", expected >= 1");
  corl::require(s.group_size >= 2 && s.group_size <= 256, p, "group_size = ", s.group_size, ", expected 2..256");
  corl::require(s.learning_rate >= 0 && s.learning_rate <= 1, p, "lr = ", s.learning_rate, ", expected 0..1");
  corl::require(s.beta >= 0, p, "beta = ", s.beta, ", expected >= 0");
  corl::require(s.max_grad_norm >= 0, p, "max_grad_norm = ", s.max_grad_norm, ", expected >= 0 (0 = off)");
  corl::require(std::isfinite(s.entropy_coef) && s.entropy_coef >= 0, p, "entropy_coef = ", s.entropy_coef,
                ", expected a finite value >= 0 (0 = off)");
  corl::require(s.warmup_steps >= 0 && s.warmup_steps <= s.steps, p, "warmup_steps = ", s.warmup_steps,
                ", expected 0..steps = ", s.steps);
  corl::require(s.checkpoint_every >= 0, p, "checkpoint_every = ", s.checkpoint_every,
                ", expected >= 0 (0 = only at the end)");
  corl::require(s.weight_t2i >= 0 && s.weight_mm2t >= 0, p, "weight_t2i / weight_mm2t = ", s.weight_t2i, " / ",
                s.weight_mm2t, ", expected >= 0");
}
}  // namespace

void TrainConfig::validate() const {
  constexpr const char* p = "ulm_r1 train: ";
  corl::require(!out_dir.empty(), p, "out_dir is empty, expected a directory");
  corl::require(sft_ckpt.empty() || std::ifstream(sft_ckpt).good(), p, "sft.ckpt = '", sft_ckpt,
                "': file not found");
  corl::require(sft_ckpt.empty() ? sft_steps >= 1 : true, p, "sft.steps = ", sft_steps, ", expected >= 1");
  corl::require(unified_ckpt.empty() || std::ifstream(unified_ckpt).good(), p, "unified.ckpt = '", unified_ckpt,
                "': file not found");
  corl::require(sft_batch >= 1, p, "sft.batch = ", sft_batch, ", expected >= 1");
  corl::require(sft_lr > 0 && sft_lr < 1, p, "sft.lr = ", sft_lr, ", expected in (0, 1)");
  corl::require(model_factored_codes == 0 || model_factored_codes == 1, p, "model.factored_codes = ",
                model_factored_codes, ", expected 0 (plain image-code tables) or 1 (factored)");
  corl::require(threads >= 1 && threads <= 256, p, "threads = ", threads, ", expected 1..256");
  corl::require(train_rows >= 6, p, "data.train_rows = ", train_rows, ", expected >= 6 (one per category)");
  check_stage(unified, "unified");
  check_stage(refined_t2i, "refined_t2i");
  check_stage(refined_mc, "refined_mc");
  check_stage(refined_oe, "refined_oe");
  corl::require(qa_merge_alpha >= 0 && qa_merge_alpha <= 1, p, "merge.qa_alpha = ", qa_merge_alpha,
                ", expected 0..1");
  corl::require(reward_cycle >= 0 && reward_tim >= 0 && reward_lambda >= 0, p,
                "reward weights must be >= 0 (reward.cycle = ", reward_cycle, ", reward.tim = ", reward_tim,
                ", reward.lambda = ", reward_lambda, ")");
  corl::require(caption_max_tokens >= 1 && caption_max_tokens <= 64, p, "reward.caption_max_tokens = ",
                caption_max_tokens, ", expected 1..64");
  corl::require(image_temperature > 0 && text_temperature > 0, p,
                "sampling temperatures must be > 0 (RL needs log-probs): image ", image_temperature, ", text ",
                text_temperature);
  corl::require(cfg_weight >= 0, p, "sampling.cfg_weight = ", cfg_weight, ", expected >= 0");
  corl::require(max_answer_tokens >= 4 && max_answer_tokens <= 128, p, "sampling.max_answer_tokens = ",
                max_answer_tokens, ", expected 4..128");
  corl::require(eval_rows >= 6, p, "eval.rows = ", eval_rows, ", expected >= 6 (one per category)");
  corl::require(sheet_prompts >= 1 && sheet_prompts <= 64, p, "eval.sheet_prompts = ", sheet_prompts,
                ", expected 1..64");
}

const TrainStageSettings& TrainConfig::stage_settings(const std::string& name) const {
  const TrainStageSettings* s = name == "unified"       ? &unified
                                : name == "refined_t2i" ? &refined_t2i
                                : name == "refined_mc"  ? &refined_mc
                                : name == "refined_oe"  ? &refined_oe
                                                        : nullptr;
  corl::require(s != nullptr, "ulm::TrainConfig: unknown stage '", name, "'");
  return *s;
}

corl::StageConfig TrainConfig::stage_config(const std::string& name) const {
  const TrainStageSettings* s = &stage_settings(name);
  corl::StageConfig c;
  c.name = name;
  c.group_size = s->group_size;
  c.rows_per_step = s->rows_per_step;
  c.steps = s->steps;
  c.learning_rate = s->learning_rate;
  c.lr_schedule = s->lr_schedule;
  c.warmup_steps = s->warmup_steps;
  c.beta = s->beta;
  c.max_grad_norm = s->max_grad_norm;
  c.checkpoint_every = s->checkpoint_every;
  c.task_weights = name == "unified" ? std::vector<double>{s->weight_t2i, s->weight_mm2t} : std::vector<double>{1.0};
  return c;
}

}  // namespace ulm
