#include "common/nino/nino_model.h"

#include <ATen/CPUGeneratorImpl.h>

#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

#include <cmath>
#include <cstdint>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace nino {
namespace {

namespace F = torch::nn::functional;

std::string Shape(const std::vector<int64_t>& s) {
  return absl::StrCat("(", absl::StrJoin(s, ", "), ")");
}

// Applies one model_args entry to the config. Options the official code rejects or that this
// implementation does not provide are errors, never silently ignored.
absl::Status ApplyModelArg(const std::string& key, const io::PickleValue& v, NiNoConfig* c) {
  auto want_int = [&](int64_t* dst) -> absl::Status {
    if (!v.is_int())
      return absl::InvalidArgumentError(
          absl::StrCat("model_args['", key, "'] must be an int, got ", v.kind_name()));
    *dst = v.as_int();
    return absl::OkStatus();
  };
  auto want_bool = [&](bool* dst) -> absl::Status {
    if (!v.is_bool() && !v.is_int())
      return absl::InvalidArgumentError(
          absl::StrCat("model_args['", key, "'] must be a bool, got ", v.kind_name()));
    *dst = v.is_bool() ? v.as_bool() : v.as_int() != 0;
    return absl::OkStatus();
  };
  auto require = [&](bool ok, const std::string& what) -> absl::Status {
    return ok ? absl::OkStatus()
              : absl::UnimplementedError(absl::StrCat("model_args['", key, "'] = ", v.DebugString(),
                                                      " is not supported (", what, ")"));
  };
  if (key == "ctx") return want_int(&c->ctx);
  if (key == "hid") return want_int(&c->hid);
  if (key == "layers") return want_int(&c->layers);
  if (key == "gnn") return want_bool(&c->gnn);
  if (key == "max_feat_size") return want_int(&c->max_feat_size);
  if (key == "seq_len") return want_int(&c->seq_len);
  if (key == "wte_pos_enc") return want_bool(&c->wte_pos_enc);
  if (key == "vocab_size") return want_int(&c->vocab_size);
  if (key == "edge_types") return want_int(&c->edge_types);
  if (key == "lpe") return want_int(&c->lpe);
  if (key == "chunk_size") return want_int(&c->chunk_size);
  if (key == "upd_scale") {
    if (!v.is_float() && !v.is_int())
      return absl::InvalidArgumentError("model_args['upd_scale'] must be a number");
    c->upd_scale = v.as_float();
    return absl::OkStatus();
  }
  if (key == "dms")
    return require(v.is_bool() && v.as_bool(), "only the direct multi-step head exists");
  if (key == "improved_graph")
    return require(v.is_bool() && v.as_bool(), "only the improved graph exists");
  if (key == "residual") return require(v.is_bool() && v.as_bool(), "residual=True only");
  if (key == "final_edge_update")
    return require(v.is_bool() && !v.as_bool(), "final_edge_update=False only");
  if (key == "input_layer")
    return require(v.is_string() && v.as_string() == "linear", "input_layer='linear' only");
  if (key == "act_name")
    return require(v.is_string() && v.as_string() == "silu", "act_name='silu' only");
  if (key == "scale_method")
    return require(v.is_string() && v.as_string() == "std", "scale_method='std' only");
  if (key == "towers")
    return require(v.is_int() && v.as_int() == 1, "one tower only, as the official inference path");
  if (key == "edge_sample_ratio")
    return require((v.is_float() || v.is_int()) && v.as_float() == 0.0,
                   "edge sampling is a per-nowcast option (ForwardOptions, --edge_sample_ratio), "
                   "not a checkpoint setting");
  return absl::InvalidArgumentError(absl::StrCat("unknown model_args key '", key, "'"));
}

std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedKeys(const NiNoConfig& c) {
  const int64_t h = c.hid;
  std::vector<std::pair<std::string, std::vector<int64_t>>> k;
  auto lin = [&](const std::string& name, int64_t out, int64_t in) {
    k.push_back({name + ".weight", {out, in}});
    k.push_back({name + ".bias", {out}});
  };
  k.push_back({"layer_embed.weight", {c.edge_types, h}});
  if (c.gnn) {
    if (c.wte_pos_enc) k.push_back({"wte_pos_enc_layer.weight", {c.vocab_size + 1, h}});
    if (c.lpe > 0) lin("node_proj.fc.0", h, c.lpe);
    lin("edge_proj.fc.0", h, c.max_feat_size * c.ctx);
    for (int64_t l = 0; l < c.layers; ++l) {
      const std::string p = absl::StrCat("gnn.convs.", l, ".");
      lin(p + "edge_encoder", 2 * h, h);
      lin(p + "pre_nns.0.0", h, 2 * h);
      lin(p + "post_nns.0.0", h, 2 * h);
      lin(p + "lin", h, h);
    }
    for (int64_t l = 0; l + 1 < c.layers; ++l) {
      const std::string p = absl::StrCat("gnn.edge_update.", l, ".");
      for (const char* m : {"lin_e", "lin_s", "lin_t", "lin1"}) lin(p + m, h, h);
    }
    lin("edge_out.fc.0", h, h);
    lin("edge_out.fc.2", c.max_feat_size * c.seq_len, h);
  } else {
    lin("edge_proj.fc.0", h, c.ctx);
    lin("edge_mlp.fc.0", h, h);
    lin("edge_mlp.fc.2", h, h);
    lin("edge_mlp.fc.4", h, h);
    lin("edge_mlp.fc.6", c.seq_len, h);
  }
  return k;
}

// Rows [begin, end) of a tensor's first dimension.
// Rows of per-edge work per chunk. The checkpoints' chunk_size (10^6) suits a GPU; on a CPU,
// 16,384 rows keep every [rows, 2h] temporary at 16 MiB: cache-friendlier, and served from the
// heap instead of fresh mmap'd (page-faulting) memory at every operation.
inline int64_t EffectiveChunk(int64_t chunk_size, const torch::Device& device) {
  constexpr int64_t kCpuChunkRows = 16384;
  const int64_t c = std::max<int64_t>(1, chunk_size);
  return device.is_cpu() ? std::min(c, kCpuChunkRows) : c;
}

inline torch::Tensor Rows(const torch::Tensor& t, int64_t begin, int64_t end) {
  return t.narrow(0, begin, end - begin);
}

int64_t ChunkFor(const ForwardOptions& o, int64_t chunk_size, const torch::Device& device) {
  return o.chunk_rows > 0 ? o.chunk_rows : EffectiveChunk(chunk_size, device);
}

// A large, fresh CPU tensor: asks the kernel for transparent huge pages before its first write.
// The per-edge state is mmap'd anew at every step, and on a VM a 4 KiB page fault costs about
// 20x the write itself (the MLP 784-512x3 step spent 11% of its CPU time faulting in its
// 478 MB edge state); with 2 MiB pages that cost disappears. Contents are unaffected.
torch::Tensor EmptyLarge(at::IntArrayRef sizes, const torch::TensorOptions& opts) {
  torch::Tensor t = torch::empty(sizes, opts);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr int64_t kMinBytes = 32 << 20;
  const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
  if (t.device().is_cpu() && bytes >= kMinBytes) {
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr());
    const uintptr_t first = (begin + page - 1) & ~(page - 1);
    const uintptr_t last = (begin + static_cast<uintptr_t>(bytes)) & ~(page - 1);
    if (last > first)
      madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);  // advisory
  }
