// The nowcaster end to end, in process: a NowcasterServer on 127.0.0.1:0 serving a synthetic GNN
// checkpoint in nino_no_posw.pt's layout (tests/testing; no ../shared needed), driven through the
// generated nino.v1 stub. Predictions are compared with the in-process engine on the same file.
#include "nowcaster/nowcaster_server.h"

#include <gtest/gtest.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/nino/nowcast_engine.h"
#include "nino/v1/nowcaster.grpc.pb.h"
#include "nowcaster/grpc_probe.h"
#include "nowcaster/job_footprint.h"
#include "nowcaster/job_spec.h"
#include "proto/chunk_codec.h"
#include "proto/wire.h"
#include "tests/testing/loopback_nowcaster.h"
#include "tests/testing/synthetic_checkpoint.h"
#include "tests/testing/test_jobs.h"
#include "tests/testing/test_util.h"

namespace nino::nowcaster {
namespace {

// The FM-16 network of the official examples, in named_parameters() order.
const testing::Layout& Fm16Shapes() { return testing::Fm16Layout(); }
using testing::kFm16Params;
constexpr int64_t kFm16Bytes = 4 * kFm16Params;
constexpr int64_t kStateSteps[] = {199, 399, 599, 799, 999};  // the context of NiNo step 999

v1::RegisterJobRequest Fm16Request(const std::string& job_id) {
  return testing::RegisterRequest(job_id, Fm16Shapes(), "nino_no_posw", 1000, 10000);
}

// 5 snapshots [5, P]: a drifting trajectory from a random start, as in nino_step_demo.
torch::Tensor Fm16States(int seed) {
  torch::manual_seed(seed);
  torch::Tensor theta = 0.1 * torch::randn({kFm16Params});
  torch::Tensor drift = torch::randn({kFm16Params});
  std::vector<torch::Tensor> states{theta};
  for (int s = 1; s < 5; ++s) {
    states.push_back(states.back() + 0.01 * (0.05 * drift + 0.02 * torch::randn({kFm16Params})));
  }
  return torch::stack(states).contiguous();
}

absl::Span<const float> Row(const torch::Tensor& states, int i) {
  return absl::Span<const float>(states[i].data_ptr<float>(), kFm16Params);
}

class NowcasterServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ckpt_ = testing::SharedSyntheticCheckpoint(testing::SyntheticNiNo::kGnn);
    ASSERT_FALSE(ckpt_.empty());
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  NowcasterOptions BaseOptions() const {
    NowcasterOptions o = testing::LoopbackNowcasterOptions({{"nino_no_posw", ckpt_}});
    o.shutdown_deadline_ms = 2000;
    return o;
  }

