// Shared main for GPU tests: reports "skipped" and exits 77 (ctest SKIP_RETURN_CODE) when no CUDA device is present,
// otherwise runs the doctest cases of the file. Include this once, in place of a main, in each tests/gpu/<name>.cu.
#pragma once

#include <cstdio>

#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <corl/cuda/check.cuh>

int main(int argc, char** argv) {
  if (!corl::cuda::device_available()) {
    std::printf("skipped: no CUDA device present\n");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
