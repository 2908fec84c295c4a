// Collectives: the two collective operations a data-parallel NiNo step needs, behind one small
// interface, so the client library works with any process group a user already has.
//
//  * AllreduceMin(x) returns the minimum of x over all ranks (every rank calls it, same order).
//  * Broadcast(t, root) copies root's tensor into every rank's `t` in place.
//
// Adapters:
//  * WrapProcessGroup(pg): any c10d object with rank/size and allreduce/broadcast(...)->wait():
//    c10d::ProcessGroup (LibTorch 1.13 and 2.x), c10d::ProcessGroupGloo / ProcessGroupNCCL, and
//    c10d::Backend (2.x). Collectives run on the tensors' device (NCCL: CUDA tensors): the
//    adapter is given that device.
//  * A null process group (single process) needs no adapter: the client treats a missing
//    Collectives as world size 1.
//
// Errors never escape as exceptions: a failed or timed-out collective comes back as UNAVAILABLE
// naming the operation. After such a failure the process group should be considered broken.
// Not thread-safe: call from the training thread.
#ifndef NINO_CLIENT_COLLECTIVES_H_
#define NINO_CLIENT_COLLECTIVES_H_

#include <torch/types.h>

#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status/torch_guard.h"
#include "torch/csrc/distributed/c10d/Types.hpp"

namespace nino::client {

class Collectives {
 public:
  virtual ~Collectives() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual absl::StatusOr<double> AllreduceMin(double value) = 0;
  virtual absl::Status Broadcast(torch::Tensor& tensor, int root) = 0;
};

// Adapter over a c10d process group (or 2.x Backend) `PG`. `device`: where the scalar of
// AllreduceMin lives (CPU for Gloo, the rank's CUDA device for NCCL).
template <class PG>
class ProcessGroupCollectives final : public Collectives {
 public:
  ProcessGroupCollectives(c10::intrusive_ptr<PG> pg, torch::Device device)
      : pg_(std::move(pg)), device_(device) {}

  int rank() const override { return pg_->getRank(); }
  int world_size() const override { return pg_->getSize(); }

  absl::StatusOr<double> AllreduceMin(double value) override {
    try {
      std::vector<at::Tensor> v{
          at::full({1}, value, at::TensorOptions().dtype(at::kDouble).device(device_))};
      c10d::AllreduceOptions opts;
      opts.reduceOp = c10d::ReduceOp::MIN;
      pg_->allreduce(v, opts)->wait();
      return v[0].item<double>();
    } catch (...) {
      return StatusFromCurrentException(absl::StrCat("allreduce(MIN) failed on rank ", rank()),
                                        absl::StatusCode::kUnavailable);
    }
  }

  absl::Status Broadcast(torch::Tensor& tensor, int root) override {
    try {
      // The backend's device (NCCL: CUDA); copied back into `tensor` when it lives elsewhere.
      std::vector<at::Tensor> v{tensor.device() == device_ ? tensor : tensor.to(device_)};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      opts.rootTensor = 0;
      pg_->broadcast(v, opts)->wait();
      if (!v[0].is_same(tensor)) tensor.copy_(v[0]);
      return absl::OkStatus();
    } catch (...) {
      return StatusFromCurrentException(
          absl::StrCat("broadcast from rank ", root, " failed on rank ", rank()),
          absl::StatusCode::kUnavailable);
    }
  }

 private:
  c10::intrusive_ptr<PG> pg_;
  torch::Device device_;
};

// Null `pg`: returns null (single process).
template <class PG>
std::unique_ptr<Collectives> WrapProcessGroup(c10::intrusive_ptr<PG> pg,
                                              torch::Device device = torch::kCPU) {
  if (!pg) return nullptr;
  return std::make_unique<ProcessGroupCollectives<PG>>(std::move(pg), device);
}

}  // namespace nino::client

#endif  // NINO_CLIENT_COLLECTIVES_H_
