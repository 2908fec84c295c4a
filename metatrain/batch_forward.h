// Runs a TrainableNiNo on a batch and returns what the loss compares. The GNN runs on the whole
// batch graph. WNN+ treats every (edge, slot) independently, so only the slots that hold a
// parameter are computed (padded and constant slots have y_mask = 0 and would only cost time):
// the loss is the same as over the full [E, F, T] output.
#ifndef NINO_METATRAIN_BATCH_FORWARD_H_
#define NINO_METATRAIN_BATCH_FORWARD_H_

#include <torch/torch.h>

#include "metatrain/graph_sample.h"
#include "metatrain/trainable_nino.h"

namespace nino::metatrain {

struct BatchPrediction {
  torch::Tensor pred, y, mask;  // same shapes: [E, F, T] (GNN) or [R, T] (WNN+ slots)
};

BatchPrediction PredictBatch(const TrainableNiNo& model, const GraphSample& batch);

}  // namespace nino::metatrain

#endif  // NINO_METATRAIN_BATCH_FORWARD_H_
