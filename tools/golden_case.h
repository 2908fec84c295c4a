// Runs one case of the official-code golden data (shared/golden/README.md format) through our
// NiNo: builds the graph from the manifest's parameter table and graph_spec alone, compares the
// graph files exactly and the predicted parameters within a tolerance, and reports the
// intermediates (scaling, edge features, hidden states, head output) when a case fails.
#ifndef NINO_TOOLS_GOLDEN_CASE_H_
#define NINO_TOOLS_GOLDEN_CASE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/nino/nino_model.h"

namespace nino::golden {

struct CaseResult {
  std::string name;  // manifest "case", e.g. cnn/nino_no_posw/k10
  bool passed = false;
  std::string summary;               // one line
  std::vector<std::string> details;  // comparisons of intermediates
  double pred_max_abs = -1;
  bool graph_equal = false;
  std::vector<double> lpe_eigen_residuals;  // golden pos columns vs our Laplacian (GNN only)
  std::vector<double> lpe_rayleigh;
};

// All manifest.json files under `golden_dir`, sorted.
std::vector<std::string> FindManifests(const std::string& golden_dir);

// Loads NiNo checkpoints by file name from a directory once.
class ModelCache {
 public:
  // Models are loaded on the CPU and moved to `device` (e.g. CUDA for the CUDA/CPU check).
  explicit ModelCache(std::string ckpt_dir, torch::Device device = torch::kCPU)
      : dir_(std::move(ckpt_dir)), device_(device) {}
  torch::Device device() const { return device_; }
  absl::StatusOr<std::shared_ptr<const NiNoModel>> Get(const std::string& file_name,
                                                       const std::string& expected_sha256);

 private:
  std::string dir_;
  torch::Device device_;
  std::map<std::string, std::shared_ptr<const NiNoModel>> models_;
};

// Never throws; every problem ends up in the result.
// Runs one case on the models' device (the prediction is compared on the CPU). `forward` are the
// forward options (the default is the exact step; others measure an approximation's effect).
CaseResult RunCase(const std::string& golden_dir, const std::string& manifest_path,
                   ModelCache* models, double tolerance = 1e-5, const ForwardOptions& forward = {});

}  // namespace nino::golden

#endif  // NINO_TOOLS_GOLDEN_CASE_H_
