// cli.hpp — the `ulm_r1` program's subcommand table and a small "--key value" argument parser.
//
// main.cpp lists the subcommands in one table of {name, summary, function}; adding a subcommand is one line there.
// A function receives the arguments after the subcommand name and returns the exit status; a corl::Error escaping it
// is printed as "ulm_r1 <name>: error: <message>" with status 1. Unknown options, missing values and malformed
// numbers are corl::Error naming the option.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ulm {

using CommandFn = int (*)(const std::vector<std::string>& args);

struct Subcommand {
  std::string_view name;
  std::string_view summary;
  CommandFn run;
};

/// Runs the subcommand named by argv[1] (prints usage for none, "help", "--help" or an unknown name).
int dispatch(std::span<const Subcommand> commands, int argc, char** argv);

/// Parses "--key value" pairs and bare "--flag"s; `allowed` lists the option names (with "--"), flags end in "!"
/// in that list (e.g. "--quiet!") and take no value.
class Args {
 public:
  Args(std::string_view command, const std::vector<std::string>& args, const std::vector<std::string>& allowed);
  bool has(const std::string& key) const { return values_.count(key) != 0; }
  std::string get(const std::string& key, const std::string& fallback) const;
  int get_int(const std::string& key, int fallback) const;
  std::uint64_t get_u64(const std::string& key, std::uint64_t fallback) const;
  double get_double(const std::string& key, double fallback) const;

 private:
  std::string command_;
  std::map<std::string, std::string> values_;
};

/// `ulm_r1 sft [--steps N] [--seed S] [--out ckpt.safetensors] [--threads T] [--batch B] [--lr X] [--quiet]`
int cmd_sft(const std::vector<std::string>& args);
/// `ulm_r1 eval --ckpt F [--json out.json] [--rows N] [--seed S] [--cfg W]`
int cmd_eval(const std::vector<std::string>& args);

}  // namespace ulm