#endif
  return t;
}

// One per-edge linear layer y = x W^T + b of a forward pass. In float32 it is exactly the
// official layer (F::linear, or addmm_out into a row block: the same kernel, the same values).
// With a bfloat16 product the input and the weights are rounded to bfloat16, the product and the
// bias run in bfloat16 (oneDNN's AVX512-BF16 / AMX kernels where the CPU has them), and the
// result comes back as float32 for the element-wise work that follows.
class EdgeLinear {
 public:
  EdgeLinear(const torch::Tensor& w, const torch::Tensor& b, torch::ScalarType product)
      : low_(product != torch::kFloat32) {
    w_ = low_ ? w.to(product) : w;
    if (b.defined()) b_ = low_ ? b.to(product) : b;
    w_t_ = w_.t();
    product_ = product;
  }
  // [rows, out] float32.
  torch::Tensor operator()(const torch::Tensor& x) const {
    if (!low_) return F::linear(x, w_, b_);
    return F::linear(x.to(product_), w_, b_).to(torch::kFloat32);
  }
  // Writes the result into `out` (float32 rows of a larger tensor, or of the edge state).
  void Into(torch::Tensor out, const torch::Tensor& x) const {
    if (low_ || out.scalar_type() != torch::kFloat32) {
      out.copy_(low_ ? F::linear(x.to(product_), w_, b_) : F::linear(x, w_, b_));
    } else {
      at::addmm_out(out, b_, x, w_t_);
    }
  }

