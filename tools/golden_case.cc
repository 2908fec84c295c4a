#include "tools/golden_case.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/io/checkpoint_locator.h"
#include "common/nino/laplacian_pe.h"
#include "common/nino/neural_graph.h"
#include "common/nino/nowcast_engine.h"

namespace nino::golden {
namespace fs = std::filesystem;
using json = nlohmann::json;

std::vector<std::string> FindManifests(const std::string& golden_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(golden_dir, ec)) return out;
  for (auto it = fs::recursive_directory_iterator(golden_dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file() && it->path().filename() == "manifest.json")
      out.push_back(it->path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::shared_ptr<const NiNoModel>> ModelCache::Get(
    const std::string& file_name, const std::string& expected_sha256) {
  auto it = models_.find(file_name);
  if (it != models_.end()) return it->second;
  const std::string path = (fs::path(dir_) / file_name).string();
  if (!expected_sha256.empty()) {
    auto sha = io::Sha256File(path);
    if (!sha.ok()) return sha.status();
    if (*sha != expected_sha256) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": sha256 ", *sha, " differs from the manifest's ", expected_sha256));
    }
  }
  auto m = NiNoModel::Load(path);
  if (!m.ok()) return m.status();
  if (!device_.is_cpu()) m->To(device_);
  auto ptr = std::make_shared<const NiNoModel>(std::move(*m));
  models_[file_name] = ptr;
  return ptr;
}

namespace {

// Reads a raw little-endian file described by a manifest "files" entry.
absl::StatusOr<torch::Tensor> ReadRaw(const std::string& root, const json& entry) {
  const std::string path = (fs::path(root) / entry.at("path").get<std::string>()).string();
  const std::string dtype = entry.at("dtype").get<std::string>();
  std::vector<int64_t> shape = entry.at("shape").get<std::vector<int64_t>>();
  torch::ScalarType st;
  if (dtype == "float32")
    st = torch::kFloat32;
  else if (dtype == "int64")
    st = torch::kInt64;
  else
    return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported dtype ", dtype));
  torch::Tensor t = torch::empty(shape, st);
  const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  f.seekg(0, std::ios::end);
  const int64_t size = f.tellg();
  if (size != bytes) {
    return absl::DataLossError(absl::StrCat(path, ": ", size, " bytes, expected ", bytes, " for ",
                                            dtype, " ", entry.at("shape").dump()));
  }
  f.seekg(0);
  f.read(static_cast<char*>(t.data_ptr()), bytes);
  if (!f) return absl::DataLossError(absl::StrCat("short read of ", path));
  return t;
}

double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.numel() == 0) return 0;
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

std::string Compare(const std::string& what, const torch::Tensor& ours, const torch::Tensor& ref) {
  if (!ours.defined()) return absl::StrCat(what, ": not computed");
  if (ours.sizes() != ref.sizes()) {
    return absl::StrCat(what, ": shape ", c10::str(ours.sizes()), " vs reference ",
                        c10::str(ref.sizes()));
  }
  const double ref_max = ref.numel() ? ref.abs().max().item<double>() : 0;
  return absl::StrFormat("%s: max|diff| %.3g (reference max|x| %.3g)", what, MaxAbsDiff(ours, ref),
                         ref_max);
}

// First index where two int tensors differ, or -1.
int64_t FirstMismatch(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes()) return 0;
  torch::Tensor ne = (a.reshape({-1}) != b.reshape({-1})).nonzero();
  return ne.numel() ? ne[0][0].item<int64_t>() : -1;
}

}  // namespace

