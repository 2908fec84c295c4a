// Data-parallel collectives for the trainer (torchrun-style environment, c10d process groups).
//
// Typical use, one process per rank (launched by torchrun or any launcher that sets RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT):
//
//   absl::StatusOr<DistEnv> env = DistEnv::FromEnv();
//   absl::StatusOr<std::unique_ptr<Distributed>> dist = Distributed::Create(*env, torch::kCPU);
//   (*dist)->BroadcastTensors(model->parameters());          // same start everywhere
//   for (...) {
//     loss = sum of per-sample losses over this rank's shard / global batch size;
//     loss.backward();
//     (*dist)->AllreduceGradients(model->parameters());      // sum over ranks = global mean
//     optimizer.step();
//   }
// (check every returned Status).
//
// Backends: ProcessGroupGloo on CPU. For a CUDA device, ProcessGroupNCCL when the library was
// built against a CUDA LibTorch (NINO_WITH_CUDA) whose nccl.h is on the include path;
// otherwise Gloo, which also handles CUDA tensors (staged through host memory, slower).
//
// Collectives are matched by call order: every rank must make the same sequence of calls with
// the same tensor layout (count, dtypes, sizes), bucket_bytes and root. AllreduceGradients and
// BroadcastTensors verify the layout with one tiny extra allreduce per call and return
// FAILED_PRECONDITION on every rank when the ranks disagree (instead of mixing up data or
// hanging); see set_check_layout.
//
// Errors never escape as exceptions: c10d/Gloo/NCCL failures come back as a Status that names
// the operation, the rank and the master address. DEADLINE_EXCEEDED for timeouts (peers that
// never arrive, a collective that does not complete within `timeout`), UNAVAILABLE for other
// communication failures (port already in use, a peer closed its connection, ...).
// After a failed collective the process group should be considered broken.
//
// Not thread-safe: call one method at a time (the usual one-training-thread-per-rank setup).
#ifndef NINO_TRAINER_DIST_DISTRIBUTED_H_
#define NINO_TRAINER_DIST_DISTRIBUTED_H_

#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace nino::trainer {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;

  // Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. An unset variable keeps the
  // single-process default above. INVALID_ARGUMENT, naming the variable, for a value that is
  // not a decimal integer (including the empty string), WORLD_SIZE < 1, RANK or LOCAL_RANK
  // < 0, RANK >= WORLD_SIZE, MASTER_PORT outside [1, 65535] or an empty MASTER_ADDR.
  static absl::StatusOr<DistEnv> FromEnv();

  // "rank R/W (local L), master A:P", for logs and error messages.
  std::string DebugString() const;
};

class Distributed {
 public:
  enum class Op { kSum, kMin, kMax };

  // world_size 1: no process group and no network; every call below is a cheap no-op.
  // Otherwise: a c10d TCPStore (hosted by rank 0 on master_port, all interfaces; the others
  // connect to master_addr:master_port) for rendezvous, then the process group. Returns when
  // all ranks have joined. `timeout` bounds the rendezvous and every later collective.
  // The Gloo transport binds to GLOO_SOCKET_IFNAME if set, to 127.0.0.1 when master_addr is a
  // loopback address, else to the address of this host's name (as torch.distributed does).
  // INVALID_ARGUMENT for a bad env; UNAVAILABLE (e.g. the port is in use on rank 0) or
  // DEADLINE_EXCEEDED (peers missing until `timeout`) naming master_addr:master_port.
  static absl::StatusOr<std::unique_ptr<Distributed>> Create(
      const DistEnv& env, torch::Device device,
      std::chrono::milliseconds timeout = std::chrono::seconds(120));

  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool is_main() const { return env_.rank == 0; }
  const DistEnv& env() const { return env_; }
  // "gloo", "nccl" or "none" (world size 1).
  const char* backend_name() const;

  // Sums every parameter's .grad() over ranks (in place), then multiplies it by `scale`.
  // Gradients are packed into flat buckets of at most bucket_bytes (default 25 MiB) in
  // parameter order (a new bucket also starts where the dtype or device changes; a gradient
  // larger than a bucket is split across buckets), one allreduce per bucket, and unpacked
  // back (through one reusable scratch buffer per dtype/device, at most bucket_bytes). A bucket
  // that is a single piece of one contiguous gradient is reduced in place without copies.
  // Parameters without a grad get a zero grad on this rank, so that all ranks agree on the layout
  // (note: an optimizer then steps them with a zero gradient, unlike a single process that skips
  // undefined grads). World size 1: no communication, undefined grads stay undefined; defined grads
  // are multiplied by `scale` when it is not 1 (so the result is the same for every world size).
  // INVALID_ARGUMENT for an undefined parameter, a sparse gradient or bucket_bytes <= 0.
  absl::Status AllreduceGradients(const std::vector<torch::Tensor>& params, double scale = 1.0,
                                  int64_t bucket_bytes = int64_t{25} << 20);

  // Copies root's tensors into everyone's (in place, also for leaf tensors that require grad;
  // flat bucketed broadcast with the same bucketing as AllreduceGradients).
  // INVALID_ARGUMENT for an undefined tensor or root outside [0, world_size).
  absl::Status BroadcastTensors(const std::vector<torch::Tensor>& tensors, int root = 0,
                                int64_t bucket_bytes = int64_t{25} << 20);

  // Reduces in double precision (one allreduce for all values).
  absl::StatusOr<double> AllreduceScalar(double value, Op op);
  absl::StatusOr<std::vector<double>> AllreduceScalars(std::vector<double> values, Op op);

  absl::Status Barrier();

  // The layout check of AllreduceGradients/BroadcastTensors costs one tiny allreduce per call
  // (about 0.1 ms over loopback). A caller whose layout provably never differs (e.g. after the
  // first step went through) may switch it off; it must do so on every rank at the same point.
  void set_check_layout(bool on) { check_layout_ = on; }
  bool check_layout() const { return check_layout_; }

 public:
  class Impl;  // internal (the process group); opaque outside distributed.cc

 private:
  Distributed(DistEnv env, std::unique_ptr<Impl> impl);

  DistEnv env_;
  std::unique_ptr<Impl> impl_;  // null for world size 1
  bool check_layout_ = true;
};

}  // namespace nino::trainer

#endif  // NINO_TRAINER_DIST_DISTRIBUTED_H_