 private:
  bool low_;
  torch::ScalarType product_ = torch::kFloat32;
  torch::Tensor w_, b_, w_t_;
};

}  // namespace

int64_t ChunkRowsForBudget(int64_t bytes, int64_t hid, bool gnn) {
  const int64_t per_row = (gnn ? 6 : 3) * std::max<int64_t>(1, hid) * 4;
  return std::max<int64_t>(1024, bytes / per_row);
}

absl::StatusOr<NiNoModel> NiNoModel::Load(const std::string& path) {
  auto file = io::LoadTorchFile(path);
  if (!file.ok()) return file.status();
  return FromTorchValue(*file, path);
}

absl::StatusOr<NiNoModel> NiNoModel::FromTorchValue(const io::PickleValue& file,
                                                    const std::string& path) {
  const io::PickleValue* sd = file.Find("state_dict");
  io::PickleValue none;
  const io::PickleValue* args = file.Find("model_args");
  if (sd == nullptr) {
    if (!file.is_dict()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": expected a dict with 'state_dict', got ", file.kind_name()));
    }
    sd = &file;  // a bare state dict
  }
  auto named = io::ToNamedTensors(*sd);
  if (!named.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", named.status().message()));
  }
  return FromStateDict(*named, args ? *args : none, path);
}

absl::StatusOr<NiNoModel> NiNoModel::FromStateDict(const io::NamedTensors& state_dict,
                                                   const io::PickleValue& model_args,
                                                   const std::string& source) {
  NiNoModel m;
  m.model_args_ = model_args;
  if (!model_args.is_none()) {
    if (!model_args.is_dict()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": model_args must be a dict, got ", model_args.kind_name()));
    }
    for (const auto& [k, v] : model_args.dict_items()) {
      if (!k.is_string())
        return absl::InvalidArgumentError(
            absl::StrCat(source, ": model_args has a non-string key"));
      absl::Status s = ApplyModelArg(k.as_string(), v, &m.config_);
      if (!s.ok()) return absl::Status(s.code(), absl::StrCat(source, ": ", s.message()));
    }
  }
  const NiNoConfig& c = m.config_;
  if (c.hid <= 0 || c.ctx != 5 || c.layers < 1 || c.seq_len < 1 || c.max_feat_size < 1 ||
      c.edge_types < 14) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": unsupported model_args (hid ", c.hid,
                                                   ", ctx ", c.ctx, ", layers ", c.layers,
                                                   ", seq_len ", c.seq_len, ")"));
  }
  std::map<std::string, torch::Tensor> given;
  for (const auto& [k, t] : state_dict) given[k] = t;
  std::set<std::string> expected_names;
  for (const auto& [key, shape] : ExpectedKeys(c)) {
    expected_names.insert(key);
    auto it = given.find(key);
    if (it == given.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": missing key '", key, "' (expected shape ", Shape(shape), ")"));
    }
    const torch::Tensor& t = it->second;
    if (t.sizes().vec() != shape) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": key '", key, "' has shape ",
                                                     Shape(t.sizes().vec()), ", expected ",
                                                     Shape(shape)));
    }
    if (!t.is_floating_point()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": key '", key, "' is not floating point"));
    }
    torch::Tensor f = t.to(torch::kFloat32).contiguous();
    if (!torch::isfinite(f).all().item<bool>()) {
      return absl::DataLossError(absl::StrCat(source, ": key '", key, "' holds NaN or Inf values"));
    }
    m.weights_[key] = f;
    m.ordered_.push_back({key, f});
  }
  for (const auto& [k, t] : state_dict) {
    if (!expected_names.count(k)) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": unexpected key '", k, "' ", Shape(t.sizes().vec()), " for a ",
                       c.gnn ? "GNN" : "WNN+", " NiNo with hid ", c.hid));
    }
  }
  return m;
}

