// cli.cpp — see cli.hpp.
#include "cli.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <iostream>

#include "checkpoint.hpp"
#include "corl/core/error.hpp"
#include "evaluate.hpp"
#include "sft.hpp"

namespace ulm {

int dispatch(std::span<const Subcommand> commands, int argc, char** argv) {
  auto usage = [&](std::ostream& os) {
    os << "usage: ulm_r1 <command> [options]\ncommands:\n";
    std::size_t width = 0;
    for (const Subcommand& c : commands) width = std::max(width, c.name.size());
    for (const Subcommand& c : commands)
      os << "  " << c.name << std::string(width - c.name.size() + 2, ' ') << c.summary << "\n";
  };
  if (argc < 2) {
    usage(std::cerr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "help" || name == "--help" || name == "-h") {
    usage(std::cout);
    return 0;
  }
  for (const Subcommand& c : commands) {
    if (c.name != name) continue;
    const std::vector<std::string> args(argv + 2, argv + argc);
    try {
      return c.run(args);
    } catch (const corl::Error& e) {
      std::cerr << "ulm_r1 " << name << ": error: " << e.what() << "\n";
      return 1;
    }
  }
  std::cerr << "ulm_r1: unknown command '" << name << "'\n";
  usage(std::cerr);
  return 2;
}

Args::Args(std::string_view command, const std::vector<std::string>& args, const std::vector<std::string>& allowed)
    : command_(command) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& key = args[i];
    bool known = false, flag = false;
    for (const std::string& a : allowed) {
      if (a == key) known = true;
      if (a.size() == key.size() + 1 && a.back() == '!' && a.compare(0, key.size(), key) == 0) known = flag = true;
    }
    corl::require(known, "ulm_r1 ", command_, ": unknown option '", key, "'");
    if (flag) {
      values_.insert_or_assign(key, std::string(1, '1'));  // (a literal trips GCC 12 -Wrestrict)
      continue;
    }
    corl::require(i + 1 < args.size(), "ulm_r1 ", command_, ": option ", key, " needs a value");
    values_[key] = args[++i];
  }
}

std::string Args::get(const std::string& key, const std::string& fallback) const {
  const auto it = values_.find(key);
  return it == values_.end() ? fallback : it->second;
}

int Args::get_int(const std::string& key, int fallback) const {
  if (!has(key)) return fallback;
  const std::string& s = values_.at(key);
  std::size_t used = 0;
  long v = 0;
  try {
    v = std::stol(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  corl::require(used == s.size() && !s.empty() && v >= -2147483647L && v <= 2147483647L, "ulm_r1 ", command_, ": ",
                key, " = '", s, "', expected an integer");
  return static_cast<int>(v);
}

std::uint64_t Args::get_u64(const std::string& key, std::uint64_t fallback) const {
  if (!has(key)) return fallback;
  const std::string& s = values_.at(key);
  std::size_t used = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  corl::require(used == s.size() && !s.empty() && s[0] != '-', "ulm_r1 ", command_, ": ", key, " = '", s,
                "', expected a non-negative integer");
  return static_cast<std::uint64_t>(v);
}

double Args::get_double(const std::string& key, double fallback) const {
  if (!has(key)) return fallback;
  const std::string& s = values_.at(key);
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  corl::require(used == s.size() && !s.empty(), "ulm_r1 ", command_, ": ", key, " = '", s, "', expected a number");
  return v;
}

int cmd_sft(const std::vector<std::string>& args) {
  const Args a("sft", args,
               {"--steps", "--seed", "--out", "--threads", "--batch", "--lr", "--rows", "--quiet!", "--eval!",
                "--factored-codes!"});
  SftOptions o;
  o.steps = a.get_int("--steps", o.steps);
  o.seed = a.get_u64("--seed", o.seed);
  o.threads = a.get_int("--threads", o.threads);
  o.batch = a.get_int("--batch", o.batch);
  o.lr = a.get_double("--lr", o.lr);
  o.train_rows = a.get_int("--rows", o.train_rows);
  if (a.has("--quiet")) o.progress_every = 0;
  o.factored_codes = a.has("--factored-codes");
  const std::string out = a.get("--out", "sft.safetensors");
  std::cout << "sft: " << o.steps << " steps, batch " << o.batch << ", seed " << o.seed << ", " << o.threads
            << " threads" << std::endl;
  const SftResult r = run_sft(o, &std::cout);
  std::ostringstream loss;
  loss.precision(6);
  loss << r.losses.back();
  save_checkpoint(r.model, out,
                  {{"sft_steps", std::to_string(o.steps)}, {"sft_seed", std::to_string(o.seed)},
                   {"sft_final_loss", loss.str()}});
  std::cout << "sft: done in " << r.seconds << " s, final loss " << loss.str() << ", " << r.model.num_parameters()
            << " parameters, wrote " << out << std::endl;
  if (a.has("--eval")) {
    const EvalResult e = evaluate(r.model, EvalOptions{});
    std::cout << e.table() << dump_json(e.to_json()) << std::endl;
  }
  return 0;
}

int cmd_eval(const std::vector<std::string>& args) {
  const Args a("eval", args, {"--ckpt", "--json", "--rows", "--seed", "--cfg", "--split"});
  corl::require(a.has("--ckpt"), "option --ckpt <file.safetensors> is required");
  const Model<float> model = load_checkpoint<float>(a.get("--ckpt", ""));
  EvalOptions o;
  o.rows = a.get_int("--rows", o.rows);
  o.seed = a.get_u64("--seed", o.seed);
  o.cfg_weight = a.get_double("--cfg", o.cfg_weight);
  if (a.has("--split")) o.split = split_from_name(a.get("--split", ""));
  const EvalResult e = evaluate(model, o);
  std::cout << e.table();
  const std::string json = dump_json(e.to_json());
  std::cout << json << std::endl;
  if (a.has("--json")) {
    std::ofstream f(a.get("--json", ""));
    corl::require(static_cast<bool>(f), "ulm_r1 eval: cannot write '", a.get("--json", ""), "'");
    f << json << "\n";
  }
  return 0;
}

}  // namespace ulm
