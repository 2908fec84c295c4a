// A C++ user's own LeNet-5 (5x5 convolutions, max-pooling, flatten, linear layers), described
// with ModelDescriptionBuilder and trained with NowcastOptimizer: the parameter names alone map
// to no graph, the description does, and the NiNo step through a nino_nowcaster (in process on
// 127.0.0.1, synthetic WNN+ checkpoint) applies exactly what the in-process engine predicts.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <string>

#include "client/nino_client.h"
#include "common/nino/model_description.h"
#include "common/nino/nino_model.h"
#include "common/nino/nino_optimizer.h"
#include "common/nino/nowcast_engine.h"
#include "tests/testing/described_models.h"
#include "tests/testing/loopback_nowcaster.h"
#include "tests/testing/synthetic_checkpoint.h"

namespace nino::client {
namespace {

// LeNet-5 for 28x28 images; named_parameters() is testing::LeNet5Layout().
struct LeNet5Impl : torch::nn::Module {
  LeNet5Impl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 6, 5)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(6, 16, 5)))),
        fc1(register_module("fc1", torch::nn::Linear(256, 120))),
        fc2(register_module("fc2", torch::nn::Linear(120, 84))),
        fc3(register_module("fc3", torch::nn::Linear(84, 10))) {}
  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(conv1(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2(x)), 2);
    x = torch::flatten(x, 1);
    return fc3(torch::relu(fc2(torch::relu(fc1(x)))));
  }
  torch::nn::Conv2d conv1, conv2;
  torch::nn::Linear fc1, fc2, fc3;
};
TORCH_MODULE(LeNet5);

// What the user writes next to the model: its connectivity (docs/GRAPH_DESCRIPTION.md).
GraphSpec DescribeLeNet5() {
  ModelDescriptionBuilder b;
  std::string x = b.Input(1);
  x = b.Alias(b.Alias(b.Dense(x, "conv1.weight", "conv1.bias"), "relu"), "max_pool2d");
  x = b.Alias(b.Alias(b.Dense(x, "conv2.weight", "conv2.bias"), "relu"), "max_pool2d");
  x = b.Flatten(x, 4 * 4);
  x = b.Alias(b.Dense(x, "fc1.weight", "fc1.bias"), "relu");
  x = b.Alias(b.Dense(x, "fc2.weight", "fc2.bias"), "relu");
  b.Dense(x, "fc3.weight", "fc3.bias");
  GraphSpec spec;
  spec.kind = GraphSpec::Kind::kDescribed;
  spec.description = std::make_shared<const ModelDescription>(b.description());
  return spec;
}

// One training run of 10 calls (period 10, ctx 5: the 10th call is a NiNo step) from the same
// initial parameters and batches.
struct TrainingRun {
  LeNet5 net;
  torch::optim::SGD sgd;
  TrainingRun() : net(MakeNet()), sgd(net->parameters(), torch::optim::SGDOptions(0.05)) {}
  static LeNet5 MakeNet() {
    torch::manual_seed(11);
    return LeNet5();
  }
  void Train(NowcastOptimizer& opt) {
    torch::manual_seed(12);
    const torch::Tensor images = torch::randn({8, 1, 28, 28});
    const torch::Tensor labels = torch::randint(0, 10, {8}, torch::kLong);
    for (int i = 0; i < 10; ++i) {
      sgd.zero_grad();
      if (opt.need_grads()) {
        torch::nn::functional::cross_entropy(net->forward(images), labels).backward();
      }
      last = opt.step();
    }
  }
  NinoStepOutcome last;
};

NowcastOptimizerOptions Options() {
  NowcastOptimizerOptions o;
  o.period = 10;
  o.ctx = 5;
  o.max_train_steps = 100;
  o.nino_model = "nino_mlp";
  o.quiet = true;
  return o;
}

