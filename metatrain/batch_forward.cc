#include "metatrain/batch_forward.h"

namespace nino::metatrain {

BatchPrediction PredictBatch(const TrainableNiNo& model, const GraphSample& batch) {
  const auto& c = model.config();
  BatchPrediction out;
  if (c.gnn) {
    out.pred = model.Forward(batch.x, batch.edge_type, batch.edge_index, batch.pos, batch.pos_w);
    out.y = batch.y;
    out.mask = batch.y_mask;
    return out;
  }
  const int64_t E = batch.num_edges(), Fs = batch.feat_size(c.ctx), T = c.seq_len;
  // A slot holds a parameter iff its first horizon is valid (every window has >= 1 target).
  const torch::Tensor valid = batch.y_mask.select(2, 0).reshape({E * Fs}).nonzero().view({-1});
  const torch::Tensor rows = batch.x.reshape({E * Fs, c.ctx}).index_select(0, valid);
  const torch::Tensor types = batch.edge_type.repeat_interleave(Fs).index_select(0, valid);
  out.pred = model.ForwardSlots(rows, types);
  out.y = batch.y.reshape({E * Fs, T}).index_select(0, valid);
  out.mask = batch.y_mask.reshape({E * Fs, T}).index_select(0, valid);
  return out;
}

}  // namespace nino::metatrain
