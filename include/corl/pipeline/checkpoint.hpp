// corl/pipeline/checkpoint.hpp — the pipeline's checkpoint file: everything needed to resume a stage at a step.
//
// Contents: stage index and name, the number of steps already taken in it, the policy's flat parameters, the frozen
// reference policy's parameters (stages with beta > 0) and the optimizer's state (an opaque byte string the optimizer
// wrote). Layout (little-endian host order; the file is for resuming on the same kind of machine):
//   "CORLCKPT" u32 version=1 u32 sizeof(Real) i64 stage i64 step  u64 len name
//   u64 n params[n]  u64 m ref[m] (m = 0: no reference)  u64 k optimizer_state[k]
// Sampling, row selection and rewards are counter-based (corl/pipeline/schedule.hpp), so no RNG state is stored.
// read_checkpoint throws corl::Error naming the file and what was wrong (missing, truncated, wrong magic / precision).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/core/hd.hpp"

namespace corl {

template <class Real>
struct PipelineCheckpoint {
  index_t stage = 0;
  std::string stage_name;
  index_t step = 0;  ///< optimizer steps already taken in this stage
  std::vector<Real> parameters;
  std::vector<Real> reference;  ///< empty when the stage uses no reference policy
  std::string optimizer_state;
};

namespace detail {
inline constexpr char kCheckpointMagic[8] = {'C', 'O', 'R', 'L', 'C', 'K', 'P', 'T'};

template <class T>
void write_pod(std::ofstream& os, const T& v) {
  os.write(reinterpret_cast<const char*>(&v), sizeof(T));
}
template <class T>
void read_pod(std::ifstream& is, T& v, const std::string& path, const char* what) {
  is.read(reinterpret_cast<char*>(&v), sizeof(T));
  require(static_cast<bool>(is), "corl::read_checkpoint: '", path, "' is truncated while reading ", what);
}
}  // namespace detail

template <class Real>
void write_checkpoint(const std::string& path, const PipelineCheckpoint<Real>& c) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream os(tmp, std::ios::binary | std::ios::trunc);
    require(static_cast<bool>(os), "corl::write_checkpoint: cannot open '", tmp, "' for writing");
    os.write(detail::kCheckpointMagic, 8);
    detail::write_pod(os, std::uint32_t{1});
    detail::write_pod(os, static_cast<std::uint32_t>(sizeof(Real)));
    detail::write_pod(os, static_cast<std::int64_t>(c.stage));
    detail::write_pod(os, static_cast<std::int64_t>(c.step));
    detail::write_pod(os, static_cast<std::uint64_t>(c.stage_name.size()));
    os.write(c.stage_name.data(), static_cast<std::streamsize>(c.stage_name.size()));
    for (const std::vector<Real>* v : {&c.parameters, &c.reference}) {
      detail::write_pod(os, static_cast<std::uint64_t>(v->size()));
      os.write(reinterpret_cast<const char*>(v->data()), static_cast<std::streamsize>(v->size() * sizeof(Real)));
    }
    detail::write_pod(os, static_cast<std::uint64_t>(c.optimizer_state.size()));
    os.write(c.optimizer_state.data(), static_cast<std::streamsize>(c.optimizer_state.size()));
    require(static_cast<bool>(os), "corl::write_checkpoint: writing '", tmp, "' failed (disk full?)");
  }
  // write-then-rename: a crash never leaves a half-written checkpoint under the real name
  require(std::rename(tmp.c_str(), path.c_str()) == 0, "corl::write_checkpoint: cannot rename '", tmp, "' to '", path,
          "'");
}

template <class Real>
PipelineCheckpoint<Real> read_checkpoint(const std::string& path) {
  std::ifstream is(path, std::ios::binary);
  require(static_cast<bool>(is), "corl::read_checkpoint: cannot open '", path, "' (missing file?)");
  char magic[8];
  is.read(magic, 8);
  require(static_cast<bool>(is) && std::memcmp(magic, detail::kCheckpointMagic, 8) == 0, "corl::read_checkpoint: '",
          path, "' is not a corl pipeline checkpoint (bad magic)");
  std::uint32_t version = 0, real_size = 0;
  detail::read_pod(is, version, path, "version");
  require(version == 1, "corl::read_checkpoint: '", path, "' has version ", version, ", expected 1");
  detail::read_pod(is, real_size, path, "precision");
  require(real_size == sizeof(Real), "corl::read_checkpoint: '", path, "' stores ", real_size,
          "-byte reals, expected ", sizeof(Real), " (float vs double)");
  PipelineCheckpoint<Real> c;
  std::int64_t stage = 0, step = 0;
  detail::read_pod(is, stage, path, "stage");
  detail::read_pod(is, step, path, "step");
  c.stage = stage;
  c.step = step;
  std::uint64_t len = 0;
  detail::read_pod(is, len, path, "stage name length");
  require(len < (1u << 20), "corl::read_checkpoint: '", path, "' stage name length ", len, " is implausible");
  c.stage_name.resize(len);
  is.read(c.stage_name.data(), static_cast<std::streamsize>(len));
  for (std::vector<Real>* v : {&c.parameters, &c.reference}) {
    std::uint64_t n = 0;
    detail::read_pod(is, n, path, "array size");
    require(n < (std::uint64_t(1) << 34), "corl::read_checkpoint: '", path, "' array size ", n, " is implausible");
    v->resize(n);
    is.read(reinterpret_cast<char*>(v->data()), static_cast<std::streamsize>(n * sizeof(Real)));
    require(static_cast<bool>(is), "corl::read_checkpoint: '", path, "' is truncated in the parameters");
  }
  std::uint64_t k = 0;
  detail::read_pod(is, k, path, "optimizer state size");
  require(k < (std::uint64_t(1) << 36), "corl::read_checkpoint: '", path, "' optimizer state size is implausible");
  c.optimizer_state.resize(k);
  is.read(c.optimizer_state.data(), static_cast<std::streamsize>(k));
  require(static_cast<bool>(is), "corl::read_checkpoint: '", path, "' is truncated in the optimizer state");
  return c;
}

/// Copies checkpoint values (PipelineCheckpoint::parameters or ::reference) into `policy.parameters()`. Throws
/// corl::Error "<what> has N values, the policy has M parameters" unless the sizes agree.
template <class P, class Real>
void load_policy_parameters(P& policy, const std::vector<Real>& values, const std::string& what) {
  auto params = policy.parameters();
  require(params.size() == values.size(), what, " has ", values.size(), " values, the policy has ", params.size(),
          " parameters");
  std::copy(values.begin(), values.end(), params.begin());
}

}  // namespace corl
