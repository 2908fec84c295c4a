// DataParallelNowcaster: the data-parallel "nowcast transaction" of a NiNo step.
//
//   1. rank 0 (the only rank with an inner nowcaster) asks it for the prediction and validates
//      it: it must be a [P] (or P-element) float tensor of finite values;
//   2. all ranks agree: an allreduce(MIN) of an accept flag (1 on every rank but rank 0, rank 0's
//      verdict there), so a failure on rank 0 reaches everyone;
//   3. rank 0 broadcasts the prediction; every rank checks what it received (P finite float32
//      values; the broadcast itself succeeded);
//   4. all ranks agree again (a second allreduce(MIN) of the per-rank checks): only if every rank
//      passed does every rank return the prediction and apply it.
// Any failure (the inner nowcaster's error or exception, a bad prediction, a failed or damaged
// broadcast on any one rank, a failed collective) is returned as a Status on EVERY rank, so
// NinoOptimizer takes an ordinary optimizer step on all ranks alike and the ranks stay
// identical. With no Collectives (single process) steps 2-4 are skipped.
//
// Thread-compatible: NinoOptimizer calls Nowcast() from the training thread.
#ifndef NINO_CLIENT_NOWCAST_TRANSACTION_H_
#define NINO_CLIENT_NOWCAST_TRANSACTION_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "client/collectives.h"
#include "common/nino/nino_optimizer.h"

namespace nino::client {

class DataParallelNowcaster : public Nowcaster {
 public:
  // `inner`: rank 0's nowcaster (may be null on the other ranks; null on rank 0 makes every
  // NiNo step fail over). `collectives`: null for a single process; must outlive this object.
  // `num_params`: P, the size every prediction must have.
  DataParallelNowcaster(std::shared_ptr<Nowcaster> inner, Collectives* collectives,
                        int64_t num_params);

  absl::StatusOr<torch::Tensor> Nowcast(const torch::Tensor& states, int k) override;

 private:
  bool is_root() const;
  // Rank 0: the inner prediction as a flat float32 CPU tensor, or why it was rejected.
  absl::StatusOr<torch::Tensor> PredictAndValidate(const torch::Tensor& states, int k);
  // OK when `flat` is P finite float32 values.
  absl::Status CheckReceived(const torch::Tensor& flat) const;

  std::shared_ptr<Nowcaster> inner_;
  Collectives* collectives_;
  int64_t num_params_;
};

}  // namespace nino::client

#endif  // NINO_CLIENT_NOWCAST_TRANSACTION_H_
