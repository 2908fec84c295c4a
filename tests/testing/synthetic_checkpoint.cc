#include "tests/testing/synthetic_checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace nino::testing {

NiNoConfig SyntheticConfig(SyntheticNiNo kind, int64_t hid) {
  NiNoConfig config;
  config.gnn = kind == SyntheticNiNo::kGnn;
  config.wte_pos_enc = false;  // nino_no_posw.pt's layout (no 50258-row word embedding)
  config.hid = hid;
  return config;
}

absl::StatusOr<std::string> WriteSyntheticCheckpoint(const std::string& path, SyntheticNiNo kind,
                                                     uint64_t seed, int64_t hid) {
  absl::StatusOr<NiNoModel> model = NiNoModel::Synthetic(SyntheticConfig(kind, hid), seed);
  if (!model.ok()) return model.status();
  if (absl::Status s = model->Save(path); !s.ok()) return s;
  return path;
}

std::string SharedSyntheticCheckpoint(SyntheticNiNo kind) {
  static std::mutex mu;
  static auto* written = new std::map<SyntheticNiNo, std::string>();
  std::lock_guard<std::mutex> lock(mu);
  auto it = written->find(kind);
  if (it != written->end()) return it->second;
  const std::string path =
      absl::StrCat(::testing::TempDir(), "/synthetic_nino_",
                   kind == SyntheticNiNo::kGnn ? "gnn" : "wnn", ".", getpid(), ".pt");
  absl::StatusOr<std::string> done = WriteSyntheticCheckpoint(path, kind);
  if (!done.ok()) {
    ADD_FAILURE() << "cannot write the synthetic NiNo checkpoint " << path << ": " << done.status();
    return "";
  }
  written->emplace(kind, path);
  return path;
}

}  // namespace nino::testing
