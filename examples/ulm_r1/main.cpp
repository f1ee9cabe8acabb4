// main.cpp — the `ulm_r1` program: one table of subcommands (cli.hpp). To add one, add a line to kCommands.
#include <iterator>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "cli.hpp"
#include "train_run.hpp"

namespace {
constexpr ulm::Subcommand kCommands[] = {
    {"sft", "supervised warm-up on the world's train split; writes a safetensors checkpoint", ulm::cmd_sft},
    {"eval", "world-GenEval and QA accuracy (mc, oe) of a checkpoint on the test split (--split train: training specs)", ulm::cmd_eval},
    {"train", "CoRL: SFT -> unified RL -> refined RL (T2I, MC, OE; QA merged) -> evaluation and report", ulm::cmd_train},
};
}  // namespace

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // The model allocates its KV caches and activations afresh for every batch (0.1-2 MiB blocks). glibc would serve
  // them with mmap and hand them back at every free, so each batch paid page faults again (measured: 1.4 s of system
  // time in 20 RL steps, 13% of a step on 2 threads). Keep such blocks on the heap and freed memory in the process.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
  return ulm::dispatch(kCommands, argc, argv);
}