absl::StatusOr<NiNoModel> NiNoModel::Synthetic(const NiNoConfig& config, uint64_t seed) {
  using io::PickleValue;
  auto S = [](const char* s) { return PickleValue::String(s); };
  // Every field of the config, so that Load() reads the same config back.
  const PickleValue args = PickleValue::Dict({
      {S("ctx"), PickleValue::Int(config.ctx)},
      {S("hid"), PickleValue::Int(config.hid)},
      {S("layers"), PickleValue::Int(config.layers)},
      {S("gnn"), PickleValue::Bool(config.gnn)},
      {S("max_feat_size"), PickleValue::Int(config.max_feat_size)},
      {S("seq_len"), PickleValue::Int(config.seq_len)},
      {S("wte_pos_enc"), PickleValue::Bool(config.wte_pos_enc)},
      {S("vocab_size"), PickleValue::Int(config.vocab_size)},
      {S("edge_types"), PickleValue::Int(config.edge_types)},
      {S("lpe"), PickleValue::Int(config.lpe)},
      {S("upd_scale"), PickleValue::Float(config.upd_scale)},
      {S("chunk_size"), PickleValue::Int(config.chunk_size)},
  });
  if (config.hid <= 0 || config.layers < 1 || config.max_feat_size < 1 || config.seq_len < 1 ||
      config.edge_types < 1 || config.vocab_size < 1 || config.lpe < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Synthetic: sizes must be positive (hid ", config.hid, ", layers ", config.layers,
        ", max_feat_size ", config.max_feat_size, ", seq_len ", config.seq_len, ", edge_types ",
        config.edge_types, ", lpe ", config.lpe, ")"));
  }
  at::Generator gen = at::detail::createCPUGenerator(seed);
  io::NamedTensors state_dict;
  for (const auto& [key, shape] : ExpectedKeys(config)) {
    const bool head =
        absl::StartsWith(key, "edge_out.fc.2.") || absl::StartsWith(key, "edge_mlp.fc.6.");
    const bool bias = absl::EndsWith(key, ".bias");
    torch::Tensor t;
    if (bias) {
      t = torch::zeros(shape, torch::kFloat32);
    } else {
      const double fan_in_std = 1.0 / std::sqrt(static_cast<double>(shape.back()));
      t = at::normal(0.0, head ? 1e-3 : fan_in_std, shape, gen,
                     torch::TensorOptions().dtype(torch::kFloat32));
    }
    state_dict.push_back({key, t});
  }
  // FromStateDict checks the layout and the config exactly as Load() does.
  return FromStateDict(state_dict, args, absl::StrCat("synthetic NiNo (seed ", seed, ")"));
}