TEST(DescribedModel, RemoteAndInProcessNiNoStepsAgreeForALeNet5) {
  // WNN+ at hidden size 32: LeNet-5's 42,732 edges x 25 slots are 1.07M rows per nowcast.
  auto written = testing::WriteSyntheticCheckpoint(::testing::TempDir() + "/lenet5_wnn_h32.pt",
                                                   testing::SyntheticNiNo::kWnn, 0, /*hid=*/32);
  ASSERT_TRUE(written.ok()) << written.status();
  const std::string ckpt = *written;
  auto server = testing::StartLoopbackNowcaster(testing::LoopbackNowcasterOptions(
      {{"nino_mlp", ckpt}}));  // 5x5 kernels: 25 slots per edge, a WNN+ checkpoint
  ASSERT_TRUE(server.ok()) << server.status();

  // In process: the engine built from the same description and checkpoint.
  TrainingRun local;
  auto model = NiNoModel::Load(ckpt);
  ASSERT_TRUE(model.ok()) << model.status();
  auto table = MakeParamTable(testing::LeNet5Layout());
  ASSERT_TRUE(table.ok());
  auto engine = NowcastEngine::Create(std::make_shared<const NiNoModel>(std::move(*model)), *table,
                                      DescribeLeNet5());
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto local_opt = NowcastOptimizer::CreateWithNowcaster(
      &local.sgd, NamedParameters(*local.net), Options(),
      std::make_shared<InProcessNowcaster>(std::shared_ptr<NowcastEngine>(std::move(*engine))));
  ASSERT_TRUE(local_opt.ok()) << local_opt.status();
  local.Train(**local_opt);
  ASSERT_TRUE(local.last.nino_step);
  ASSERT_TRUE(local.last.applied) << local.last.status;

  // Remote: the description travels in RegisterJob.
  TrainingRun remote;
  NowcastOptimizerOptions o = Options();
  o.nowcaster = "127.0.0.1:" + std::to_string((*server)->port());
  o.job_id = "lenet5-described";
  o.graph = DescribeLeNet5();
  auto remote_opt = NowcastOptimizer::Create(&remote.sgd, NamedParameters(*remote.net), o);
  ASSERT_TRUE(remote_opt.ok()) << remote_opt.status();
  remote.Train(**remote_opt);
  ASSERT_TRUE(remote.last.nino_step);
  ASSERT_TRUE(remote.last.applied) << remote.last.status;
  EXPECT_EQ((*remote_opt)->stats().remote.predictions, 1);
  EXPECT_EQ((*remote_opt)->stats().remote.register_failures, 0);

  EXPECT_EQ(local.last.k, remote.last.k);
  const torch::Tensor a = (*local_opt)->FlatParams(), b = (*remote_opt)->FlatParams();
  ASSERT_EQ(a.numel(), testing::kLeNet5Params);
  EXPECT_LE((a - b).abs().max().item<double>(), 1e-6);
  (*server)->Shutdown();
}

TEST(DescribedModel, WithoutTheDescriptionTheNamesMapToNoGraph) {
  auto server = testing::StartLoopbackNowcaster(testing::LoopbackNowcasterOptions(
      {{"nino_mlp", testing::SharedSyntheticCheckpoint(testing::SyntheticNiNo::kWnn)}}));
  ASSERT_TRUE(server.ok()) << server.status();
  TrainingRun run;
  NowcastOptimizerOptions o = Options();
  o.nowcaster = "127.0.0.1:" + std::to_string((*server)->port());
  o.job_id = "lenet5-auto";  // graph kAuto: the generic chain, which flatten breaks
  auto opt = NowcastOptimizer::Create(&run.sgd, NamedParameters(*run.net), o);
  ASSERT_TRUE(opt.ok()) << opt.status();
  run.Train(**opt);
  EXPECT_TRUE(run.last.nino_step);
  EXPECT_FALSE(run.last.applied) << "the name-based graph mapped LeNet-5 after all";
  const RemoteNowcaster::Stats stats = (*opt)->stats().remote;
  EXPECT_GE(stats.register_failures + stats.prediction_failures, 1);
  EXPECT_EQ(stats.predictions, 0);
  (*server)->Shutdown();
}

TEST(DescribedModel, ADescribedGraphWithoutADescriptionIsRefusedAtCreate) {
  TrainingRun run;
  NowcastOptimizerOptions o = Options();
  o.nowcaster = "127.0.0.1:1";
  o.graph.kind = GraphSpec::Kind::kDescribed;  // description left null
  auto opt = NowcastOptimizer::Create(&run.sgd, NamedParameters(*run.net), o);
  ASSERT_FALSE(opt.ok());
  EXPECT_EQ(opt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(opt.status().message().find("graph: kind described needs a description"),
            std::string::npos)
      << opt.status();
}

}  // namespace
}  // namespace nino::client
