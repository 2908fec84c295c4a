// Training tasks: a model, its data and its evaluation, sharded for data parallelism.
//
// Tasks (settings of the official code where it has them, shared/spec/META_TRAINING.md §6):
//   fm16, fm32  FashionMNIST, the official 3-layer CNNs; Adam lr 6e-3, batch 128; first 55,000
//               training images; test accuracy on the 10,000 test images; targets 89.5% / 90.5%.
//   mlp         FashionMNIST, MLP 784-512-512-10; Adam lr 1e-3, batch 128; target 88.0%.
//   lm          byte-level GPT-2 (3 layers, d=64, 4 heads, context 128) on the KJV Bible;
//               AdamW lr 1e-3 (weight decay 0.01 except biases/norms), batch 32; last 5% of the
//               text held out; target validation perplexity 4.11, Adam's at step 10,000
//               (docs/BENCHMARKS.md).
#ifndef NINO_TRAINER_TASK_H_
#define NINO_TRAINER_TASK_H_

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/nino/neural_graph.h"

namespace nino::trainer {

struct TaskInfo {
  std::string name;
  std::string metric;  // "acc" (percent, higher is better) or "ppl" (lower is better)
  bool higher_is_better = true;
  double target = 0;
  double lr = 1e-3;
  double weight_decay = 0;  // decoupled (AdamW); 0 = plain Adam
  int64_t global_batch = 128;
  GraphSpec graph;  // how NiNo sees the model
};

struct TaskOptions {
  std::string name = "fm16";
  uint64_t seed = 1000;
  int rank = 0;
  int world_size = 1;
  std::string fashion_mnist_dir;  // empty: default
  std::string text_cache;         // lm: where the KJV text is cached
  int64_t global_batch = 0;       // 0: the task's default
  int64_t eval_limit = 0;         // >0: evaluate on the first N examples / windows only
  int64_t kernel_size = 0;        // fm16 / fm32: conv kernel size (0: the official 3)
};

class Task {
 public:
  virtual ~Task() = default;
  const TaskInfo& info() const { return info_; }
  virtual torch::nn::Module& module() = 0;
  // Loss of this rank's share of the global batch of `step`: the SUM of per-example (per-token)
  // losses divided by the global count, so that summing gradients over ranks gives exactly the
  // gradient of the global mean loss. `*local_mean` receives this rank's mean loss.
  virtual torch::Tensor TrainLoss(int64_t step, double* local_mean) = 0;
  // Partial sums over this rank's shard of the evaluation set: {correct or nll_sum, loss_sum,
  // count}; the trainer sums them over ranks and calls Metric().
  virtual std::vector<double> EvalPartial() = 0;
  virtual double Metric(const std::vector<double>& sums) const = 0;
  // Mean loss on a fixed held-out batch, the same on every rank (eval mode, no gradients), for
  // NiNo's step search: vision, 1,024 training images (55,000..56,023) that training never
  // sees; LM, 8 fixed windows of the training text.
  virtual double ProbeLoss() = 0;
  static double EvalLoss(const std::vector<double>& sums) {
    return sums[2] > 0 ? sums[1] / sums[2] : 0;
  }
  bool Reached(double metric) const {
    return info_.higher_is_better ? metric >= info_.target : metric <= info_.target;
  }

 protected:
  TaskInfo info_;
};

std::vector<std::string> TaskNames();
absl::StatusOr<std::unique_ptr<Task>> MakeTask(const TaskOptions& options);

}  // namespace nino::trainer

#endif  // NINO_TRAINER_TASK_H_
