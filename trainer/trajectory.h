// Trajectory datasets for NiNo meta-training: the parameter snapshots of one training run in a
// compact, memory-mapped form (shared/spec/META_TRAINING.md, sections 1-2).
//
// A dataset is a folder:
//   states.f16      T rows of P float16 values (little-endian), row t = the flat parameters
//                   (named_parameters order) after `steps[t]` optimizer steps
//   manifest.json   {"format": "nino_trajectory/1", "task", "seed", "lr", "optimizer",
//                    "max_steps", "every", "num_params", "params": [{"name", "shape"}],
//                    "graph": {"kind", "num_heads", "num_kv_heads"}, "dtype": "float16",
//                    "steps": [...], "complete": bool, "states_sha256" (when complete),
//                    "metrics": {...} (the run's summary, when complete)}
//
// TrajectoryWriter appends rows as training goes; Flush() makes what was appended durable and
// consistent with the manifest (call it when the training checkpoint is written); a run resumed
// from its checkpoint at step s reopens the dataset with Open(..., s), which drops rows after s.
// Its writes go through an Env (common/env/env.h): states.f16 is fsynced before the manifest is
// replaced with WriteFileAtomically, so after a crash or a power loss the manifest never lists a
// row that states.f16 lacks.
// TrajectoryReader maps states.f16 read-only and checks it (sizes, non-finite values, checksum).
#ifndef NINO_TRAINER_TRAJECTORY_H_
#define NINO_TRAINER_TRAJECTORY_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/env/env.h"
#include "common/nino/neural_graph.h"

namespace nino::trainer {

inline constexpr char kTrajectoryFormat[] = "nino_trajectory/1";

struct TrajectoryInfo {
  std::string task;
  uint64_t seed = 0;
  double lr = 0;
  std::string optimizer;
  int64_t max_steps = 0;
  int64_t every = 4;  // steps between rows
  std::vector<std::pair<std::string, std::vector<int64_t>>> params;
  GraphSpec graph;
};

class TrajectoryWriter {
 public:
  // Creates `dir` (or reopens it when resume_step >= 0 and it holds a dataset of the same task,
  // seed and layout: rows after resume_step are dropped). FAILED_PRECONDITION when an existing
  // dataset belongs to another run; PERMISSION_DENIED/UNAVAILABLE for I/O failures.
  static absl::StatusOr<std::unique_ptr<TrajectoryWriter>> Open(Env* env, const std::string& dir,
                                                                TrajectoryInfo info,
                                                                int64_t resume_step);
  static absl::StatusOr<std::unique_ptr<TrajectoryWriter>> Open(const std::string& dir,
                                                                TrajectoryInfo info,
                                                                int64_t resume_step);

  // Appends `flat` ([P], any float dtype) as the row of `step` (steps must increase).
  absl::Status Append(int64_t step, const torch::Tensor& flat);
  // Makes the rows durable (fsync), then replaces the manifest (atomically and durably).
  absl::Status Flush();
  // Flush, checksum, "complete": true and the run's metrics in the manifest.
  absl::Status Finish(const nlohmann::json& metrics);

  int64_t rows() const { return static_cast<int64_t>(steps_.size()); }
  const TrajectoryInfo& info() const { return info_; }

 private:
  TrajectoryWriter(Env* env, std::string dir, TrajectoryInfo info);
  absl::Status WriteManifest(bool complete, const nlohmann::json& metrics, const std::string& sha);

  Env* env_;
  std::string dir_;
  TrajectoryInfo info_;
  int64_t num_params_ = 0;
  std::vector<int64_t> steps_;
  std::unique_ptr<WritableFile> states_;
};

class TrajectoryReader {
 public:
  // Reads the manifest and maps states.f16. DATA_LOSS naming the file when the manifest is
  // malformed or states.f16 does not hold exactly rows x num_params float16 values.
  static absl::StatusOr<std::unique_ptr<TrajectoryReader>> Open(const std::string& dir);
  ~TrajectoryReader();

  const nlohmann::json& manifest() const { return manifest_; }
  int64_t rows() const { return rows_; }
  int64_t num_params() const { return num_params_; }
  const std::vector<int64_t>& steps() const { return steps_; }
  // [rows, P] float16 over the mapping (valid while this reader lives; read-only).
  torch::Tensor states() const;

  struct CheckResult {
    int64_t non_finite = 0;         // NaN or Inf values
    bool checksum_checked = false;  // the manifest has one (complete datasets)
    bool checksum_ok = false;
  };
  CheckResult Check() const;

 private:
  TrajectoryReader() = default;
  nlohmann::json manifest_;
  std::vector<int64_t> steps_;
  int64_t rows_ = 0, num_params_ = 0;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
};

}  // namespace nino::trainer

#endif  // NINO_TRAINER_TRAJECTORY_H_
