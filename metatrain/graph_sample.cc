#include "metatrain/graph_sample.h"

#include <algorithm>

namespace nino::metatrain {
namespace {

// [E, F*ctx] -> [E, Fmax*ctx] and [E, F, T] -> [E, Fmax, T], zeros in the new slots.
torch::Tensor PadSlots(const torch::Tensor& t, int64_t dim, int64_t extra) {
  if (extra == 0) return t;
  std::vector<int64_t> pad(2 * t.dim(), 0);
  // constant_pad_nd lists (before, after) pairs from the last dimension backwards.
  pad[2 * (t.dim() - 1 - dim) + 1] = extra;
  return torch::constant_pad_nd(t, pad, 0);
}

}  // namespace

GraphSample GraphSample::To(const torch::Device& device) const {
  GraphSample s = *this;
  s.x = x.to(device);
  s.y = y.to(device);
  s.y_mask = y_mask.to(device);
  s.edge_type = edge_type.to(device);
  s.edge_index = edge_index.to(device);
  if (pos.defined()) s.pos = pos.to(device);
  if (pos_w.defined()) s.pos_w = pos_w.to(device);
  return s;
}

GraphSample MergeGraphs(const std::vector<GraphSample>& samples, int64_t ctx) {
  TORCH_CHECK(!samples.empty(), "MergeGraphs needs at least one sample");
  int64_t fmax = 0;
  for (const auto& s : samples) fmax = std::max(fmax, s.feat_size(ctx));
  std::vector<torch::Tensor> xs, ys, ms, types, indices, poss, pos_ws;
  int64_t offset = 0;
  for (const auto& s : samples) {
    const int64_t extra = fmax - s.feat_size(ctx);
    xs.push_back(PadSlots(s.x, 1, extra * ctx));
    ys.push_back(PadSlots(s.y, 1, extra));
    ms.push_back(PadSlots(s.y_mask, 1, extra));
    types.push_back(s.edge_type);
    indices.push_back(s.edge_index + offset);
    if (s.pos.defined()) poss.push_back(s.pos);
    if (s.pos_w.defined()) pos_ws.push_back(s.pos_w);
    offset += s.num_nodes;
  }
  TORCH_CHECK(poss.empty() || poss.size() == samples.size(),
              "MergeGraphs: either every sample has pos or none");
  GraphSample out;
  out.x = torch::cat(xs, 0);
  out.y = torch::cat(ys, 0);
  out.y_mask = torch::cat(ms, 0);
  out.edge_type = torch::cat(types, 0);
  out.edge_index = torch::cat(indices, 1);
  if (!poss.empty()) out.pos = torch::cat(poss, 0);
  // pos_w only when every sample has one (samples built by hand may lack it).
  if (pos_ws.size() == samples.size()) out.pos_w = torch::cat(pos_ws, 0);
  out.num_nodes = offset;
  return out;
}

}  // namespace nino::metatrain