absl::Status NiNoModel::Save(const std::string& path) const {
  io::NamedTensors cpu;
  for (const auto& [k, t] : ordered_) cpu.push_back({k, t.cpu()});
  io::PickleValue args = model_args_.is_dict() ? model_args_ : io::PickleValue::Dict({});
  io::PickleValue top =
      io::PickleValue::Dict({{io::PickleValue::String("state_dict"), io::StateDictValue(cpu)},
                             {io::PickleValue::String("model_args"), args}});
  return io::SaveTorchFile(path, top);
}

int64_t NiNoModel::num_parameters() const {
  int64_t n = 0;
  for (const auto& [k, t] : ordered_) n += t.numel();
  return n;
}

void NiNoModel::To(const torch::Device& device) {
  for (auto& [k, t] : weights_) t = t.to(device);
  for (auto& [k, t] : ordered_) t = weights_.at(k);
}

torch::Device NiNoModel::device() const { return weights_.begin()->second.device(); }

torch::Tensor NiNoModel::Forward(const torch::Tensor& edge_attr, const torch::Tensor& edge_type,
                                 const torch::Tensor& edge_index, const torch::Tensor& pos,
                                 const torch::Tensor& pos_w, int k, NiNoTrace* trace,
                                 const ForwardOptions& options) const {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(k >= 1 && k <= config_.seq_len, "horizon k must be in 1..", config_.seq_len, ", got ",
              k);
  TORCH_CHECK(edge_attr.dim() == 2 && edge_attr.size(1) % config_.ctx == 0,
              "edge_attr must be [E, F*", config_.ctx, "], got ", edge_attr.sizes());
  TORCH_CHECK(edge_type.dim() == 1 && edge_type.size(0) == edge_attr.size(0),
              "edge_type must be [E], got ", edge_type.sizes());
  TORCH_CHECK(edge_type.numel() == 0 || (edge_type.min().item<int64_t>() >= 0 &&
                                         edge_type.max().item<int64_t>() < config_.edge_types),
              "edge types must be in [0, ", config_.edge_types, ")");
  TORCH_CHECK(options.edge_sample_ratio >= 0, "edge_sample_ratio must be >= 0, got ",
              options.edge_sample_ratio);
  TORCH_CHECK(
      options.edge_state_dtype == torch::kFloat32 || options.edge_state_dtype == torch::kBFloat16,
      "edge_state_dtype must be float32 or bfloat16");
  TORCH_CHECK(options.matmul_dtype == torch::kFloat32 || options.matmul_dtype == torch::kBFloat16,
              "matmul_dtype must be float32 or bfloat16");
  if (config_.gnn) {
    return ForwardGnn(edge_attr, edge_type, edge_index, pos, pos_w, k, trace, options);
  }
  return ForwardMlp(edge_attr, edge_type, k, trace, options);
}

