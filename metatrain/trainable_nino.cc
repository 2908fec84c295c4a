#include "metatrain/trainable_nino.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace nino::metatrain {
namespace {

namespace F = torch::nn::functional;

// The official constructor's defaults (NINO_SPEC.md 2.1): model_args lists only what differs.
io::PickleValue NonDefaultArgs(const NiNoConfig& c) {
  using io::PickleValue;
  const NiNoConfig d;
  std::vector<std::pair<PickleValue, PickleValue>> items;
  auto add_int = [&](const char* k, int64_t v, int64_t dv) {
    if (v != dv) items.push_back({PickleValue::String(k), PickleValue::Int(v)});
  };
  auto add_bool = [&](const char* k, bool v, bool dv) {
    if (v != dv) items.push_back({PickleValue::String(k), PickleValue::Bool(v)});
  };
  add_int("ctx", c.ctx, d.ctx);
  add_int("hid", c.hid, d.hid);
  add_int("layers", c.layers, d.layers);
  add_bool("gnn", c.gnn, d.gnn);
  add_int("max_feat_size", c.max_feat_size, d.max_feat_size);
  add_int("seq_len", c.seq_len, d.seq_len);
  // wte_pos_enc matters only for the GNN (the official WNN+ files do not record it).
  if (c.gnn) add_bool("wte_pos_enc", c.wte_pos_enc, d.wte_pos_enc);
  add_int("vocab_size", c.vocab_size, d.vocab_size);
  add_int("edge_types", c.edge_types, d.edge_types);
  add_int("lpe", c.lpe, d.lpe);
  if (c.upd_scale != d.upd_scale)
    items.push_back({PickleValue::String("upd_scale"), PickleValue::Float(c.upd_scale)});
  return PickleValue::Dict(items);
}

}  // namespace

std::string ParameterName(const std::string& official_key) {
  return absl::StrReplaceAll(official_key, {{".", "__"}});
}

TrainableNiNo::TrainableNiNo(const NiNoConfig& config) : config_(config) {}

absl::StatusOr<std::shared_ptr<TrainableNiNo>> TrainableNiNo::Create(const NiNoConfig& config,
                                                                     uint64_t seed) {
  // The synthetic model has exactly the layout Load() expects: take its keys and shapes.
  auto layout = NiNoModel::Synthetic(config, seed);
  if (!layout.ok()) return layout.status();
  at::Generator gen = at::detail::createCPUGenerator(seed);
  io::NamedTensors weights;
  for (const auto& [key, t] : layout->state_dict()) {
    const bool bias = absl::EndsWith(key, ".bias");
    weights.push_back({key, bias ? torch::zeros(t.sizes(), torch::kFloat32)
                                 : at::normal(0.0, 0.02, t.sizes(), gen,
                                              torch::TensorOptions().dtype(torch::kFloat32))});
  }
  std::shared_ptr<TrainableNiNo> m(new TrainableNiNo(layout->config()));
  m->RegisterWeights(weights);
  return m;
}

absl::StatusOr<std::shared_ptr<TrainableNiNo>> TrainableNiNo::FromModel(const NiNoModel& model) {
  io::NamedTensors weights;
  for (const auto& [key, t] : model.state_dict())
    weights.push_back({key, t.detach().to(torch::kCPU, torch::kFloat32).clone()});
  std::shared_ptr<TrainableNiNo> m(new TrainableNiNo(model.config()));
  m->RegisterWeights(weights);
  return m;
}

void TrainableNiNo::RegisterWeights(const io::NamedTensors& weights) {
  for (const auto& [key, t] : weights) {
    keys_.push_back(key);
    weights_[key] = register_parameter(ParameterName(key), t);
  }
}

const torch::Tensor& TrainableNiNo::W(const std::string& key) const {
  auto it = weights_.find(key);
  TORCH_CHECK(it != weights_.end(), "TrainableNiNo: no weight ", key);
  return it->second;
}