CaseResult RunCase(const std::string& golden_dir, const std::string& manifest_path,
                   ModelCache* models, double tolerance, const ForwardOptions& forward) {
  CaseResult r;
  r.name = manifest_path;
  try {
    std::ifstream mf(manifest_path);
    if (!mf) {
      r.summary = "cannot open manifest";
      return r;
    }
    json m = json::parse(mf);
    r.name = m.value("case", manifest_path);
    const json& files = m.at("files");
    auto file = [&](const std::string& key) -> absl::StatusOr<torch::Tensor> {
      if (!files.contains(key))
        return absl::NotFoundError(absl::StrCat("manifest has no file '", key, "'"));
      return ReadRaw(golden_dir, files.at(key));
    };
    auto fail = [&](const std::string& why) {
      r.passed = false;
      r.summary = why;
      return r;
    };

    // Parameter table and graph, from the manifest alone.
    std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
    for (const auto& p : m.at("params"))
      shapes.push_back({p.at("name"), p.at("shape").get<std::vector<int64_t>>()});
    auto table = MakeParamTable(shapes);
    if (!table.ok()) return fail(std::string(table.status().message()));
    for (size_t i = 0; i < table->size(); ++i) {
      const json& p = m.at("params")[i];
      if (p.contains("offset") && p.at("offset").get<int64_t>() != (*table)[i].offset) {
        return fail(
            absl::StrCat("parameter ", (*table)[i].name, " offset differs from the manifest"));
      }
    }
    const json gs = m.value("graph_spec", json::object());
    auto spec = ParseGraphKind(gs.value("kind", "generic"), gs.value("num_heads", 0));
    if (!spec.ok()) return fail(std::string(spec.status().message()));

    auto model =
        models->Get(m.at("checkpoint").get<std::string>(), m.value("checkpoint_sha256", ""));
    if (!model.ok()) return fail(absl::StrCat("checkpoint: ", model.status().message()));
    NowcastEngineOptions eo;
    eo.forward = forward;
    eo.lpe.sign_seed = 0;
    eo.compute_lpe = !files.contains("pos");
    eo.device = models->device();
    auto engine_or = NowcastEngine::Create(*model, *table, *spec, eo);
    if (!engine_or.ok()) return fail(absl::StrCat("graph: ", engine_or.status().message()));
    NowcastEngine& engine = **engine_or;
    const NeuralGraph& g = engine.graph();

    // Graph files: exact equality.
    r.graph_equal = true;
    if (m.contains("num_nodes") && m.at("num_nodes").get<int64_t>() != g.num_nodes) {
      r.graph_equal = false;
      r.details.push_back(
          absl::StrCat("num_nodes ", g.num_nodes, " vs ", m.at("num_nodes").get<int64_t>()));
    }
    if (m.contains("num_edges") && m.at("num_edges").get<int64_t>() != g.num_edges()) {
      r.graph_equal = false;
      r.details.push_back(
          absl::StrCat("num_edges ", g.num_edges(), " vs ", m.at("num_edges").get<int64_t>()));
    }
    const std::vector<std::pair<std::string, torch::Tensor>> ours = {
        {"edge_index", g.EdgeIndexTensor()},
        {"edge_type", g.EdgeTypeTensor()},
        {"param_index", g.ParamIndexTensor()},
        {"pos_w", g.PosWTensor()}};
    for (const auto& [key, t] : ours) {
      if (!files.contains(key)) continue;
      auto ref = file(key);
      if (!ref.ok()) return fail(std::string(ref.status().message()));
      if (ref->sizes() != t.sizes()) {
        r.graph_equal = false;
        r.details.push_back(
            absl::StrCat(key, ": shape ", c10::str(t.sizes()), " vs ", c10::str(ref->sizes())));
      } else if (int64_t i = FirstMismatch(t, *ref); i >= 0) {
        r.graph_equal = false;
        r.details.push_back(absl::StrCat(key, ": first difference at flat index ", i, ": ",
                                         t.reshape({-1})[i].item<int64_t>(), " vs ",
                                         ref->reshape({-1})[i].item<int64_t>()));
      }
    }

    // Positional encoding: the official one (LPE is not unique), checked against our Laplacian.
    if ((*model)->is_gnn()) {
      if (files.contains("pos")) {
        auto pos = file("pos");
        if (!pos.ok()) return fail(std::string(pos.status().message()));
        absl::Status s = engine.SetPositionalEncoding(*pos);
        if (!s.ok()) return fail(std::string(s.message()));
        LaplacianResiduals(g, *pos, &r.lpe_rayleigh, &r.lpe_eigen_residuals);
      } else {
        r.details.push_back(
            "no pos file: using our own Laplacian encoding (exact parity not expected)");
      }
    }

    auto states = file("states");
    if (!states.ok()) return fail(std::string(states.status().message()));
    const int k = m.at("k").get<int>();
    NowcastDetails det;
    // The official wrapper's upd_scale applies here too.
    if (m.contains("upd_scale"))
      const_cast<NiNoModel&>(engine.model()).set_upd_scale(m.at("upd_scale").get<double>());
    auto pred = engine.Nowcast(*states, k, &det);
    if (!pred.ok()) return fail(absl::StrCat("nowcast: ", pred.status().message()));
    auto ref_pred = file("pred");
    if (!ref_pred.ok()) return fail(std::string(ref_pred.status().message()));
    if (ref_pred->sizes() != pred->sizes()) return fail("prediction size differs");
    r.pred_max_abs = MaxAbsDiff(*pred, *ref_pred);

    // Intermediates.
    auto add = [&](const std::string& key, const torch::Tensor& t) {
      if (!files.contains(key) || !t.defined()) return;
      auto ref = file(key);
      if (ref.ok()) {
        torch::Tensor cmp = t.cpu();
        if (t.dim() == 2 && ref->dim() == 2 && t.size(0) > ref->size(0))
          cmp = t.narrow(0, 0, ref->size(0));
        r.details.push_back(Compare(key, cmp, *ref));
      }
    };
    add("scaled_states", det.scaled.scaled);
    add("scales", torch::stack({det.scaled.mu, det.scaled.sigma}, 1));
    add("edge_attr_scaled", det.edge_attr);
    add("hidden_h0", det.trace.h0);
    add("hidden_e0", det.trace.e0);
    add("hidden_conv0_out", det.trace.conv0_out);
    add("hidden_e1", det.trace.e1);
    add("hidden_conv1_out", det.trace.conv1_out);
    add("hidden_e2", det.trace.e2);
    add("hidden_mlp_edge_proj", det.trace.mlp_edge_proj);
    add("delta", det.trace.delta);
    add("pred_edges", det.pred_edges);
    add("pred_scaled_flat", det.pred_scaled_flat);
    r.details.push_back(Compare("pred", *pred, *ref_pred));

    r.passed = r.graph_equal && r.pred_max_abs <= tolerance;
    r.summary = absl::StrFormat("graph %s, E=%d N=%d F=%d, k=%d, pred max|diff| %.3g (tol %.0e)",
                                r.graph_equal ? "equal" : "DIFFERS", g.num_edges(), g.num_nodes,
                                g.feat_size, k, r.pred_max_abs, tolerance);
  } catch (const std::exception& e) {
    r.passed = false;
    r.summary = absl::StrCat("error: ", e.what());
  }
  return r;
}

}  // namespace nino::golden