torch::Tensor NiNoModel::ForwardGnn(const torch::Tensor& x, const torch::Tensor& et,
                                    const torch::Tensor& ei, const torch::Tensor& pos,
                                    const torch::Tensor& pos_w, int k, NiNoTrace* trace,
                                    const ForwardOptions& options) const {
  const auto& c = config_;
  const int64_t E = x.size(0), h = c.hid, ctx = c.ctx;
  const int64_t Fs = x.size(1) / ctx;
  TORCH_CHECK(Fs <= c.max_feat_size, "graph has ", Fs,
              " feature slots per edge; this NiNo takes at most ", c.max_feat_size);
  TORCH_CHECK(ei.dim() == 2 && ei.size(0) == 2 && ei.size(1) == E,
              "edge_index must be [2, E], got ", ei.sizes());
  TORCH_CHECK(pos.dim() == 2 && pos.size(1) == c.lpe, "pos must be [N, ", c.lpe, "], got ",
              pos.sizes());
  const int64_t N = pos.size(0);
  const torch::Tensor src = ei[0].contiguous(), dst = ei[1].contiguous();
  if (E > 0) {
    TORCH_CHECK(ei.min().item<int64_t>() >= 0 && ei.max().item<int64_t>() < N,
                "edge_index refers to nodes outside [0, ", N, ")");
  }
  const int64_t chunk = ChunkFor(options, c.chunk_size, x.device());
  const auto opts = x.options().dtype(torch::kFloat32);
  // The edge state between layers; EdgeRows gives a chunk of it as an input of the per-edge
  // products: float32 for float32 products, as stored for bfloat16 ones (which round it anyway).
  const bool low_precision_state = options.edge_state_dtype != torch::kFloat32;
  const torch::ScalarType product = options.matmul_dtype;
  const bool state_to_f32 = low_precision_state && product == torch::kFloat32;
  auto AsProductInput = [&](const torch::Tensor& r) {
    return state_to_f32 ? r.to(torch::kFloat32) : r;
  };
  auto EdgeRows = [&](const torch::Tensor& e, int64_t b, int64_t end) {
    return AsProductInput(Rows(e, b, end));
  };
  auto TraceRows = [&](const torch::Tensor& e) {
    return Rows(e, 0, std::min(E, trace->max_edge_rows)).to(torch::kFloat32).clone();
  };

  // Node init.
  torch::Tensor hn =
      F::linear(pos.to(torch::kFloat32), W("node_proj.fc.0.weight"), W("node_proj.fc.0.bias"));
  if (c.wte_pos_enc) {
    TORCH_CHECK(pos_w.defined() && pos_w.numel() == N, "this NiNo needs pos_w [N]");
    hn = hn + W("wte_pos_enc_layer.weight").index_select(0, pos_w);
  }
  if (trace) trace->h0 = hn.clone();

  // Edge init: only the first ctx*F input columns of edge_proj are used (= zero padding).
  const torch::Tensor w_ep = W("edge_proj.fc.0.weight").narrow(1, 0, ctx * Fs).contiguous();
  const torch::Tensor& b_ep = W("edge_proj.fc.0.bias");
  const torch::Tensor& emb = W("layer_embed.weight");
  torch::Tensor e = EmptyLarge({E, h}, opts.dtype(options.edge_state_dtype));
  // float32 state: the products are written straight into the state's rows (addmm_out runs the
  // same kernel as F::linear, so the values are the same) and the sums are done in place, in the
  // same order as before: no temporary, no copy pass over the state.
  const torch::Tensor w_ep_t = w_ep.t();
  for (int64_t b = 0; b < E; b += chunk) {
    const int64_t end = std::min(E, b + chunk);
    if (low_precision_state) {
      Rows(e, b, end).copy_(F::linear(Rows(x, b, end), w_ep, b_ep) +
                            emb.index_select(0, Rows(et, b, end)));
    } else {
      torch::Tensor er = Rows(e, b, end);
      at::addmm_out(er, b_ep, Rows(x, b, end), w_ep_t);
      er.add_(emb.index_select(0, Rows(et, b, end)));
    }
  }
  if (trace) trace->e0 = TraceRows(e);

  const bool sample = options.edge_sample_ratio > 0 && options.edge_sample_ratio < 1 && E > 0;
  torch::Tensor count;
  if (!sample) count = torch::bincount(dst, {}, N).to(torch::kFloat32).clamp_min(1).unsqueeze(1);
  // Active message-passing layers: all but the last (whose output the head never reads).
  for (int64_t l = 0; l + 1 < c.layers; ++l) {
    const std::string cp = absl::StrCat("gnn.convs.", l, ".");
    const torch::Tensor& w_pre = W(cp + "pre_nns.0.0.weight");
    const torch::Tensor w_pre_t = w_pre.narrow(1, 0, h).contiguous();  // target half
    const torch::Tensor w_pre_s = w_pre.narrow(1, h, h).contiguous();  // source half
    const torch::Tensor node_t = F::linear(hn, w_pre_t, W(cp + "pre_nns.0.0.bias"));
    const torch::Tensor node_s = F::linear(hn, w_pre_s);
    const EdgeLinear encoder(W(cp + "edge_encoder.weight"), W(cp + "edge_encoder.bias"), product);
    torch::Tensor agg = torch::zeros({N, h}, opts);
    // Edge sampling: this layer's messages come from a random subset of the edges (ascending
    // ids, so chunks read the edge state in order), averaged over the sampled in-edges.
    torch::Tensor sampled, layer_count = count;
    int64_t M = E;
    if (sample) {
      M = static_cast<int64_t>(std::floor(static_cast<double>(E) * options.edge_sample_ratio));
      at::Generator gen = at::detail::createCPUGenerator(options.edge_sample_seed + l);
      sampled = std::get<0>(torch::randperm(E, gen, torch::TensorOptions().dtype(torch::kInt64))
                                .narrow(0, 0, M)
                                .sort());
      sampled = sampled.to(x.device());
      layer_count = torch::bincount(dst.index_select(0, sampled), {}, N)
                        .to(torch::kFloat32)
                        .clamp_min(1)
                        .unsqueeze(1);
      if (trace) trace->sampled_edges.push_back(sampled.cpu());
    }
    for (int64_t b = 0; b < M; b += chunk) {
      const int64_t end = std::min(M, b + chunk);
      torch::Tensor d_c, s_c, e_c;
      if (sample) {
        const torch::Tensor ids = Rows(sampled, b, end);
        d_c = dst.index_select(0, ids);
        s_c = src.index_select(0, ids);
        e_c = AsProductInput(e.index_select(0, ids));
      } else {
        d_c = Rows(dst, b, end);
        s_c = Rows(src, b, end);
        e_c = EdgeRows(e, b, end);
      }
      torch::Tensor ab = encoder(e_c);
      // msg = a * (node_t[dst] + node_s[src]) + b, in place in one temporary (same operations
      // in the same order as the out-of-place form).
      torch::Tensor msg = node_t.index_select(0, d_c);
      msg.add_(node_s.index_select(0, s_c)).mul_(ab.narrow(1, 0, h)).add_(ab.narrow(1, h, h));
      // scatter_add_ over the expanded index is one vectorised kernel; LibTorch 1.13's CPU
      // index_add_ adds row by row (one tensor op per edge).
      agg.scatter_add_(0, d_c.unsqueeze(1).expand({-1, h}), msg);
    }
    agg.div_(layer_count);
    const torch::Tensor& w_post = W(cp + "post_nns.0.0.weight");
    torch::Tensor u =
        F::linear(hn, w_post.narrow(1, 0, h).contiguous(), W(cp + "post_nns.0.0.bias")) +
        F::linear(agg, w_post.narrow(1, h, h).contiguous());
    torch::Tensor z = F::linear(u, W(cp + "lin.weight"), W(cp + "lin.bias"));
    if (trace) (l == 0 ? trace->conv0_out : trace->conv1_out) = z.clone();
    hn = torch::silu(z);

    // Edge update with the new node features.
    const std::string up = absl::StrCat("gnn.edge_update.", l, ".");
    const torch::Tensor node_src = F::linear(hn, W(up + "lin_s.weight"), W(up + "lin_s.bias"));
    const torch::Tensor node_dst = F::linear(hn, W(up + "lin_t.weight"), W(up + "lin_t.bias"));
    // In place, chunk by chunk: a chunk's new features depend only on its own old features and
    // the node features, so one [E, h] buffer serves every layer.
    const EdgeLinear lin_e(W(up + "lin_e.weight"), W(up + "lin_e.bias"), product);
    const EdgeLinear lin_1(W(up + "lin1.weight"), W(up + "lin1.bias"), product);
    for (int64_t b = 0; b < E; b += chunk) {
      const int64_t end = std::min(E, b + chunk);
      // pre = lin_e(e) + node_src[src] + node_dst[dst], summed in place in that order.
      torch::Tensor pre = lin_e(EdgeRows(e, b, end));
      pre.add_(node_src.index_select(0, Rows(src, b, end)))
          .add_(node_dst.index_select(0, Rows(dst, b, end)));
      torch::silu_(pre);
      lin_1.Into(Rows(e, b, end), pre);  // pre no longer reads it: the product goes straight in
    }
    if (trace) (l == 0 ? trace->e1 : trace->e2) = TraceRows(e);
  }

  // Head: only output rows f*T + (k-1), f < F.
  const torch::Tensor rows = torch::arange(Fs, torch::kInt64).to(x.device()) * c.seq_len + (k - 1);
  const torch::Tensor w_sel = W("edge_out.fc.2.weight").index_select(0, rows);
  const torch::Tensor b_sel = W("edge_out.fc.2.bias").index_select(0, rows);
  const torch::Tensor w_sel_t = w_sel.t();
  const EdgeLinear out_0(W("edge_out.fc.0.weight"), W("edge_out.fc.0.bias"), product);
  torch::Tensor delta = torch::empty({E, Fs}, opts);
  for (int64_t b = 0; b < E; b += chunk) {
    const int64_t end = std::min(E, b + chunk);
    torch::Tensor q = out_0(EdgeRows(e, b, end));
    torch::silu_(q);
    torch::Tensor dr = Rows(delta, b, end);
    at::addmm_out(dr, b_sel, q, w_sel_t);
  }
  if (trace) trace->delta = delta.clone();
  // Residual: the scaled current state, column f*ctx + ctx-1.
  torch::Tensor last = x.view({E, Fs, ctx}).select(2, ctx - 1);
  return last + delta * c.upd_scale;
}

