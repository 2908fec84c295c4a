#include "nowcaster/model_store.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/nino/default_model.h"
#include "common/nino/model_catalog.h"
#include "common/status/torch_guard.h"

namespace nino::nowcaster {

absl::StatusOr<torch::Device> ParseDevice(const std::string& name) {
  if (name == "cpu") return torch::Device(torch::kCPU);
  if (name != "cuda" && !absl::StartsWith(name, "cuda:")) {
    return absl::InvalidArgumentError(
        absl::StrCat("device '", name, "': expected cpu, cuda or cuda:N"));
  }
#ifdef NINO_WITH_CUDA
  int index = 0;
  if (name != "cuda" && (!absl::SimpleAtoi(name.substr(5), &index) || index < 0)) {
    return absl::InvalidArgumentError(absl::StrCat("device '", name, "': bad GPU index"));
  }
  if (!torch::cuda::is_available() || index >= static_cast<int>(torch::cuda::device_count())) {
    return absl::FailedPreconditionError(absl::StrCat("device '", name,
                                                      "': no such CUDA device on this machine (",
                                                      torch::cuda::device_count(), " visible)"));
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
#else
  return absl::InvalidArgumentError(
      absl::StrCat("device '", name,
                   "': this build has no CUDA (LibTorch without libtorch_cuda); "
                   "use --device=cpu or build with LIBTORCH pointing at a CUDA LibTorch"));
#endif
}

absl::StatusOr<ModelStore> ModelStore::Load(const std::vector<ModelSpec>& specs,
                                            const torch::Device& device, bool allow_download) {
  std::vector<ModelSpec> wanted = specs;
  if (wanted.empty()) wanted.push_back({kDefaultModelName, "default"});
  ModelStore store;
  for (const ModelSpec& spec : wanted) {
    absl::StatusOr<ResolvedModel> resolved = ResolveModel(spec.path, allow_download);
    if (!resolved.ok()) {
      return absl::Status(resolved.status().code(),
                          absl::StrCat("model ", spec.name, ": ", resolved.status().message()));
    }
    // A bare "default" names the built-in model by its own name.
    const bool bare = spec.name == spec.path;
    Entry e{bare ? resolved->name : spec.name, resolved->path, resolved->source, nullptr};
    absl::StatusOr<NiNoModel> model = LoadModel(*resolved);
    if (!model.ok()) {
      return absl::Status(model.status().code(),
                          absl::StrCat("model ", e.name, ": ", model.status().message()));
    }
    try {
      model->To(device);
    } catch (...) {  // out of device memory: RESOURCE_EXHAUSTED
      return StatusFromCurrentException(
          absl::StrCat("model ", e.name, ": cannot move to ", device.str()),
          absl::StatusCode::kInternal);
    }
    e.model = std::make_shared<const NiNoModel>(std::move(*model));
    store.entries_.push_back(std::move(e));
  }
  return store;
}

const ModelStore::Entry* ModelStore::Find(absl::string_view name) const {
  if (name == "default") name = kDefaultModelName;
  for (const Entry& e : entries_) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

std::string ModelStore::Names() const {
  std::vector<std::string> names;
  for (const Entry& e : entries_) names.push_back(e.name);
  return absl::StrJoin(names, ", ");
}

}  // namespace nino::nowcaster
