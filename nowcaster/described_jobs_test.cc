// Jobs whose graph comes from a model description (issue 15, docs/GRAPH_DESCRIPTION.md), end
// to end through an in-process nowcaster on 127.0.0.1: a LeNet-5 (5x5 kernels, a synthetic
// WNN+ checkpoint of hidden size 32), a 3x3 LeNet (a synthetic GNN checkpoint) and a small ViT
// (description version 2: embeddings, packed attention; on both) register, upload and predict
// exactly what the in-process NowcastEngine predicts for the same description;
// descriptions that do not fit the job are refused at RegisterJob, synchronously, and register
// nothing.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/types/span.h"
#include "common/nino/model_description.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"
#include "nino/v1/nowcaster.grpc.pb.h"
#include "nowcaster/nowcaster_server.h"
#include "proto/graph_spec_proto.h"
#include "proto/wire.h"
#include "tests/testing/described_models.h"
#include "tests/testing/loopback_nowcaster.h"
#include "tests/testing/synthetic_checkpoint.h"
#include "tests/testing/test_jobs.h"

namespace nino::nowcaster {
namespace {

constexpr int64_t kContextSteps[] = {199, 399, 599, 799, 999};  // NiNo step 999's context

class DescribedJobsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    gnn_ = testing::SharedSyntheticCheckpoint(testing::SyntheticNiNo::kGnn);
    ASSERT_FALSE(gnn_.empty());
    // WNN+ at hidden size 32: LeNet-5's 42,732 edges x 25 slots are 1.07M rows per nowcast.
    auto wnn = testing::WriteSyntheticCheckpoint(::testing::TempDir() + "/described_wnn_h32.pt",
                                                 testing::SyntheticNiNo::kWnn, 0, /*hid=*/32);
    ASSERT_TRUE(wnn.ok()) << wnn.status();
    wnn_ = *wnn;
  }
  void TearDown() override {
    release_builder_.Notify();
    if (server_) server_->Shutdown();
  }

  // hold_builder: the graph builder waits until TearDown and RegisterJob does not wait for it,
  // so whatever RegisterJob answers was decided synchronously.
  void Start(bool hold_builder = false) {
    NowcasterOptions o =
        testing::LoopbackNowcasterOptions({{"nino_no_posw", gnn_}, {"nino_mlp", wnn_}});
    o.shutdown_deadline_ms = 2000;
    o.register_wait_ms = 20000;
    if (hold_builder) {
      o.register_wait_ms = 0;
      o.before_graph_build_for_testing = [this] { release_builder_.WaitForNotification(); };
    }
    auto server = testing::StartLoopbackNowcaster(std::move(o));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    stub_ = v1::Nowcaster::NewStub(testing::LoopbackChannel(server_->port()));
  }

  static v1::RegisterJobRequest Request(const std::string& job_id, const testing::Layout& layout,
                                        const ModelDescription& description,
                                        const std::string& nino_model) {
    v1::RegisterJobRequest r = testing::RegisterRequest(job_id, layout, nino_model, 1000, 10000);
    wire::GraphSpecToProto(testing::DescribedGraph(description), r.mutable_graph());
    return r;
  }

  grpc::Status Register(const v1::RegisterJobRequest& request, v1::RegisterJobResponse* response) {
    grpc::ClientContext ctx;
    return stub_->RegisterJob(&ctx, request, response);
  }

