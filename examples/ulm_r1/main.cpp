// main.cpp — the `ulm_r1` program: one table of subcommands (cli.hpp). To add one, add a line to kCommands.
#include <iterator>

#include "cli.hpp"
#include "train_run.hpp"

namespace {
constexpr ulm::Subcommand kCommands[] = {
    {"sft", "supervised warm-up on the world's train split; writes a safetensors checkpoint", ulm::cmd_sft},
    {"eval", "world-GenEval and QA accuracy (mc, oe) of a checkpoint on the test split (--split train: training specs)", ulm::cmd_eval},
    {"train", "CoRL: SFT -> unified RL -> refined RL (T2I, MC, OE; QA merged) -> evaluation and report", ulm::cmd_train},
};
}  // namespace

int main(int argc, char** argv) { return ulm::dispatch(kCommands, argc, argv); }