torch::Tensor NiNoModel::ForwardMlp(const torch::Tensor& x, const torch::Tensor& et, int k,
                                    NiNoTrace* trace, const ForwardOptions& options) const {
  const auto& c = config_;
  const int64_t E = x.size(0), ctx = c.ctx, Fs = x.size(1) / ctx;
  const int64_t R = E * Fs;
  const torch::Tensor xr = x.reshape({R, ctx});
  const torch::Tensor tr = et.repeat_interleave(Fs);
  // WNN+ has no edge state between layers and no message passing: only the chunk size applies.
  const int64_t chunk = ChunkFor(options, c.chunk_size, x.device());
  const torch::Tensor w6 = W("edge_mlp.fc.6.weight").narrow(0, k - 1, 1).contiguous();
  const torch::Tensor b6 = W("edge_mlp.fc.6.bias").narrow(0, k - 1, 1).contiguous();
  const torch::ScalarType product = options.matmul_dtype;
  const EdgeLinear fc_0(W("edge_mlp.fc.0.weight"), W("edge_mlp.fc.0.bias"), product);
  const EdgeLinear fc_2(W("edge_mlp.fc.2.weight"), W("edge_mlp.fc.2.bias"), product);
  const EdgeLinear fc_4(W("edge_mlp.fc.4.weight"), W("edge_mlp.fc.4.bias"), product);
  torch::Tensor delta = torch::empty({R}, x.options().dtype(torch::kFloat32));
  for (int64_t b = 0; b < R; b += chunk) {
    const int64_t end = std::min(R, b + chunk);
    torch::Tensor z =
        F::linear(Rows(xr, b, end), W("edge_proj.fc.0.weight"), W("edge_proj.fc.0.bias")) +
        W("layer_embed.weight").index_select(0, Rows(tr, b, end));
    if (trace && b == 0)
      trace->mlp_edge_proj = Rows(z, 0, std::min(end - b, trace->max_edge_rows)).clone();
    torch::Tensor g = torch::silu(fc_0(z));
    g = torch::silu(fc_2(g));
    g = torch::silu(fc_4(g));
    Rows(delta, b, end).copy_(F::linear(g, w6, b6).view({end - b}));
  }
  torch::Tensor d = delta.view({E, Fs});
  if (trace) trace->delta = d.clone();
  return xr.select(1, ctx - 1).view({E, Fs}) + d * c.upd_scale;
}

}  // namespace nino