torch::Tensor TrainableNiNo::Forward(const torch::Tensor& x, const torch::Tensor& edge_type,
                                     const torch::Tensor& edge_index, const torch::Tensor& pos,
                                     const torch::Tensor& pos_w) const {
  const auto& c = config_;
  TORCH_CHECK(x.dim() == 2 && x.size(1) % c.ctx == 0, "x must be [E, F*", c.ctx, "], got ",
              x.sizes());
  const int64_t E = x.size(0), Fs = x.size(1) / c.ctx;
  TORCH_CHECK(Fs <= c.max_feat_size || !c.gnn, "x has ", Fs, " feature slots, at most ",
              c.max_feat_size);
  TORCH_CHECK(edge_type.dim() == 1 && edge_type.size(0) == E, "edge_type must be [E]");
  if (!c.gnn) {
    torch::Tensor rows = x.reshape({E * Fs, c.ctx});
    return ForwardSlots(rows, edge_type.repeat_interleave(Fs)).view({E, Fs, c.seq_len});
  }
  return ForwardGnn(x, edge_type, edge_index, pos, pos_w);
}

torch::Tensor TrainableNiNo::ForwardSlots(const torch::Tensor& rows,
                                          const torch::Tensor& types) const {
  const auto& c = config_;
  TORCH_CHECK(!c.gnn, "ForwardSlots is the WNN+ forward");
  TORCH_CHECK(rows.dim() == 2 && rows.size(1) == c.ctx, "rows must be [R, ", c.ctx, "]");
  torch::Tensor z = F::linear(rows, W("edge_proj.fc.0.weight"), W("edge_proj.fc.0.bias")) +
                    W("layer_embed.weight").index_select(0, types);
  torch::Tensor g = torch::silu(F::linear(z, W("edge_mlp.fc.0.weight"), W("edge_mlp.fc.0.bias")));
  g = torch::silu(F::linear(g, W("edge_mlp.fc.2.weight"), W("edge_mlp.fc.2.bias")));
  g = torch::silu(F::linear(g, W("edge_mlp.fc.4.weight"), W("edge_mlp.fc.4.bias")));
  torch::Tensor delta = F::linear(g, W("edge_mlp.fc.6.weight"), W("edge_mlp.fc.6.bias"));
  return rows.select(1, c.ctx - 1).unsqueeze(1) + delta * c.upd_scale;
}

torch::Tensor TrainableNiNo::ForwardGnn(const torch::Tensor& x, const torch::Tensor& edge_type,
                                        const torch::Tensor& edge_index, const torch::Tensor& pos,
                                        const torch::Tensor& pos_w) const {
  const auto& c = config_;
  const int64_t E = x.size(0), Fs = x.size(1) / c.ctx;
  TORCH_CHECK(edge_index.dim() == 2 && edge_index.size(0) == 2 && edge_index.size(1) == E,
              "edge_index must be [2, E], got ", edge_index.sizes());
  TORCH_CHECK(pos.dim() == 2 && pos.size(1) == c.lpe, "pos must be [N, ", c.lpe, "]");
  const int64_t N = pos.size(0);
  const torch::Tensor src = edge_index[0], dst = edge_index[1];

  torch::Tensor h =
      F::linear(pos.to(x.dtype()), W("node_proj.fc.0.weight"), W("node_proj.fc.0.bias"));
  if (c.wte_pos_enc) {
    TORCH_CHECK(pos_w.defined() && pos_w.numel() == N, "this NiNo needs pos_w [N]");
    h = h + W("wte_pos_enc_layer.weight").index_select(0, pos_w);
  }
  // Only the first ctx*F input columns of edge_proj (= zero padding to max_feat_size).
  torch::Tensor e =
      F::linear(x, W("edge_proj.fc.0.weight").narrow(1, 0, c.ctx * Fs), W("edge_proj.fc.0.bias")) +
      W("layer_embed.weight").index_select(0, edge_type);
  const torch::Tensor count = torch::bincount(dst, {}, N).to(x.dtype()).clamp_min(1).unsqueeze(1);
  for (int64_t l = 0; l + 1 < c.layers; ++l) MessagePassingLayer(l, src, dst, count, &h, &e);

  // DMS head: all 9 x seq_len outputs, feature-major (index f*seq_len + k-1).
  torch::Tensor q = torch::silu(F::linear(e, W("edge_out.fc.0.weight"), W("edge_out.fc.0.bias")));
  torch::Tensor delta = F::linear(q, W("edge_out.fc.2.weight"), W("edge_out.fc.2.bias"))
                            .view({E, c.max_feat_size, c.seq_len})
                            .narrow(1, 0, Fs);
  torch::Tensor last = x.view({E, Fs, c.ctx}).select(2, c.ctx - 1).unsqueeze(2);
  return last + delta * c.upd_scale;
}

