// One meta-training example as a graph (shared/spec/META_TRAINING.md section 2, step 8), and
// batches of several disjoint graphs.
//
// Contract: a GraphSample holds the scaled input features x [E, F*ctx] (column f*ctx + c),
// the scaled targets y [E, F, T] (T = seq_len horizons, zero past the available future states)
// and y_mask [E, F, T] (1 exactly where y is a real future value of a real parameter slot:
// padded slots, constant slots of residual/head/self-loop edges and missing horizons are 0),
// edge_type [E], edge_index [2, E] (node ids < num_nodes) and, for GNN training, pos
// [num_nodes, lpe] (undefined for WNN+), and pos_w [num_nodes] int64 (token id + 1 on the
// token nodes of LM graphs, 0 elsewhere; read only by a NiNo with wte_pos_enc). MergeGraphs
// concatenates samples into one graph whose components are the samples (node ids offset by the
// nodes before them); samples with fewer feature slots are zero-padded to the largest F (padded
// slots masked).
#ifndef NINO_METATRAIN_GRAPH_SAMPLE_H_
#define NINO_METATRAIN_GRAPH_SAMPLE_H_

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace nino::metatrain {

struct GraphSample {
  torch::Tensor x;           // [E, F*ctx] float32
  torch::Tensor y;           // [E, F, T] float32
  torch::Tensor y_mask;      // [E, F, T] float32 (0/1)
  torch::Tensor edge_type;   // [E] int64
  torch::Tensor edge_index;  // [2, E] int64
  torch::Tensor pos;         // [N, lpe] float32, or undefined (WNN+)
  torch::Tensor pos_w;       // [N] int64, or undefined
  int64_t num_nodes = 0;

  int64_t num_edges() const { return x.size(0); }
  int64_t feat_size(int64_t ctx) const { return x.size(1) / ctx; }
  // All tensors moved to `device`.
  GraphSample To(const torch::Device& device) const;
};

// One graph made of `samples` (at least one), in order. `ctx` = context states per slot.
GraphSample MergeGraphs(const std::vector<GraphSample>& samples, int64_t ctx);

}  // namespace nino::metatrain

#endif  // NINO_METATRAIN_GRAPH_SAMPLE_H_
