// parallel_shards.hpp — run a fixed set of shards on up to `threads` threads, deterministically.
//
// The work of a batch is cut into shards by the caller, in a way that depends only on the batch (never on the thread
// count); each shard writes only its own outputs, and the caller combines them in shard order. The result is then
// the same bits whatever `threads` is: threads only decide which thread runs which shard (worker w runs shards
// w, w + workers, ...). An exception thrown by a shard is rethrown on the calling thread (the one of the lowest
// shard index that threw, so the message does not depend on scheduling either).
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

namespace ulm {

template <class RunShard>
void parallel_shards(std::size_t shards, int threads, RunShard&& run_shard) {
  const std::size_t workers = std::min<std::size_t>(shards, static_cast<std::size_t>(std::max(1, threads)));
  if (workers <= 1) {
    for (std::size_t s = 0; s < shards; ++s) run_shard(s);
    return;
  }
  std::vector<std::exception_ptr> errors(shards);
  auto work = [&](std::size_t w) {
    for (std::size_t s = w; s < shards; s += workers) {
      try {
        run_shard(s);
      } catch (...) {
        errors[s] = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (std::size_t w = 1; w < workers; ++w) pool.emplace_back(work, w);
  work(0);  // the calling thread is worker 0
  for (auto& t : pool) t.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

/// Splits n items into min(n, shards) contiguous ranges of near-equal size; returns the shard boundaries
/// (size = number of shards + 1, first 0, last n).
inline std::vector<std::size_t> shard_bounds(std::size_t n, std::size_t shards) {
  const std::size_t k = std::max<std::size_t>(1, std::min(n, shards));
  std::vector<std::size_t> b(k + 1);
  for (std::size_t s = 0; s <= k; ++s) b[s] = n * s / k;
  return b;
}

/// Items [bounds[s], bounds[s + 1]) of `all`: shard s's part of a per-item table.
template <class T>
std::vector<T> shard_slice(const std::vector<T>& all, const std::vector<std::size_t>& bounds, std::size_t s) {
  return {all.begin() + static_cast<std::ptrdiff_t>(bounds[s]),
          all.begin() + static_cast<std::ptrdiff_t>(bounds[s + 1])};
}

}  // namespace ulm