void TrainableNiNo::MessagePassingLayer(int64_t l, const torch::Tensor& src,
                                        const torch::Tensor& dst, const torch::Tensor& count,
                                        torch::Tensor* h, torch::Tensor* e) const {
  const int64_t hid = config_.hid;
  const std::string cp = absl::StrCat("gnn.convs.", l, ".");
  // pre([h_dst ; h_src]) as two half products (the engine's factorisation, same function).
  const torch::Tensor& w_pre = W(cp + "pre_nns.0.0.weight");
  torch::Tensor node_t = F::linear(*h, w_pre.narrow(1, 0, hid), W(cp + "pre_nns.0.0.bias"));
  torch::Tensor node_s = F::linear(*h, w_pre.narrow(1, hid, hid));
  torch::Tensor ab = F::linear(*e, W(cp + "edge_encoder.weight"), W(cp + "edge_encoder.bias"));
  torch::Tensor msg =
      (node_t.index_select(0, dst) + node_s.index_select(0, src)) * ab.narrow(1, 0, hid) +
      ab.narrow(1, hid, hid);
  torch::Tensor agg = torch::zeros({h->size(0), hid}, msg.options())
                          .scatter_add(0, dst.unsqueeze(1).expand({-1, hid}), msg) /
                      count;
  const torch::Tensor& w_post = W(cp + "post_nns.0.0.weight");
  torch::Tensor u = F::linear(*h, w_post.narrow(1, 0, hid), W(cp + "post_nns.0.0.bias")) +
                    F::linear(agg, w_post.narrow(1, hid, hid));
  *h = torch::silu(F::linear(u, W(cp + "lin.weight"), W(cp + "lin.bias")));

  const std::string up = absl::StrCat("gnn.edge_update.", l, ".");
  torch::Tensor pre =
      F::linear(*e, W(up + "lin_e.weight"), W(up + "lin_e.bias")) +
      F::linear(*h, W(up + "lin_s.weight"), W(up + "lin_s.bias")).index_select(0, src) +
      F::linear(*h, W(up + "lin_t.weight"), W(up + "lin_t.bias")).index_select(0, dst);
  *e = F::linear(torch::silu(pre), W(up + "lin1.weight"), W(up + "lin1.bias"));
}

io::NamedTensors TrainableNiNo::StateDict() const {
  io::NamedTensors out;
  for (const auto& key : keys_)
    out.push_back({key, W(key).detach().to(torch::kCPU, torch::kFloat32).clone()});
  return out;
}

io::PickleValue TrainableNiNo::ModelArgs() const { return NonDefaultArgs(config_); }

absl::StatusOr<NiNoModel> TrainableNiNo::ToNiNoModel() const {
  return NiNoModel::FromStateDict(StateDict(), ModelArgs(), "trainable NiNo");
}

absl::Status TrainableNiNo::Save(const std::string& path) const {
  auto model = ToNiNoModel();
  if (!model.ok()) return model.status();
  return model->Save(path);
}

int64_t TrainableNiNo::num_weights() const {
  int64_t n = 0;
  for (const auto& key : keys_) n += W(key).numel();
  return n;
}

}  // namespace nino::metatrain
