// nino_metatrain: meta-trains a NiNo (WNN+ or GNN) on trajectory datasets recorded by
// `nino_train --record_dir` (shared/spec/META_TRAINING.md recipe), or evaluates checkpoints on
// held-out trajectories.
//
//   nino_metatrain --data_root /work/data/trajectories --val_dirs A,B --variant wnn --hid 128
//       --steps 2000 --threads 1 --out_dir runs/meta-wnn --model_out models/nino_wnn_fm16.pt
//   nino_metatrain --eval_ckpts a.pt,b.pt --val_dirs A,B          # validation L1 per checkpoint
//
// Restarting the same training command resumes from <out_dir>/train_state.pt.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "common/nino/nino_model.h"
#include "common/runtime/allocator.h"
#include "common/runtime/list_flags.h"
#include "metatrain/metatrainer.h"
#include "metatrain/validation.h"

ABSL_FLAG(std::string, data_root, "", "folder of trajectory datasets (complete ones are used)");
ABSL_FLAG(std::vector<std::string>, train_dirs, {}, "datasets to train on (else --data_root)");
ABSL_FLAG(std::vector<std::string>, val_dirs, {}, "held-out datasets (never trained on)");
ABSL_FLAG(std::string, variant, "wnn", "wnn (WNN+, as nino_mlp.pt) or gnn (as nino_no_posw.pt)");
ABSL_FLAG(int64_t, hid, 128, "hidden size");
ABSL_FLAG(int64_t, max_feat_size, 9,
          "feature slots per edge the model takes: 9 (3x3 kernels, as the official models) or "
          "more, e.g. 25 for 5x5 kernels");
ABSL_FLAG(int64_t, steps, 20000, "optimizer steps (the cosine schedule spans them)");
ABSL_FLAG(int64_t, batch, 4, "trajectory slices per batch (x4 shifted windows = graphs)");
ABSL_FLAG(double, lr, 3e-3, "AdamW learning rate");
ABSL_FLAG(double, min_lr, 1e-6, "cosine schedule's final learning rate");
ABSL_FLAG(double, wd, 1e-2, "AdamW weight decay");
ABSL_FLAG(double, clip, 5.0, "global gradient-norm clip");
ABSL_FLAG(uint64_t, seed, 0, "initialisation and sampling seed");
ABSL_FLAG(std::string, out_dir, "", "train_state.pt, metrics.jsonl, nino.pt");
ABSL_FLAG(std::string, model_out, "", "final model in the official layout (default out_dir)");
ABSL_FLAG(int64_t, ckpt_every, 200, "steps between checkpoints");
ABSL_FLAG(int64_t, log_every, 50, "steps between progress lines");
ABSL_FLAG(int64_t, val_every, 0, "steps between validations (0: at the end)");
ABSL_FLAG(int64_t, val_slices, 8, "validation slices per held-out trajectory (x4 windows)");
ABSL_FLAG(int64_t, wte_size, 1000,
          "LM data: token-embedding rows kept per sample (official 1000; 0 keeps all)");
ABSL_FLAG(bool, lm_global_scale, true,
          "LM data: one global mu/sigma for GPT-2 layouts (the official training quirk)");
ABSL_FLAG(double, max_seconds, 0, "stop (resumably) after this many seconds; 0: no limit");
ABSL_FLAG(int64_t, stop_at, 0, "stop (resumably) at this step; 0: run to --steps");
ABSL_FLAG(int, threads, 1, "intra-op threads (at::set_num_threads)");
ABSL_FLAG(std::string, device, "cpu", "cpu, or cuda[:i] in CUDA builds");
ABSL_FLAG(std::vector<std::string>, eval_ckpts, {},
          "evaluate these NiNo checkpoints on --val_dirs instead of training");

