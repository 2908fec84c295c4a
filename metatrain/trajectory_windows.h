// Training windows cut from trajectory datasets (trainer/trajectory.h), exactly as the official
// SGDDataset (shared/spec/META_TRAINING.md section 2, steps 1-7):
//   * states 200 optimizer steps apart: a stride of 200 / every rows (50 for every-4-steps data,
//     1 for the LM's every-200-steps data);
//   * a slice start drawn uniformly from [0, rows - (ctx + min(seq_len, 2 ctx) + shifts) stride),
//     up to seq_len + ctx states from there;
//   * `shifts` (4) windows per slice, at shifts 0..3: inputs = ctx consecutive states, targets =
//     every later state of the slice, at most seq_len;
//   * GNN: one random sign per LPE column, the same for all windows of a slice;
//   * LM (GPT-2 / Llama graphs, from the manifest's graph spec): when the token embedding has
//     more than wte_size rows, one random subset of wte_size token rows per slice, the same for
//     all its windows (TokenSubsample): the graph (and its LPE) is built once for the reduced
//     layout, the windows gather the kept rows from the flat states and pos_w holds the kept
//     token ids + 1. With <= wte_size rows nothing is subsampled;
//   * the official LM quirk (item 7): for a layout whose first tensor is GPT-2's wte (the
//     official condition, `name.endswith('wte.weight') and is_train`), one global mu/sigma over
//     the whole (reduced) flat vector instead of per tensor, unless lm_global_scale is false.
// Random draws (trajectory, start, LPE signs, then the token subset) come from the caller's RNG
// in that order, so a sampler restored from its saved state draws the same slices.
//
// Contract: every trajectory must be complete (manifest "complete": true) with at least
// (ctx + min(seq_len, 2 ctx) + shifts) * stride + 1 rows, and a row spacing that divides 200.
// Windows with identical SliceRefs give identical samples. Thread-compatible (the datasets are
// read-only maps).
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
#include "metatrain/token_subsample.h"
#include "trainer/trajectory.h"

namespace nino::metatrain {

struct WindowOptions {
  int64_t ctx = 5;
  int64_t seq_len = 40;
  int64_t shifts = 4;           // samples_per_traj
  int64_t steps_apart = 200;    // optimizer steps between consecutive states of a window
  int64_t lpe_dim = 0;          // 8 for GNN training, 0 for WNN+
  int64_t wte_size = 1000;      // token-embedding rows kept per LM sample; 0: keep all
  bool lm_global_scale = true;  // the official GPT-2 training quirk (see above)
  uint64_t eval_seed = 0;       // seeds EvenSlices' token subsets
};

// One slice of one trajectory: its windows are the shifts 0..shifts-1.
struct SliceRef {
  int64_t trajectory = 0;
  int64_t start_row = 0;
  torch::Tensor pos_sign;  // [lpe_dim] +-1, or undefined (no flip / WNN+)
  // [wte_size] int64 kept token ids, sorted, for a subsampled LM trajectory; undefined
  // otherwise (a subsampled trajectory then keeps the tokens 0..wte_size-1).
  torch::Tensor token_ids;
};

class TrajectoryWindows {
 public:
  // Opens the datasets in `dirs` (one graph per distinct parameter layout). FAILED_PRECONDITION
  // naming the folder for an incomplete or too short dataset; the graph builders' and
  // TokenSubsample's INVALID_ARGUMENT for a layout they cannot map.
  static absl::StatusOr<std::unique_ptr<TrajectoryWindows>> Open(
      const std::vector<std::string>& dirs, const WindowOptions& options);

  // A uniformly drawn trajectory and slice start, with random LPE signs (GNN) and, for a
  // subsampled LM trajectory, a random token subset.
  SliceRef SampleSlice(std::mt19937_64* rng) const;
  // `per_trajectory` slice starts evenly spaced over each trajectory's valid range, no sign
  // flips: the fixed validation windows. A subsampled LM trajectory's slice i of trajectory t
  // keeps the token subset drawn from std::mt19937_64(eval_seed + 1000003 * t + i): the same
  // windows on every call and in every run with the same datasets in the same order.
  std::vector<SliceRef> EvenSlices(int64_t per_trajectory) const;
  // The slice's states as the graph sees them: [n, P'] float32, n = up to ctx + seq_len states
  // `stride` rows apart, P' = the reduced layout's size (the kept token rows gathered).
  torch::Tensor SliceStates(const SliceRef& slice) const;
  // The `shifts` windows of a slice (or fewer when the slice has too few states).
  std::vector<GraphSample> Windows(const SliceRef& slice) const;

  int64_t num_trajectories() const { return static_cast<int64_t>(trajectories_.size()); }
  const std::string& dir(int64_t t) const { return trajectories_.at(t).dir; }
  const WindowOptions& options() const { return options_; }
  // The graph the windows of trajectory t use (the reduced layout's for subsampled LM data).
  const LayoutGraph& graph(int64_t t) const { return *trajectories_.at(t).graph; }
  // Trajectory t's token subsampling (inactive when nothing is subsampled).
  const TokenSubsample& tokens(int64_t t) const { return *trajectories_.at(t).tokens; }

 private:
  struct Trajectory {
    std::string dir;
    std::unique_ptr<trainer::TrajectoryReader> reader;
    std::shared_ptr<const LayoutGraph> graph;
    std::shared_ptr<const TokenSubsample> tokens;
    int64_t stride = 1;     // rows between states 200 steps apart
    int64_t max_start = 0;  // starts are drawn from [0, max_start)
  };
  explicit TrajectoryWindows(WindowOptions options) : options_(options) {}
  absl::Status Add(const std::string& dir);
  // The slice's kept token ids (the default 0..wte_size-1 when it has none).
  torch::Tensor TokenIds(const SliceRef& slice) const;

  WindowOptions options_;
  std::vector<Trajectory> trajectories_;
  std::map<std::string, std::shared_ptr<const LayoutGraph>> graphs_;  // by reduced layout key
};

// The complete trajectory datasets directly under `root` (folders with a manifest.json whose
// "complete" is true), sorted by name.
std::vector<std::string> CompleteDatasets(const std::string& root);

}  // namespace nino::metatrain

#endif  // NINO_METATRAIN_TRAJECTORY_WINDOWS_H_
