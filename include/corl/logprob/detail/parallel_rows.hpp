// corl/logprob/detail/parallel_rows.hpp — split rows [0, n) into contiguous chunks, one per std::thread.
// Each row's arithmetic is done by exactly one thread, in the same order whatever the thread count, so results are
// bitwise independent of `threads`. An exception thrown for a row is rethrown after all threads joined; when several
// chunks fail, the one of the lowest chunk wins, so the reported row is the lowest failing row (deterministic).
#pragma once

#include <algorithm>
#include <exception>
#include <thread>
#include <vector>

#include "corl/core/hd.hpp"

namespace corl::detail {

/// Resolves a requested thread count: 0 means std::thread::hardware_concurrency(); never more threads than rows.
inline int resolve_threads(int requested, index_t rows) {
  int t = requested > 0 ? requested : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (rows < t) t = static_cast<int>(std::max<index_t>(rows, 1));
  return t;
}

/// Calls body(begin, end) on contiguous chunks of [0, rows) from `threads` threads (0 = all cores).
template <class Body>
void parallel_rows(index_t rows, int threads, Body&& body) {
  const int t = resolve_threads(threads, rows);
  if (t <= 1) {
    body(index_t{0}, rows);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(t));
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(t));
  const index_t per = (rows + t - 1) / t;
  for (int i = 0; i < t; ++i) {
    const index_t begin = std::min<index_t>(rows, per * i), end = std::min<index_t>(rows, per * (i + 1));
    pool.emplace_back([&body, &errors, i, begin, end] {
      try {
        if (begin < end) body(begin, end);
      } catch (...) {
        errors[static_cast<std::size_t>(i)] = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace corl::detail