namespace {

using nino::metatrain::MetaTrainOptions;

std::vector<std::string> TrainDirs(const std::vector<std::string>& val) {
  std::vector<std::string> dirs = absl::GetFlag(FLAGS_train_dirs);
  if (!dirs.empty() || absl::GetFlag(FLAGS_data_root).empty()) return dirs;
  std::set<std::string> held;
  for (const auto& v : val) held.insert(std::filesystem::weakly_canonical(v).string());
  for (const auto& d : nino::metatrain::CompleteDatasets(absl::GetFlag(FLAGS_data_root))) {
    if (!held.count(std::filesystem::weakly_canonical(d).string())) dirs.push_back(d);
  }
  return dirs;
}

int Evaluate(const torch::Device& device) {
  using namespace nino::metatrain;
  const auto val_dirs = absl::GetFlag(FLAGS_val_dirs);
  for (const auto& path : absl::GetFlag(FLAGS_eval_ckpts)) {
    auto model = nino::NiNoModel::Load(path);
    if (!model.ok()) {
      std::fprintf(stderr, "%s\n", std::string(model.status().message()).c_str());
      return 1;
    }
    auto trainable = TrainableNiNo::FromModel(*model);
    if (!trainable.ok()) return 1;
    (*trainable)->to(device);
    (*trainable)->eval();
    WindowOptions w;
    w.lpe_dim = model->is_gnn() ? model->config().lpe : 0;
    w.wte_size = absl::GetFlag(FLAGS_wte_size);
    w.lm_global_scale = absl::GetFlag(FLAGS_lm_global_scale);
    auto data = TrajectoryWindows::Open(val_dirs, w);
    if (!data.ok()) {
      std::fprintf(stderr, "%s\n", std::string(data.status().message()).c_str());
      return 1;
    }
    const ValidationResult r =
        Validate(**trainable, **data, (*data)->EvenSlices(absl::GetFlag(FLAGS_val_slices)), device);
    nlohmann::json j = {
        {"ckpt", path},         {"val_l1", r.l1},     {"val_l1_no_change", r.l1_no_change},
        {"windows", r.windows}, {"entries", r.count}, {"l1_per_horizon", r.l1_per_horizon}};
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("meta-trains a NiNo on trajectory datasets (see --help)");
  nino::runtime::TuneAllocatorForTensors();
  absl::ParseCommandLine(argc, argv);
  if (absl::Status s =
          nino::runtime::AccumulateListFlags(argc, argv, {"train_dirs", "val_dirs", "eval_ckpts"});
      !s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  const torch::Device device(absl::GetFlag(FLAGS_device));
  if (device.is_cuda() && !torch::cuda::is_available()) {
    std::fprintf(stderr, "--device %s: this build or machine has no CUDA\n",
                 absl::GetFlag(FLAGS_device).c_str());
    return 2;
  }
  if (!absl::GetFlag(FLAGS_eval_ckpts).empty()) return Evaluate(device);
  const std::string variant = absl::GetFlag(FLAGS_variant);
  if (variant != "wnn" && variant != "gnn") {
    std::fprintf(stderr, "--variant must be wnn or gnn\n");
    return 2;
  }
  MetaTrainOptions o;
  o.val_dirs = absl::GetFlag(FLAGS_val_dirs);
  o.train_dirs = TrainDirs(o.val_dirs);
  o.gnn = variant == "gnn";
  o.hid = absl::GetFlag(FLAGS_hid);
  o.max_feat_size = absl::GetFlag(FLAGS_max_feat_size);
  o.steps = absl::GetFlag(FLAGS_steps);
  o.batch_trajectories = absl::GetFlag(FLAGS_batch);
  o.lr = absl::GetFlag(FLAGS_lr);
  o.min_lr = absl::GetFlag(FLAGS_min_lr);
  o.weight_decay = absl::GetFlag(FLAGS_wd);
  o.clip = absl::GetFlag(FLAGS_clip);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.out_dir = absl::GetFlag(FLAGS_out_dir);
  o.model_out = absl::GetFlag(FLAGS_model_out);
  o.ckpt_every = absl::GetFlag(FLAGS_ckpt_every);
  o.log_every = absl::GetFlag(FLAGS_log_every);
  o.val_every = absl::GetFlag(FLAGS_val_every);
  o.val_slices = absl::GetFlag(FLAGS_val_slices);
  o.wte_size = absl::GetFlag(FLAGS_wte_size);
  o.lm_global_scale = absl::GetFlag(FLAGS_lm_global_scale);
  o.max_seconds = absl::GetFlag(FLAGS_max_seconds);
  o.stop_at = absl::GetFlag(FLAGS_stop_at);
  o.device = device;
  std::fprintf(stderr, "%zu training datasets, %zu held out\n", o.train_dirs.size(),
               o.val_dirs.size());
  auto trainer = nino::metatrain::MetaTrainer::Create(std::move(o));
  if (!trainer.ok()) {
    std::fprintf(stderr, "%s\n", trainer.status().ToString().c_str());
    return 1;
  }
  absl::Status s = (*trainer)->Run();
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  std::fprintf(stderr, "%s at step %lld, %.1f s of training\n",
               (*trainer)->finished() ? "finished" : "stopped",
               static_cast<long long>((*trainer)->progress().step),
               (*trainer)->progress().wall_seconds);
  return 0;
}