  grpc::Status PutState(const std::string& job, const std::string& token, int64_t step,
                        const torch::Tensor& row) {
    absl::Span<const float> values(row.data_ptr<float>(), row.numel());
    auto chunks = wire::SplitState(job, token, step, values, 1 << 20);
    EXPECT_TRUE(chunks.ok()) << chunks.status();
    grpc::ClientContext ctx;
    v1::PutStateResponse r;
    auto writer = stub_->PutState(&ctx, &r);
    for (const auto& chunk : *chunks) {
      if (!writer->Write(chunk)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  // Predict at step 999 with horizon k: the assembled [num_params] prediction.
  torch::Tensor Predict(const std::string& job, const std::string& token, int64_t num_params,
                        int k) {
    grpc::ClientContext ctx;
    v1::PredictRequest request;
    request.set_job_id(job);
    request.set_job_token(token);
    request.set_step(999);
    request.set_k(k);
    auto reader = stub_->Predict(&ctx, request);
    torch::Tensor out = torch::zeros({num_params});
    wire::ChunkAssembler assembler(out.data_ptr<float>(), 4 * num_params, 0);
    v1::PredictionChunk chunk;
    absl::Status assembled;
    while (reader->Read(&chunk)) {
      if (assembled.ok()) assembled = assembler.Add(chunk);
    }
    const grpc::Status s = reader->Finish();
    EXPECT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
    EXPECT_TRUE(assembled.ok()) << assembled;
    EXPECT_TRUE(assembler.Finish().ok()) << assembler.Finish();
    return out;
  }

  std::vector<std::string> ListJobIds() {
    grpc::ClientContext ctx;
    v1::ListJobsResponse r;
    const grpc::Status s = stub_->ListJobs(&ctx, v1::ListJobsRequest(), &r);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> ids;
    for (const auto& j : r.jobs()) ids.push_back(j.job_id());
    return ids;
  }

  // Registers, uploads the context, predicts with k = 40 and compares with the in-process
  // engine built from the same description on the same checkpoint file.
  void ExpectServedEqualsInProcess(const std::string& job, const testing::Layout& layout,
                                   const ModelDescription& description,
                                   const std::string& nino_model, const std::string& ckpt) {
    v1::RegisterJobResponse reg;
    const grpc::Status s = Register(Request(job, layout, description, nino_model), &reg);
    ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
    ASSERT_TRUE(reg.graph_ready());

    auto model = NiNoModel::Load(ckpt);
    ASSERT_TRUE(model.ok()) << model.status();
    auto table = MakeParamTable(layout);
    ASSERT_TRUE(table.ok()) << table.status();
    auto engine = NowcastEngine::Create(std::make_shared<const NiNoModel>(std::move(*model)),
                                        *table, testing::DescribedGraph(description));
    ASSERT_TRUE(engine.ok()) << engine.status();
    EXPECT_EQ(reg.num_params(), TotalParams(*table));
    EXPECT_EQ(reg.num_nodes(), (*engine)->total_nodes()) << "the described graph, not another";
    EXPECT_EQ(reg.num_edges(), (*engine)->total_edges());

    const torch::Tensor states = testing::SmoothStates(reg.num_params(), /*seed=*/7);
    for (int i = 0; i < 5; ++i) {
      const grpc::Status put = PutState(job, reg.job_token(), kContextSteps[i], states[i]);
      ASSERT_TRUE(put.ok()) << put.error_message();
    }
    const torch::Tensor served = Predict(job, reg.job_token(), reg.num_params(), 40);
    auto want = (*engine)->Nowcast(states, 40);
    ASSERT_TRUE(want.ok()) << want.status();
    EXPECT_LE((served - *want).abs().max().item<double>(), 1e-6);
    EXPECT_GT((*want - states[4]).abs().max().item<double>(), 1e-4) << "the nowcast moved nothing";
  }

  std::string gnn_, wnn_;
  absl::Notification release_builder_;
  std::unique_ptr<NowcasterServer> server_;
  std::unique_ptr<v1::Nowcaster::Stub> stub_;
};

TEST_F(DescribedJobsTest, LeNet5With5x5KernelsOnAWnnCheckpointMatchesTheInProcessEngine) {
  Start();
  ExpectServedEqualsInProcess("lenet5", testing::LeNet5Layout(), testing::LeNet5Description(),
                              "nino_mlp", wnn_);
}

TEST_F(DescribedJobsTest, LeNet3x3OnAGnnCheckpointMatchesTheInProcessEngine) {
  Start();
  ExpectServedEqualsInProcess("lenet3x3", testing::LeNet3x3Layout(), testing::LeNet3x3Description(),
                              "nino_no_posw", gnn_);
}

// A small ViT (description version 2): patch conv (d, 1, p, p) + bias, class token and position
// table into the patch group, one pre-norm block with nn.MultiheadAttention's packed
// in_proj_weight / in_proj_bias and out_proj, a GELU MLP, final LayerNorm, head Linear(d, 10).
testing::Layout VitLayout(int64_t patch) {
  const int64_t d = 8, n = 4;
  return {{"cls_token", {1, 1, d}},
          {"pos_embed", {1, n + 1, d}},
          {"patch_embed.weight", {d, 1, patch, patch}},
          {"patch_embed.bias", {d}},
          {"blocks.0.norm1.weight", {d}},
          {"blocks.0.norm1.bias", {d}},
          {"blocks.0.attn.in_proj_weight", {3 * d, d}},
          {"blocks.0.attn.in_proj_bias", {3 * d}},
          {"blocks.0.attn.out_proj.weight", {d, d}},
          {"blocks.0.attn.out_proj.bias", {d}},
          {"blocks.0.norm2.weight", {d}},
          {"blocks.0.norm2.bias", {d}},
          {"blocks.0.mlp.0.weight", {4 * d, d}},
          {"blocks.0.mlp.0.bias", {4 * d}},
          {"blocks.0.mlp.2.weight", {d, 4 * d}},
          {"blocks.0.mlp.2.bias", {d}},
          {"norm.weight", {d}},
          {"norm.bias", {d}},
          {"head.weight", {10, d}},
          {"head.bias", {10}}};
}

ModelDescription VitDescription() {
  ModelDescriptionBuilder b;
  std::string x = b.Dense(b.Input(1, "image"), "patch_embed.weight", "patch_embed.bias");
  x = b.Embedding("cls_token", "token", x);
  x = b.Embedding("pos_embed", "position", x);
  std::string y = b.Norm(x, "blocks.0.norm1.weight", "blocks.0.norm1.bias");
  y = b.Attention(y, 2, "blocks.0.attn.in_proj_weight", "blocks.0.attn.in_proj_bias");
  y = b.Dense(y, "blocks.0.attn.out_proj.weight", "blocks.0.attn.out_proj.bias");
  x = b.Add(x, y);
  y = b.Norm(x, "blocks.0.norm2.weight", "blocks.0.norm2.bias");
  y = b.Alias(b.Dense(y, "blocks.0.mlp.0.weight", "blocks.0.mlp.0.bias"), "gelu");
  x = b.Add(x, b.Dense(y, "blocks.0.mlp.2.weight", "blocks.0.mlp.2.bias"));
  b.Dense(b.Norm(x, "norm.weight", "norm.bias"), "head.weight", "head.bias");
  return b.description();
}

TEST_F(DescribedJobsTest, SmallVitOnAWnnCheckpointMatchesTheInProcessEngine) {
  Start();
  ASSERT_EQ(VitDescription().version, 2);
  ExpectServedEqualsInProcess("vit4x4", VitLayout(4), VitDescription(), "nino_mlp", wnn_);
}

TEST_F(DescribedJobsTest, SmallVitWith3x3PatchesOnAGnnCheckpointMatchesTheInProcessEngine) {
  Start();
  ExpectServedEqualsInProcess("vit3x3", VitLayout(3), VitDescription(), "nino_no_posw", gnn_);
}

// `s` is INVALID_ARGUMENT and its message holds every `want`.
void ExpectRefused(grpc::Status s, const std::vector<std::string>& want) {
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  for (const std::string& w : want) {
    EXPECT_NE(s.error_message().find(w), std::string::npos)
        << "'" << s.error_message() << "' does not say '" << w << "'";
  }
}

TEST_F(DescribedJobsTest, DescriptionsThatDoNotFitAreRefusedAtRegistrationAndRegisterNothing) {
  Start(/*hold_builder=*/true);
  const testing::Layout& layout = testing::LeNet3x3Layout();
  const ModelDescription good = testing::LeNet3x3Description();
  v1::RegisterJobResponse reg;

  // A parameter the job does not have.
  ModelDescription unknown_param = good;
  unknown_param.ops.back().weight = "fc9.weight";
  ExpectRefused(Register(Request("j", layout, unknown_param, "nino_no_posw"), &reg),
                {"graph", "fc9.weight"});

  // Shapes that do not match: flatten 8 channels x 5 positions = 40 inputs, fc1 reads 32.
  ModelDescription wrong_positions = good;
  for (DescriptionOp& op : wrong_positions.ops) {
    if (op.kind == DescriptionOp::Kind::kFlatten) op.positions = 5;
  }
  ExpectRefused(Register(Request("j", layout, wrong_positions, "nino_no_posw"), &reg),
                {"graph", "fc1.weight"});

  // A parameter of the job the description leaves out.
  ModelDescription missing_bias = good;
  missing_bias.ops.back().bias = "";
  ExpectRefused(Register(Request("j", layout, missing_bias, "nino_no_posw"), &reg),
                {"graph", "fc2.bias"});

  // What the message alone decides: an unknown op, another version, no description.
  v1::RegisterJobRequest unknown_op = Request("j", layout, good, "nino_no_posw");
  unknown_op.mutable_graph()->mutable_description()->mutable_ops(1)->set_op("conv");
  ExpectRefused(Register(unknown_op, &reg), {"graph: description: op 1", "unknown op 'conv'"});
  v1::RegisterJobRequest version5 = Request("j", layout, good, "nino_no_posw");
  version5.mutable_graph()->mutable_description()->set_version(5);
  ExpectRefused(Register(version5, &reg), {"graph: description: version: 5"});
  v1::RegisterJobRequest bare = Request("j", layout, good, "nino_no_posw");
  bare.mutable_graph()->clear_description();
  ExpectRefused(Register(bare, &reg), {"kind 'described' needs a model description"});

  EXPECT_TRUE(ListJobIds().empty()) << "a refused registration left a job behind";
  // The same job id registers once the description fits.
  const grpc::Status ok = Register(Request("j", layout, good, "nino_no_posw"), &reg);
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(ListJobIds(), std::vector<std::string>{"j"});
}

}  // namespace
}  // namespace nino::nowcaster
