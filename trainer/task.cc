#include "trainer/task.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "trainer/data/batch_sampler.h"
#include "trainer/data/fashion_mnist.h"
#include "trainer/data/text_corpus.h"
#include "trainer/models.h"

namespace nino::trainer {
namespace {

// This rank's contiguous share [begin, end) of n items.
std::pair<int64_t, int64_t> Shard(int64_t n, int rank, int world) {
  const int64_t base = n / world, extra = n % world;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

class VisionTask : public Task {
 public:
  // `train` holds all 60,000 training images: the first 55,000 are trained on (the official
  // split), the next 1,024 are the probe batch.
  VisionTask(TaskInfo info, VisionNetOptions net, ImageDataset train, ImageDataset test,
             const TaskOptions& o)
      : train_(Slice(train, 0, kTrainImages)),
        probe_(Slice(train, kTrainImages, kProbeImages)),
        test_(std::move(test)),
        sampler_(train_.labels.size(0), info.global_batch, o.seed, o.rank, o.world_size) {
    info_ = std::move(info);
    torch::manual_seed(o.seed);  // the same initial weights on every rank
    net_ = VisionNet(net);
    auto [b, e] = Shard(o.eval_limit > 0 ? std::min<int64_t>(o.eval_limit, test_.labels.size(0))
                                         : test_.labels.size(0),
                        o.rank, o.world_size);
    eval_x_ = test_.images.narrow(0, b, e - b);
    eval_y_ = test_.labels.narrow(0, b, e - b);
  }
  torch::nn::Module& module() override { return *net_; }
  torch::Tensor TrainLoss(int64_t step, double* local_mean) override {
    auto [epoch, batch] = BatchSampler::Position(step, sampler_.batches_per_epoch());
    torch::Tensor idx = sampler_.RankIndices(epoch, batch);
    const double global = static_cast<double>(sampler_.global_batch_size(batch));
    net_->train();
    if (idx.numel() == 0) {  // more ranks than examples in a last partial batch
      if (local_mean) *local_mean = 0;
      torch::Tensor zero;
      for (auto& p : net_->parameters()) zero = zero.defined() ? zero + p.sum() * 0 : p.sum() * 0;
      return zero;
    }
    torch::Tensor logits = net_->forward(train_.images.index_select(0, idx));
    torch::Tensor sum = torch::nn::functional::cross_entropy(
        logits, train_.labels.index_select(0, idx),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    if (local_mean) *local_mean = sum.item<double>() / idx.numel();
    return sum / global;
  }
  std::vector<double> EvalPartial() override {
    torch::NoGradGuard no_grad;
    net_->eval();
    double correct = 0, loss = 0;
    // 500 images: activations stay below 16 MB (cache- and allocator-friendly).
    const int64_t n = eval_y_.size(0), chunk = 500;
    for (int64_t b = 0; b < n; b += chunk) {
      const int64_t len = std::min(chunk, n - b);
      torch::Tensor logits = net_->forward(eval_x_.narrow(0, b, len));
      torch::Tensor y = eval_y_.narrow(0, b, len);
      correct += logits.argmax(1).eq(y).sum().item<double>();
      loss +=
          torch::nn::functional::cross_entropy(
              logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
              .item<double>();
    }
    return {correct, loss, static_cast<double>(n)};
  }
  double Metric(const std::vector<double>& s) const override {
    return s[2] > 0 ? 100.0 * s[0] / s[2] : 0;
  }
  double ProbeLoss() override {
    torch::NoGradGuard no_grad;
    net_->eval();
    return torch::nn::functional::cross_entropy(net_->forward(probe_.images), probe_.labels)
        .item<double>();
  }

  static constexpr int64_t kTrainImages = 55000, kProbeImages = 1024;

 private:
  static ImageDataset Slice(const ImageDataset& d, int64_t begin, int64_t n) {
    n = std::max<int64_t>(0, std::min(n, d.size() - begin));
    return {d.images.narrow(0, begin, n), d.labels.narrow(0, begin, n)};
  }
  ImageDataset train_, probe_, test_;
  BatchSampler sampler_;
  VisionNet net_{nullptr};
  torch::Tensor eval_x_, eval_y_;
};

class LmTask : public Task {
 public:
  LmTask(TaskInfo info, Gpt2Options net, TextSplits data, const TaskOptions& o)
      : data_(std::move(data)),
        batcher_(data_.train, net.n_positions, info.global_batch, o.seed, o.rank, o.world_size) {
    info_ = std::move(info);
    torch::manual_seed(o.seed);
    net_ = Gpt2LM(net);
    auto windows = EvalBatches(data_.val, net.n_positions, 16);
    int64_t n = static_cast<int64_t>(windows.size());
    if (o.eval_limit > 0) n = std::min(n, o.eval_limit);
    auto [b, e] = Shard(n, o.rank, o.world_size);
    eval_.assign(windows.begin() + b, windows.begin() + e);
  }
  torch::nn::Module& module() override { return *net_; }
  torch::Tensor TrainLoss(int64_t step, double* local_mean) override {
    auto [x, y] = batcher_.RankBatch(step);
    net_->train();
    const double global = static_cast<double>(info_.global_batch) * x.size(1);
    torch::Tensor logits = net_->forward(x);
    torch::Tensor sum = torch::nn::functional::cross_entropy(
        logits.reshape({-1, logits.size(-1)}), y.reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    if (local_mean) *local_mean = y.numel() ? sum.item<double>() / y.numel() : 0;
    return sum / global;
  }
  std::vector<double> EvalPartial() override {
    torch::NoGradGuard no_grad;
    net_->eval();
    double nll = 0, count = 0;
    for (const auto& [x, y] : eval_) {
      torch::Tensor logits = net_->forward(x);
      nll += torch::nn::functional::cross_entropy(
                 logits.reshape({-1, logits.size(-1)}), y.reshape({-1}),
                 torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                 .item<double>();
      count += y.numel();
    }
    return {nll, nll, count};
  }
  double Metric(const std::vector<double>& s) const override {
    return s[2] > 0 ? std::exp(s[0] / s[2]) : 0;
  }
  double ProbeLoss() override {
    torch::NoGradGuard no_grad;
    net_->eval();
    if (!probe_x_.defined()) {  // 8 windows spread over the training text, built once
      const int64_t ctx = net_->options().n_positions, n = data_.train.size(0) - ctx - 1;
      std::vector<torch::Tensor> xs, ys;
      for (int64_t i = 0; i < 8; ++i) {
        const int64_t at = n * i / 8;
        xs.push_back(data_.train.narrow(0, at, ctx));
        ys.push_back(data_.train.narrow(0, at + 1, ctx));
      }
      probe_x_ = torch::stack(xs);
      probe_y_ = torch::stack(ys);
    }
    torch::Tensor logits = net_->forward(probe_x_);
    return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                probe_y_.reshape({-1}))
        .item<double>();
  }

 private:
  torch::Tensor probe_x_, probe_y_;
  TextSplits data_;
  LmBatcher batcher_;
  Gpt2LM net_{nullptr};
  std::vector<std::pair<torch::Tensor, torch::Tensor>> eval_;
};

}  // namespace

std::vector<std::string> TaskNames() { return {"fm16", "fm32", "mlp", "lm"}; }

absl::StatusOr<std::unique_ptr<Task>> MakeTask(const TaskOptions& o) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("bad rank ", o.rank, " of ", o.world_size));
  }
  TaskInfo info;
  info.name = o.name;
  // The graph follows from the model's parameter names and shapes (InferGraphSpec); attention
  // models add their head count.
  info.graph.kind = GraphSpec::Kind::kAuto;
  const bool conv_task = o.name == "fm16" || o.name == "fm32";
  if (o.kernel_size != 0 && !conv_task) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kernel_size applies to the convolutional tasks fm16 and fm32 only, not ", o.name));
  }
  if (o.kernel_size < 0 || (o.kernel_size != 0 && o.kernel_size % 2 == 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel_size must be odd and positive, got ", o.kernel_size));
  }
  if (conv_task || o.name == "mlp") {
    VisionNetOptions net;
    if (o.kernel_size != 0) net.kernel_size = o.kernel_size;
    info.metric = "acc";
    info.higher_is_better = true;
    info.global_batch = o.global_batch > 0 ? o.global_batch : 128;
    if (o.name == "fm16") {
      info.lr = 6e-3;
      info.target = 89.5;
    } else if (o.name == "fm32") {
      net.hid = {32, 64, 64};
      info.lr = 6e-3;
      info.target = 90.5;
    } else {
      net.hid = {512, 512};
      net.conv = false;
      info.lr = 1e-3;
      info.target = 88.0;
    }
    const std::string dir =
        o.fashion_mnist_dir.empty() ? DefaultFashionMnistDir() : o.fashion_mnist_dir;
    auto train = LoadFashionMnist(dir, /*train=*/true);  // 55,000 trained on + the probe batch
    if (!train.ok()) return train.status();
    auto test = LoadFashionMnist(dir, /*train=*/false);
    if (!test.ok()) return test.status();
    return std::unique_ptr<Task>(new VisionTask(info, net, std::move(*train), std::move(*test), o));
  }
  if (o.name == "lm") {
    Gpt2Options net;  // 3 layers, d=64, 4 heads, bytes, context 128
    info.metric = "ppl";
    info.higher_is_better = false;
    // Adam's validation perplexity at step 10,000 (seed 1000, 4.105; docs/BENCHMARKS.md section 3),
    // as the official LM targets are set.
    info.target = 4.11;
    info.lr = 1e-3;
    info.weight_decay = 0.01;
    info.global_batch = o.global_batch > 0 ? o.global_batch : 32;
    info.graph.num_heads = net.n_head;
    const std::string cache = o.text_cache.empty() ? "/tmp/nino_kjv.txt" : o.text_cache;
    auto text = LoadKjvText(cache);
    if (!text.ok()) return text.status();
    return std::unique_ptr<Task>(new LmTask(info, net, SplitText(*text, 0.05), o));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown task '", o.name, "' (known: ", absl::StrJoin(TaskNames(), ", "), ")"));
}

}  // namespace nino::trainer
