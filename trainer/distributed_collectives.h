// The trainer's Distributed (c10d Gloo/NCCL) as the client library's Collectives.
#ifndef NINO_TRAINER_DISTRIBUTED_COLLECTIVES_H_
#define NINO_TRAINER_DISTRIBUTED_COLLECTIVES_H_

#include "client/collectives.h"
#include "trainer/dist/distributed.h"

namespace nino::trainer {

class DistributedCollectives final : public client::Collectives {
 public:
  explicit DistributedCollectives(Distributed* dist) : dist_(dist) {}
  int rank() const override { return dist_->rank(); }
  int world_size() const override { return dist_->world_size(); }
  absl::StatusOr<double> AllreduceMin(double value) override {
    return dist_->AllreduceScalar(value, Distributed::Op::kMin);
  }
  absl::Status Broadcast(torch::Tensor& tensor, int root) override {
    return dist_->BroadcastTensors({tensor}, root);
  }

 private:
  Distributed* dist_;
};

}  // namespace nino::trainer

#endif  // NINO_TRAINER_DISTRIBUTED_COLLECTIVES_H_
