// Training windows cut from trajectory datasets (trainer/trajectory.h), exactly as the official
// SGDDataset (shared/spec/META_TRAINING.md section 2, steps 1-6):
//   * states 200 optimizer steps apart: a stride of 200 / every rows (50 for every-4-steps data);
//   * a slice start drawn uniformly from [0, rows - (ctx + min(seq_len, 2 ctx) + shifts) stride),
//     up to seq_len + ctx states from there;
//   * `shifts` (4) windows per slice, at shifts 0..3: inputs = ctx consecutive states, targets =
//     every later state of the slice, at most seq_len;
//   * GNN: one random sign per LPE column, the same for all windows of a slice.
// LM data: the official code keeps a random 1000 of the token-embedding rows (wte_size) for
// GPT-2 graphs. NOT IMPLEMENTED here (no LM trajectories exist yet): Open() refuses layouts
// whose graph is not the generic MLP/CNN chain, with a message saying so.
//
// Contract: every trajectory must be complete (manifest "complete": true) with at least
// (ctx + min(seq_len, 2 ctx) + shifts) * stride + 1 rows, and a row spacing that divides 200.
// Windows with identical (trajectory, start, shift, signs) give identical samples. Thread-
// compatible (the datasets are read-only maps).
#ifndef NINO_METATRAIN_TRAJECTORY_WINDOWS_H_
#define NINO_METATRAIN_TRAJECTORY_WINDOWS_H_

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "metatrain/graph_sample.h"
#include "metatrain/layout_graph.h"
#include "trainer/trajectory.h"

namespace nino::metatrain {

struct WindowOptions {
  int64_t ctx = 5;
  int64_t seq_len = 40;
  int64_t shifts = 4;         // samples_per_traj
  int64_t steps_apart = 200;  // optimizer steps between consecutive states of a window
  int64_t lpe_dim = 0;        // 8 for GNN training, 0 for WNN+
};

// One slice of one trajectory: its windows are the shifts 0..shifts-1.
struct SliceRef {
  int64_t trajectory = 0;
  int64_t start_row = 0;
  torch::Tensor pos_sign;  // [lpe_dim] +-1, or undefined (no flip / WNN+)
};

class TrajectoryWindows {
 public:
  // Opens the datasets in `dirs` (one graph per distinct parameter layout). FAILED_PRECONDITION
  // naming the folder for an incomplete or too short dataset, UNIMPLEMENTED for LM layouts.
  static absl::StatusOr<std::unique_ptr<TrajectoryWindows>> Open(
      const std::vector<std::string>& dirs, const WindowOptions& options);

  // A uniformly drawn trajectory and slice start, with random LPE signs (GNN).
  SliceRef SampleSlice(std::mt19937_64* rng) const;
  // `per_trajectory` slice starts evenly spaced over each trajectory's valid range, no sign
  // flips: the fixed validation windows.
  std::vector<SliceRef> EvenSlices(int64_t per_trajectory) const;
  // The `shifts` windows of a slice (or fewer when the slice has too few states).
  std::vector<GraphSample> Windows(const SliceRef& slice) const;

  int64_t num_trajectories() const { return static_cast<int64_t>(trajectories_.size()); }
  const std::string& dir(int64_t t) const { return trajectories_.at(t).dir; }
  const WindowOptions& options() const { return options_; }

 private:
  struct Trajectory {
    std::string dir;
    std::unique_ptr<trainer::TrajectoryReader> reader;
    std::shared_ptr<const LayoutGraph> graph;
    int64_t stride = 1;     // rows between states 200 steps apart
    int64_t max_start = 0;  // starts are drawn from [0, max_start)
  };
  explicit TrajectoryWindows(WindowOptions options) : options_(options) {}
  absl::Status Add(const std::string& dir);

  WindowOptions options_;
  std::vector<Trajectory> trajectories_;
  std::map<std::string, std::shared_ptr<const LayoutGraph>> graphs_;  // by layout key
};

// The complete trajectory datasets directly under `root` (folders with a manifest.json whose
// "complete" is true), sorted by name.
std::vector<std::string> CompleteDatasets(const std::string& root);

}  // namespace nino::metatrain

#endif  // NINO_METATRAIN_TRAJECTORY_WINDOWS_H_