  void Start(NowcasterOptions options) {
    auto server = testing::StartLoopbackNowcaster(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
    channel_ = testing::LoopbackChannel(server_->port());
    stub_ = v1::Nowcaster::NewStub(channel_);
  }
  void Start() { Start(BaseOptions()); }

  // Registers FM-16 as `job_id`; returns the token.
  std::string Register(const std::string& job_id, v1::RegisterJobResponse* out = nullptr) {
    grpc::ClientContext ctx;
    v1::RegisterJobResponse response;
    grpc::Status s = stub_->RegisterJob(&ctx, Fm16Request(job_id), &response);
    EXPECT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
    if (out) *out = response;
    return response.job_token();
  }

  // Sends `chunks` as one PutState stream (stopping early after `send` chunks if >= 0).
  grpc::Status SendChunks(const std::vector<v1::StateChunk>& chunks,
                          v1::PutStateResponse* response = nullptr, int send = -1) {
    grpc::ClientContext ctx;
    v1::PutStateResponse r;
    auto writer = stub_->PutState(&ctx, &r);
    for (size_t i = 0; i < chunks.size() && (send < 0 || static_cast<int>(i) < send); ++i) {
      if (!writer->Write(chunks[i])) break;
    }
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    if (response) *response = r;
    return s;
  }

  grpc::Status PutState(const std::string& job, const std::string& token, int64_t step,
                        absl::Span<const float> values, int64_t chunk_bytes = 1 << 20,
                        v1::PutStateResponse* response = nullptr) {
    auto chunks = wire::SplitState(job, token, step, values, chunk_bytes);
    EXPECT_TRUE(chunks.ok()) << chunks.status();
    return SendChunks(*chunks, response);
  }

  void PutContext(const std::string& job, const std::string& token, const torch::Tensor& states,
                  int64_t chunk_bytes = 1 << 20) {
    for (int i = 0; i < 5; ++i) {
      v1::PutStateResponse r;
      grpc::Status s = PutState(job, token, kStateSteps[i], Row(states, i), chunk_bytes, &r);
      ASSERT_TRUE(s.ok()) << s.error_message();
      EXPECT_EQ(r.states_held(), i + 1);
      EXPECT_EQ(r.bytes_received(), kFm16Bytes);
    }
  }

  // Predict; on OK fills `values` from the validated chunk stream.
  grpc::Status Predict(const std::string& job, const std::string& token, int64_t step, int k,
                       std::vector<float>* values, int64_t max_chunk_bytes = 0,
                       int* chunks_received = nullptr, int* k_used = nullptr, int deadline_ms = 0) {
    grpc::ClientContext ctx;
    if (deadline_ms > 0) {
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
    }
    v1::PredictRequest request;
    request.set_job_id(job);
    request.set_job_token(token);
    request.set_step(step);
    request.set_k(k);
    request.set_max_chunk_bytes(max_chunk_bytes);
    auto reader = stub_->Predict(&ctx, request);
    std::vector<float> out(kFm16Params);
    wire::ChunkAssembler assembler(out.data(), kFm16Bytes, 0);
    v1::PredictionChunk chunk;
    absl::Status assembled;
    while (reader->Read(&chunk)) {
      if (assembled.ok()) assembled = assembler.Add(chunk);
      if (chunk.chunk_index() == 0) {
        EXPECT_GT(chunk.nowcast_seconds(), 0.0);
      }
    }
    grpc::Status s = reader->Finish();
    if (s.ok()) {
      EXPECT_TRUE(assembled.ok()) << assembled;
      EXPECT_TRUE(assembler.Finish().ok()) << assembler.Finish();
      EXPECT_EQ(assembler.job_id(), job);
      EXPECT_EQ(assembler.step(), step);
      if (values) *values = std::move(out);
      if (chunks_received) *chunks_received = static_cast<int>(assembler.received_chunks());
      if (k_used) *k_used = assembler.k();
    }
    return s;
  }

  v1::JobStatus GetJob(const std::string& job, const std::string& token) {
    grpc::ClientContext ctx;
    v1::JobRef ref;
    ref.set_job_id(job);
    ref.set_job_token(token);
    v1::JobStatus status;
    grpc::Status s = stub_->GetJob(&ctx, ref, &status);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return status;
  }

  grpc::Status CloseJob(const std::string& job, const std::string& token) {
    grpc::ClientContext ctx;
    v1::JobRef ref;
    ref.set_job_id(job);
    ref.set_job_token(token);
    v1::CloseJobResponse r;
    return stub_->CloseJob(&ctx, ref, &r);
  }

  std::vector<std::string> ListJobIds() {
    grpc::ClientContext ctx;
    v1::ListJobsResponse r;
    grpc::Status s = stub_->ListJobs(&ctx, v1::ListJobsRequest(), &r);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> ids;
    for (const auto& j : r.jobs()) ids.push_back(j.job_id());
    return ids;
  }

  // The in-process reference: the NiNo library on the same states.
  torch::Tensor Reference(const torch::Tensor& states, int k) {
    auto model = NiNoModel::Load(ckpt_);
    EXPECT_TRUE(model.ok()) << model.status();
    auto engine = NowcastEngine::Create(std::make_shared<const NiNoModel>(std::move(*model)),
                                        *MakeParamTable(Fm16Shapes()), GraphSpec{});
    EXPECT_TRUE(engine.ok()) << engine.status();
    auto pred = (*engine)->Nowcast(states, k);
    EXPECT_TRUE(pred.ok()) << pred.status();
    return *pred;
  }

  static double MaxAbsDiff(const std::vector<float>& got, const torch::Tensor& want) {
    torch::Tensor g = torch::from_blob(const_cast<float*>(got.data()), {kFm16Params});
    return (g - want).abs().max().item<double>();
  }

  std::string ckpt_;
  std::unique_ptr<NowcasterServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Nowcaster::Stub> stub_;
};

#define EXPECT_CODE(status, code_)                                             \
  do {                                                                         \
    const grpc::Status s_ = (status);                                          \
    EXPECT_EQ(s_.error_code(), grpc::StatusCode::code_) << s_.error_message(); \
  } while (0)

TEST_F(NowcasterServerTest, PredictionMatchesTheInProcessEngine) {
  Start();
  v1::RegisterJobResponse reg;
  const std::string token = Register("fm16", &reg);
  EXPECT_EQ(reg.job_token().size(), 32u);
  EXPECT_EQ(reg.num_params(), kFm16Params);
  EXPECT_GT(reg.num_nodes(), 0);
  EXPECT_GT(reg.num_edges(), 0);
  EXPECT_EQ(reg.max_chunk_bytes(), 4 << 20);
  EXPECT_EQ(std::vector<int>(reg.k_schedule().begin(), reg.k_schedule().end()),
            (std::vector<int>{40, 33, 26, 21, 16, 11, 8, 5, 3, 1}));

  const torch::Tensor states = Fm16States(1);
  PutContext("fm16", token, states);
  v1::JobStatus st = GetJob("fm16", token);
  EXPECT_EQ(st.states_held(), 5);
  EXPECT_EQ(st.last_state_step(), 999);
  EXPECT_EQ(st.bytes_in(), 5 * kFm16Bytes);
  EXPECT_EQ(st.nino_model(), "nino_no_posw");

  std::vector<float> pred;
  int k_used = 0;
  grpc::Status s = Predict("fm16", token, 999, /*k=*/0, &pred, 0, nullptr, &k_used);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(k_used, 40);  // the schedule's first entry
  const torch::Tensor want = Reference(states, 40);
  EXPECT_LE(MaxAbsDiff(pred, want), 1e-6);
  EXPECT_GT((want - states[4]).abs().max().item<double>(), 1e-4) << "the nowcast moved nothing";

  // The used snapshots are dropped, as the official optimizer clears its history.
  st = GetJob("fm16", token);
  EXPECT_EQ(st.states_held(), 0);
  EXPECT_EQ(st.predictions(), 1);
  EXPECT_EQ(st.bytes_out(), kFm16Bytes);
  EXPECT_EQ(st.memory_bytes(), 0);
  EXPECT_EQ(ListJobIds(), std::vector<std::string>{"fm16"});
  EXPECT_TRUE(CloseJob("fm16", token).ok());
  EXPECT_TRUE(ListJobIds().empty());
}

TEST_F(NowcasterServerTest, ZeroCopyUploadsMatchAndMalformedMessagesAreRefused) {
  Start();
  const std::string token = Register("zc");
  const torch::Tensor states = Fm16States(5);
  for (int i = 0; i < 5; ++i) {
    // The trainer's path: chunks of the snapshot itself, 5000 bytes (floats straddle chunks).
    auto keep = std::make_shared<torch::Tensor>(states[i].contiguous());
    const absl::string_view payload(reinterpret_cast<const char*>(keep->data_ptr<float>()),
                                    kFm16Bytes);
    grpc::ClientContext ctx;
    v1::PutStateResponse r;
    grpc::Status s = wire::PutStateZeroCopy(channel_.get(), &ctx, "zc", token, kStateSteps[i],
                                            payload, 5000, keep, &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(r.states_held(), i + 1);
    EXPECT_EQ(r.bytes_received(), kFm16Bytes);
  }
  // A message that is not a StateChunk (raw bytes on the PutState method): a clear error, and
  // the job is unchanged.
  {
    grpc::ClientContext ctx;
    v1::PutStateResponse r;
    const std::string junk = "\x3a\x10short";
    grpc::Slice slice(junk.data(), junk.size());
    grpc::Status s =
        wire::PutStateMessages(channel_.get(), &ctx, {grpc::ByteBuffer(&slice, 1)}, &r);
    EXPECT_CODE(s, INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("malformed"), std::string::npos) << s.error_message();
  }
  v1::JobStatus st = GetJob("zc", token);
  EXPECT_EQ(st.states_held(), 5);
  EXPECT_EQ(st.bytes_in(), 5 * kFm16Bytes);
  EXPECT_EQ(st.graph_state(), "ready");
  std::vector<float> pred;
  ASSERT_TRUE(Predict("zc", token, 999, 40, &pred).ok());
  EXPECT_LE(MaxAbsDiff(pred, Reference(states, 40)), 1e-6);
}

TEST_F(NowcasterServerTest, GraphIsBuiltInTheBackground) {
  NowcasterOptions o = BaseOptions();
  auto release = std::make_shared<absl::Notification>();
  o.before_graph_build_for_testing = [release] { release->WaitForNotification(); };
  o.register_wait_ms = 100;
  Start(o);
  v1::RegisterJobResponse reg;
  const std::string token = Register("slow", &reg);
  ASSERT_FALSE(token.empty());
  EXPECT_FALSE(reg.graph_ready());
  EXPECT_EQ(reg.num_edges(), 0);
  EXPECT_EQ(GetJob("slow", token).graph_state(), "building");
  // Snapshots are taken while the graph is built; a Predict waits for it within its deadline.
  const torch::Tensor states = Fm16States(6);
  PutContext("slow", token, states);
  grpc::Status early = Predict("slow", token, 999, 40, nullptr, 0, nullptr, nullptr, 300);
  EXPECT_CODE(early, DEADLINE_EXCEEDED);
  EXPECT_EQ(GetJob("slow", token).states_held(), 5) << "a timed-out Predict keeps the context";
  std::thread later([release] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    release->Notify();
  });
  std::vector<float> pred;
  grpc::Status s = Predict("slow", token, 999, 40, &pred, 0, nullptr, nullptr, 20000);
  later.join();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_LE(MaxAbsDiff(pred, Reference(states, 40)), 1e-6);
  const v1::JobStatus st = GetJob("slow", token);
  EXPECT_EQ(st.graph_state(), "ready");
  EXPECT_GT(st.num_edges(), 0);
}

TEST_F(NowcasterServerTest, ALayoutFoundUnmappableAfterRegistrationFailsTheJobClearly) {
  NowcasterOptions o = BaseOptions();
  auto release = std::make_shared<absl::Notification>();
  o.before_graph_build_for_testing = [release] { release->WaitForNotification(); };
  o.register_wait_ms = 0;
  Start(o);
  v1::RegisterJobRequest request = Fm16Request("unmappable");
  request.mutable_params(0)->set_shape(2, 5);  // 5x5 kernels: more slots than the GNN takes
  request.mutable_params(0)->set_shape(3, 5);
  grpc::ClientContext ctx;
  v1::RegisterJobResponse reg;
  ASSERT_TRUE(stub_->RegisterJob(&ctx, request, &reg).ok());
  EXPECT_FALSE(reg.graph_ready());
  release->Notify();
  v1::JobStatus st;
  for (int i = 0; i < 500; ++i) {
    st = GetJob("unmappable", reg.job_token());
    if (st.graph_state() != "building") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(st.graph_state().rfind("failed: params/graph: no NiNo graph for this layout", 0), 0u)
      << st.graph_state();
  std::vector<float> state(st.num_params(), 0.5f);
  grpc::Status put = PutState("unmappable", reg.job_token(), 199, state);
  EXPECT_CODE(put, FAILED_PRECONDITION);
  EXPECT_NE(put.error_message().find("no NiNo graph"), std::string::npos) << put.error_message();
  EXPECT_TRUE(CloseJob("unmappable", reg.job_token()).ok());
}

TEST_F(NowcasterServerTest, JobTuningReachesTheEngine) {
  Start();
  // Edge sampling with the job's seed: the same prediction as an in-process engine so tuned.
  v1::RegisterJobRequest request = Fm16Request("sampled");
  request.set_lpe_seed(11);
  request.mutable_tuning()->set_edge_sample_ratio(0.4);
  request.mutable_tuning()->set_bf16_edge_state(true);
  request.mutable_tuning()->set_chunk_bytes(1 << 20);
  grpc::ClientContext ctx;
  v1::RegisterJobResponse reg;
  ASSERT_TRUE(stub_->RegisterJob(&ctx, request, &reg).ok());
  const torch::Tensor states = Fm16States(9);
  PutContext("sampled", reg.job_token(), states);
  std::vector<float> pred;
  ASSERT_TRUE(Predict("sampled", reg.job_token(), 999, 30, &pred).ok());
  auto model = NiNoModel::Load(ckpt_);
  ASSERT_TRUE(model.ok());
  NowcastEngineOptions eo;
  eo.lpe.sign_seed = 11;
  NowcastTuning tuning;
  tuning.edge_sample_ratio = 0.4;
  tuning.edge_sample_seed = 11;
  tuning.bf16_edge_state = true;
  tuning.chunk_bytes = 1 << 20;
  ASSERT_TRUE(ApplyTuning(tuning, model->config(), &eo).ok());
  auto engine = NowcastEngine::Create(std::make_shared<const NiNoModel>(std::move(*model)),
                                      *MakeParamTable(Fm16Shapes()), GraphSpec{}, eo);
  ASSERT_TRUE(engine.ok());
  auto want = (*engine)->Nowcast(states, 30);
  ASSERT_TRUE(want.ok());
  EXPECT_LE(MaxAbsDiff(pred, *want), 1e-6);
  EXPECT_GT(MaxAbsDiff(pred, Reference(states, 30)), 1e-7) << "the tuning was not applied";

  // Bad tuning is refused naming the field; subgraph mode on an MLP/CNN names the reason.
  v1::RegisterJobRequest bad = Fm16Request("bad-ratio");
  bad.mutable_tuning()->set_edge_sample_ratio(1.5);
  grpc::ClientContext c2;
  grpc::Status s = stub_->RegisterJob(&c2, bad, &reg);
  EXPECT_CODE(s, INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("tuning.edge_sample_ratio"), std::string::npos)
      << s.error_message();
  v1::RegisterJobRequest sub = Fm16Request("cnn-subgraph");
  sub.mutable_tuning()->set_subgraph(true);
  grpc::ClientContext c3;
  s = stub_->RegisterJob(&c3, sub, &reg);
  EXPECT_CODE(s, INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("subgraph mode"), std::string::npos) << s.error_message();
  EXPECT_EQ(ListJobIds(), std::vector<std::string>{"sampled"});
}

TEST_F(NowcasterServerTest, TinyChunksBothWays) {
  NowcasterOptions o = BaseOptions();
  o.max_chunk_bytes = 4096;
  o.max_message_bytes = 4096 + kChunkHeaderBytes;
  Start(o);
  const std::string token = Register("tiny");
  const torch::Tensor states = Fm16States(2);
  // A chunk above the server's limit is refused; nothing is held.
  EXPECT_CODE(PutState("tiny", token, 199, Row(states, 0), 4097), INVALID_ARGUMENT);
  EXPECT_EQ(GetJob("tiny", token).states_held(), 0);
  PutContext("tiny", token, states, /*chunk_bytes=*/1000);  // 58 chunks each, not float-aligned
  std::vector<float> pred;
  int chunks = 0;
  grpc::Status s = Predict("tiny", token, 999, 33, &pred, /*max_chunk_bytes=*/777, &chunks);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(chunks, (kFm16Bytes + 776) / 777);
  EXPECT_LE(MaxAbsDiff(pred, Reference(states, 33)), 1e-6);
  // A request for bigger chunks than the server sends is capped at its max_chunk_bytes.
  PutContext("tiny", token, Fm16States(3), 1000);
  s = Predict("tiny", token, 999, 1, &pred, /*max_chunk_bytes=*/1 << 20, &chunks);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(chunks, (kFm16Bytes + 4095) / 4096);
}

TEST_F(NowcasterServerTest, BadStreamsChangeNothing) {
  Start();
  const std::string token = Register("bad");
  const torch::Tensor states = Fm16States(4);
  ASSERT_TRUE(PutState("bad", token, 199, Row(states, 0), 4096).ok());
  auto chunks = *wire::SplitState("bad", token, 399, Row(states, 1), 4096);
  auto expect_unchanged = [&](const char* what) {
    v1::JobStatus st = GetJob("bad", token);
    EXPECT_EQ(st.states_held(), 1) << what;
    EXPECT_EQ(st.last_state_step(), 199) << what;
    EXPECT_EQ(st.bytes_in(), kFm16Bytes) << what;
    EXPECT_EQ(st.memory_bytes(), kFm16Bytes) << what;
  };
  {
    auto c = chunks;
    (*c[3].mutable_data())[100] ^= 0x40;  // corrupted in transit
    EXPECT_CODE(SendChunks(c), DATA_LOSS);
    expect_unchanged("crc");
  }
  {
    auto c = chunks;
    c[2].set_offset_bytes(c[2].offset_bytes() + 4);
    EXPECT_CODE(SendChunks(c), INVALID_ARGUMENT);
    expect_unchanged("offset");
  }
  {
    auto c = chunks;
    std::swap(c[5], c[6]);
    EXPECT_CODE(SendChunks(c), INVALID_ARGUMENT);
    expect_unchanged("order");
  }
  {
    auto c = chunks;
    c[4].set_step(401);
    EXPECT_CODE(SendChunks(c), INVALID_ARGUMENT);
    expect_unchanged("step");
  }
  {
    auto c = chunks;
    c[1].set_job_token("0000");
    EXPECT_CODE(SendChunks(c), PERMISSION_DENIED);
    expect_unchanged("token in a later chunk");
  }
  {
    auto c = chunks;
    for (auto& chunk : c) chunk.set_total_bytes(kFm16Bytes + 4);
    EXPECT_CODE(SendChunks(c), INVALID_ARGUMENT);
    expect_unchanged("total");
  }
  EXPECT_CODE(SendChunks(chunks, nullptr, /*send=*/5), DATA_LOSS);  // truncated stream
  expect_unchanged("truncated");
  EXPECT_CODE(SendChunks({}), INVALID_ARGUMENT);  // empty stream
  expect_unchanged("empty");
  {
    torch::Tensor nan_state = states[1].clone();
    nan_state[7] = std::nanf("");
    EXPECT_CODE(PutState("bad", token, 399,
                         absl::Span<const float>(nan_state.data_ptr<float>(), kFm16Params)),
                INVALID_ARGUMENT);
    expect_unchanged("nan");
  }
  EXPECT_CODE(PutState("bad", token, 199, Row(states, 1)), FAILED_PRECONDITION);  // not newer
  expect_unchanged("old step");
  // The intact stream still goes through afterwards.
  v1::PutStateResponse r;
  ASSERT_TRUE(SendChunks(chunks, &r).ok());
  EXPECT_EQ(r.states_held(), 2);
  EXPECT_EQ(r.step(), 399);
}

TEST_F(NowcasterServerTest, TokensJobsAndPreconditions) {
  Start();
  const std::string token = Register("job-a");
  const torch::Tensor states = Fm16States(5);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(PutState("job-a", token, kStateSteps[i], Row(states, i)).ok());
  }
  const std::string wrong(token.size(), '0');
  EXPECT_CODE(PutState("job-a", wrong, 799, Row(states, 3)), PERMISSION_DENIED);
  EXPECT_CODE(Predict("job-a", wrong, 999, 0, nullptr), PERMISSION_DENIED);
  EXPECT_CODE(CloseJob("job-a", wrong), PERMISSION_DENIED);
  {
    grpc::ClientContext ctx;
    v1::JobRef ref;
    ref.set_job_id("job-a");
    ref.set_job_token(wrong);
    v1::JobStatus st;
    EXPECT_CODE(stub_->GetJob(&ctx, ref, &st), PERMISSION_DENIED);
  }
  EXPECT_CODE(PutState("nope", token, 799, Row(states, 3)), NOT_FOUND);
  EXPECT_CODE(Predict("nope", token, 999, 0, nullptr), NOT_FOUND);
  EXPECT_CODE(CloseJob("nope", token), NOT_FOUND);
  // Fewer than ctx snapshots.
  EXPECT_CODE(Predict("job-a", token, 999, 0, nullptr), FAILED_PRECONDITION);
  EXPECT_CODE(Predict("job-a", token, 999, 41, nullptr), INVALID_ARGUMENT);
  v1::JobStatus st = GetJob("job-a", token);
  EXPECT_EQ(st.states_held(), 3);
  EXPECT_EQ(st.predictions(), 0);
  // Duplicate registration: refused, the open job and its token unaffected.
  {
    grpc::ClientContext ctx;
    v1::RegisterJobResponse r;
    EXPECT_CODE(stub_->RegisterJob(&ctx, Fm16Request("job-a"), &r), ALREADY_EXISTS);
  }
  EXPECT_EQ(GetJob("job-a", token).states_held(), 3);
  // Held snapshots that are not the context of the requested NiNo step.
  ASSERT_TRUE(PutState("job-a", token, 799, Row(states, 3)).ok());
  ASSERT_TRUE(PutState("job-a", token, 999, Row(states, 4)).ok());
  EXPECT_CODE(Predict("job-a", token, 1999, 0, nullptr), FAILED_PRECONDITION);
  EXPECT_EQ(GetJob("job-a", token).states_held(), 5);
  ASSERT_TRUE(Predict("job-a", token, 999, 0, nullptr).ok());
}

TEST_F(NowcasterServerTest, RegisterRejectsBadJobs) {
  Start();
  struct Case {
    std::function<void(v1::RegisterJobRequest&)> set;
    grpc::StatusCode code;
    const char* needle;
  };
  const Case cases[] = {
      {[](auto& r) { r.set_nino_model("nino_huge"); }, grpc::StatusCode::NOT_FOUND, "nino_huge"},
      {[](auto& r) { r.mutable_params(2)->set_shape(1, 0); }, grpc::StatusCode::INVALID_ARGUMENT,
       "params[2].shape[1]"},
      {[](auto& r) { r.set_period(1001); }, grpc::StatusCode::INVALID_ARGUMENT, "period"},
      {[](auto& r) { r.set_ctx(4); }, grpc::StatusCode::INVALID_ARGUMENT, "ctx"},
      {[](auto& r) { r.mutable_graph()->set_kind("gpt2"); }, grpc::StatusCode::INVALID_ARGUMENT,
       "graph"},
      {[](auto& r) { r.set_job_id(""); }, grpc::StatusCode::INVALID_ARGUMENT, "job_id"},
      // 5x5 kernels: more slots per edge than the GNN checkpoint takes.
      {[](auto& r) {
         r.mutable_params(0)->set_shape(2, 5);
         r.mutable_params(0)->set_shape(3, 5);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "params"},
  };
  for (const Case& c : cases) {
    v1::RegisterJobRequest request = Fm16Request("bad-job");
    c.set(request);
    grpc::ClientContext ctx;
    v1::RegisterJobResponse r;
    grpc::Status s = stub_->RegisterJob(&ctx, request, &r);
    EXPECT_EQ(s.error_code(), c.code) << c.needle << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(c.needle), std::string::npos) << s.error_message();
    EXPECT_TRUE(r.job_token().empty());
  }
  EXPECT_TRUE(ListJobIds().empty());
}

// "default" names the built-in model, as in the model catalog: served under its own name where
// the server loaded it, refused clearly where it did not (RegisterRejectsBadJobs' server).
TEST_F(NowcasterServerTest, DefaultNamesTheBuiltInModel) {
  Start(testing::LoopbackNowcasterOptions({{"nino_no_posw", ckpt_}, {"default", "default"}}));
  v1::RegisterJobRequest request = Fm16Request("builtin");
  request.set_nino_model("default");
  grpc::ClientContext ctx;
  v1::RegisterJobResponse r;
  grpc::Status s = stub_->RegisterJob(&ctx, request, &r);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(GetJob("builtin", r.job_token()).nino_model(), "nino_wnn_fm16");
}

TEST_F(NowcasterServerTest, DefaultIsRefusedWhereTheBuiltInIsNotServed) {
  Start();
  v1::RegisterJobRequest request = Fm16Request("builtin");
  request.set_nino_model("default");
  grpc::ClientContext ctx;
  v1::RegisterJobResponse r;
  grpc::Status s = stub_->RegisterJob(&ctx, request, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("'default' (the built-in nino_wnn_fm16) is not served here "
                                   "(served: nino_no_posw)"),
            std::string::npos)
      << s.error_message();
  EXPECT_TRUE(ListJobIds().empty());
}

TEST_F(NowcasterServerTest, MemoryBudget) {
  NowcasterOptions o = BaseOptions();
  const int64_t reservation = 6 * kFm16Bytes;  // ctx + 1 snapshots
  // The whole footprint of an FM-16 job: snapshots, graph and working memory.
  auto model = NiNoModel::Load(ckpt_);
  ASSERT_TRUE(model.ok());
  absl::StatusOr<JobSpec> spec =
      ValidateJobRequest(Fm16Request("first"), "nino_no_posw", model->config());
  ASSERT_TRUE(spec.ok()) << spec.status();
  NowcastEngineOptions engine_options;
  ASSERT_TRUE(ApplyTuning(spec->tuning, model->config(), &engine_options).ok());
  absl::StatusOr<JobFootprint> footprint =
      EstimateJobFootprint(*spec, model->config(), engine_options);
  ASSERT_TRUE(footprint.ok()) << footprint.status();
  ASSERT_EQ(footprint->snapshot_bytes, reservation);
  ASSERT_GT(footprint->engine_bytes(), 0);
  o.memory_budget_bytes = footprint->total_bytes() + 1000;  // room for one FM-16 job
  Start(o);
  const std::string token = Register("first");
  {
    grpc::ClientContext ctx;
    v1::RegisterJobResponse r;
    grpc::Status s = stub_->RegisterJob(&ctx, Fm16Request("second"), &r);
    EXPECT_CODE(s, RESOURCE_EXHAUSTED);
    EXPECT_NE(s.error_message().find("second"), std::string::npos) << s.error_message();
    EXPECT_NE(s.error_message().find(absl::StrCat("needs ", footprint->total_bytes(), " bytes")),
              std::string::npos)
        << s.error_message();
    EXPECT_NE(s.error_message().find("1000 of "), std::string::npos) << s.error_message();
  }
  EXPECT_EQ(ListJobIds(), std::vector<std::string>{"first"});
  EXPECT_EQ(GetJob("first", token).engine_bytes(), footprint->engine_bytes());
  EXPECT_EQ(GetJob("first", token).reserved_bytes(), footprint->total_bytes());

  // A second concurrent upload beyond the job's reservation: refused, the first one completes.
  const torch::Tensor states = Fm16States(6);
  PutContext("first", token, states);
  auto chunks = *wire::SplitState("first", token, 1199, Row(states, 0), 1024);
  grpc::ClientContext open_ctx;
  v1::PutStateResponse open_response;
  auto open_stream = stub_->PutState(&open_ctx, &open_response);
  ASSERT_TRUE(open_stream->Write(chunks[0]));
  for (int i = 0; i < 500 && GetJob("first", token).memory_bytes() != reservation; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(GetJob("first", token).memory_bytes(), reservation) << "upload not admitted";
  EXPECT_CODE(PutState("first", token, 1399, Row(states, 1)), RESOURCE_EXHAUSTED);
  for (size_t i = 1; i < chunks.size(); ++i) ASSERT_TRUE(open_stream->Write(chunks[i]));
  open_stream->WritesDone();
  ASSERT_TRUE(open_stream->Finish().ok());
  v1::JobStatus st = GetJob("first", token);
  EXPECT_EQ(st.states_held(), 5);
  EXPECT_EQ(st.last_state_step(), 1199);
  EXPECT_EQ(st.memory_bytes(), 5 * kFm16Bytes);

  // Closing the job returns its reservation.
  ASSERT_TRUE(CloseJob("first", token).ok());
  Register("second");
  EXPECT_EQ(ListJobIds(), std::vector<std::string>{"second"});
}

// Blocks every nowcast on the worker until opened.
struct Gate {
  absl::Mutex mu;
  int entered = 0;
  bool open = true;
  void Pass() {
    absl::MutexLock lock(&mu);
    ++entered;
    mu.Await(absl::Condition(&open));
  }
  void Set(bool value) {
    absl::MutexLock lock(&mu);
    open = value;
  }
  void AwaitEntered(int n) {
    absl::MutexLock lock(&mu);
    auto reached = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return entered >= n; };
    mu.Await(absl::Condition(&reached));
  }
};

TEST_F(NowcasterServerTest, FullQueueAndDeadlines) {
  auto gate = std::make_shared<Gate>();
  NowcasterOptions o = BaseOptions();
  o.workers = 1;
  o.queue_length = 1;
  o.before_nowcast_for_testing = [gate] { gate->Pass(); };
  Start(o);
  std::map<std::string, std::string> tokens;
  const torch::Tensor states = Fm16States(7);
  for (const char* id : {"q0", "q1", "q2"}) {
    tokens[id] = Register(id);
    PutContext(id, tokens[id], states);
  }
  gate->Set(false);
  grpc::Status running, queued;
  std::thread a([&] { running = Predict("q0", tokens["q0"], 999, 0, nullptr); });
  gate->AwaitEntered(1);  // q0 holds the only worker
  std::thread b([&] { queued = Predict("q1", tokens["q1"], 999, 0, nullptr); });
  for (int i = 0; i < 500 && server_->queue_depth() < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(server_->queue_depth(), 1);
  // The queue is full: refused at once, q2 unchanged.
  EXPECT_CODE(Predict("q2", tokens["q2"], 999, 0, nullptr), RESOURCE_EXHAUSTED);
  EXPECT_EQ(GetJob("q2", tokens["q2"]).states_held(), 5);
  gate->Set(true);
  a.join();
  b.join();
  EXPECT_TRUE(running.ok()) << running.error_message();
  EXPECT_TRUE(queued.ok()) << queued.error_message();
  EXPECT_EQ(GetJob("q1", tokens["q1"]).predictions(), 1);

  // A deadline that passes while the nowcast waits: DEADLINE_EXCEEDED, q2 unchanged, and the
  // abandoned nowcast is skipped once the worker gets to it.
  gate->Set(false);
  const int entered = gate->entered;
  EXPECT_CODE(Predict("q2", tokens["q2"], 999, 0, nullptr, 0, nullptr, nullptr, 300),
              DEADLINE_EXCEEDED);
  gate->AwaitEntered(entered + 1);
  gate->Set(true);
  v1::JobStatus st = GetJob("q2", tokens["q2"]);
  EXPECT_EQ(st.states_held(), 5);
  EXPECT_EQ(st.predictions(), 0);
  ASSERT_TRUE(Predict("q2", tokens["q2"], 999, 0, nullptr).ok());
  EXPECT_EQ(GetJob("q2", tokens["q2"]).predictions(), 1);
}

TEST_F(NowcasterServerTest, HealthAndReflection) {
  NowcasterOptions o = BaseOptions();
  o.lame_duck_ms = 1500;
  Start(o);
  const absl::Duration timeout = absl::Seconds(5);
  EXPECT_EQ(*CheckHealth(channel_, "", timeout), ServingStatus::kServing);
  EXPECT_EQ(*CheckHealth(channel_, kServiceName, timeout), ServingStatus::kServing);
  EXPECT_EQ(CheckHealth(channel_, "no.such.Service", timeout).status().code(),
            absl::StatusCode::kNotFound);
  auto services = ListServices(channel_, timeout);
  ASSERT_TRUE(services.ok()) << services.status();
  EXPECT_NE(std::find(services->begin(), services->end(), "nino.v1.Nowcaster"), services->end());
  EXPECT_NE(std::find(services->begin(), services->end(), "grpc.health.v1.Health"),
            services->end());

  // Shutdown starts: NOT_SERVING during the lame-duck period, then the server goes away.
  std::thread stopper([&] { server_->Shutdown(); });
  absl::StatusOr<ServingStatus> status;
  for (int i = 0; i < 100; ++i) {
    status = CheckHealth(channel_, kServiceName, timeout);
    if (!status.ok() || *status != ServingStatus::kServing) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, ServingStatus::kNotServing);
  EXPECT_EQ(*CheckHealth(channel_, "", timeout), ServingStatus::kNotServing);
  stopper.join();
  EXPECT_FALSE(CheckHealth(channel_, "", absl::Seconds(1)).ok());
}

TEST_F(NowcasterServerTest, MetricsEndpoint) {
  NowcasterOptions o = BaseOptions();
  o.metrics_port = kAnyPort;
  o.metrics_host = "127.0.0.1";
  Start(o);
  ASSERT_GT(server_->metrics_port(), 0);
  const std::string token = Register("metered");
  const torch::Tensor states = Fm16States(8);
  PutContext("metered", token, states);
  ASSERT_TRUE(Predict("metered", token, 999, 0, nullptr).ok());
  EXPECT_CODE(CloseJob("metered", "wrong"), PERMISSION_DENIED);

  const std::string text = testing::HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_NE(text.find("200 OK"), std::string::npos) << text;
  for (const std::string& line : {
           std::string("nino_nowcaster_jobs 1"),
           std::string("nino_nowcaster_queue_depth 0"),
           std::string("nino_nowcaster_nowcast_seconds_count 1"),
           absl::StrCat("nino_nowcaster_received_bytes_total ", 5 * kFm16Bytes),
           absl::StrCat("nino_nowcaster_sent_bytes_total ", kFm16Bytes),
           std::string("nino_nowcaster_requests_total{code=\"OK\",method=\"RegisterJob\"} 1"),
           std::string("nino_nowcaster_requests_total{code=\"OK\",method=\"PutState\"} 5"),
           std::string("nino_nowcaster_requests_total{code=\"PERMISSION_DENIED\","
                       "method=\"CloseJob\"} 1"),
           std::string("nino_nowcaster_errors_total{code=\"PERMISSION_DENIED\"} 1"),
       }) {
    EXPECT_NE(text.find(line + "\n"), std::string::npos) << line << "\n---\n" << text;
  }
  EXPECT_NE(testing::HttpGet(server_->metrics_port(), "/").find("404"), std::string::npos);
}

}  // namespace
}  // namespace nino::nowcaster
