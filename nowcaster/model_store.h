// The NiNo checkpoints a nowcaster serves, loaded once at start-up and shared read-only by
// every job's NowcastEngine.
#ifndef NINO_NOWCASTER_MODEL_STORE_H_
#define NINO_NOWCASTER_MODEL_STORE_H_

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/nino/nino_model.h"
#include "nowcaster/options.h"

namespace nino::nowcaster {

// "cpu", "cuda" or "cuda:N". INVALID_ARGUMENT for other names and for CUDA in a build without
// NINO_WITH_CUDA; FAILED_PRECONDITION if the build has CUDA but the machine has no such GPU.
absl::StatusOr<torch::Device> ParseDevice(const std::string& name);

class ModelStore {
 public:
  struct Entry {
    std::string name;
    std::string path;    // empty for the built-in model
    std::string source;  // "embedded", "explicit", "cache", "download" or "shared"
    std::shared_ptr<const NiNoModel> model;
  };

  // Loads every spec onto `device`. A spec's path is anything common/nino/model_catalog.h
  // resolves: a file, "default" (the built-in model), or an official name (found in the cache,
  // downloaded only if allow_download, or in ../shared). No specs: the built-in model alone,
  // served as kDefaultModelName. Errors name the model.
  static absl::StatusOr<ModelStore> Load(const std::vector<ModelSpec>& specs,
                                         const torch::Device& device, bool allow_download);

  // nullptr if no model has this name. "default" names the built-in model (kDefaultModelName),
  // as it does in common/nino/model_catalog.h: served only where the store loaded it.
  const Entry* Find(absl::string_view name) const;
  // The first model: the one used when a request leaves nino_model empty.
  const Entry& default_entry() const { return entries_.front(); }
  const std::vector<Entry>& entries() const { return entries_; }
  // "a, b, c" for error messages.
  std::string Names() const;

 private:
  std::vector<Entry> entries_;
};

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_MODEL_STORE_H_
