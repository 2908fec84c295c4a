// Issue 13, "the service under many clients": Predict and PutState run on gRPC's callback API,
// so a waiting Predict holds no thread. In process on 127.0.0.1:0 with a synthetic NiNo model
// (no ../shared): 200 Predicts wait at once (more than --max_rpc_threads) while health checks,
// GetJob and another job's upload answer within 100 ms, then each gets its own correct answer;
// a cancelled or closed Predict is freed at once; nino_nowcaster_busy_workers follows the
// workers; the service's deadlines read the Env's clock; a drain answers every waiting call.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/env/env.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"
#include "nino/v1/nowcaster.grpc.pb.h"
#include "nowcaster/grpc_probe.h"
#include "nowcaster/nowcaster_server.h"
#include "proto/wire.h"

namespace nino::nowcaster {
namespace {

constexpr int kMaxRpcThreads = 8;
constexpr int kWaiting = 200;
const absl::Duration kAnswerWithin = absl::Milliseconds(100);

// A small MLP job: period 20, so snapshots at steps 15..19 are the context of NiNo step 19.
const std::vector<std::pair<std::string, std::vector<int64_t>>>& Shapes() {
  static const auto* shapes = new std::vector<std::pair<std::string, std::vector<int64_t>>>{
      {"fc.0.weight", {8, 4}}, {"fc.0.bias", {8}}, {"fc.2.weight", {3, 8}}};
  return *shapes;
}
constexpr int64_t kParams = 8 * 4 + 8 + 3 * 8;
constexpr int64_t kStep = 19;
constexpr int64_t kContextSteps[] = {15, 16, 17, 18, 19};

std::string Dir() { return ::testing::TempDir() + "/waiting_predicts_test"; }
std::string ModelPath() { return Dir() + "/nino_mlp.pt"; }

// Threads of this process (server, client and test).
int ThreadCount() {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    (void)entry;
    ++n;
  }
  return n;
}

// GET http://127.0.0.1:port/path over a raw socket; the whole response.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "connect failed";
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) response.append(buf, n);
  close(fd);
  return response;
}

// Whether /metrics has the sample line `line` (name, labels, value).
bool MetricsHave(int port, const std::string& line) {
  return HttpGet(port, "/metrics").find(line + "\n") != std::string::npos;
}

v1::RegisterJobRequest JobRequest(const std::string& job_id) {
  v1::RegisterJobRequest r;
  r.set_job_id(job_id);
  for (const auto& [name, shape] : Shapes()) {
    v1::ParamInfo* p = r.add_params();
    p->set_name(name);
    for (int64_t d : shape) p->add_shape(d);
    p->set_dtype(v1::DTYPE_FLOAT32);
  }
  r.mutable_graph()->set_kind("generic");
  r.set_nino_model("nino_mlp");
  r.set_period(20);
  r.set_ctx(5);
  r.set_max_train_steps(100);
  return r;
}

// [5, P]: a drifting trajectory from a random start.
torch::Tensor States(int seed) {
  torch::manual_seed(seed);
  torch::Tensor theta = 0.1 * torch::randn({kParams});
  torch::Tensor drift = torch::randn({kParams});
  std::vector<torch::Tensor> states{theta};
  for (int s = 1; s < 5; ++s) states.push_back(states.back() + 0.01 * drift);
  return torch::stack(states).contiguous();
}

absl::Span<const float> Row(const torch::Tensor& states, int i) {
  return absl::Span<const float>(states[i].data_ptr<float>(), kParams);
}

// Blocks every pass (the nowcast or graph-build test hook) while closed.
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
  // False if fewer than n passes started within `timeout`.
  bool AwaitEntered(int n, absl::Duration timeout = absl::Seconds(20)) {
    absl::MutexLock lock(&mu);
    auto reached = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return entered >= n; };
    return mu.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }
};

// True once `fn()` held, polling every 5 ms for up to `timeout`.
template <typename Fn>
bool Eventually(Fn fn, absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time end = absl::Now() + timeout;
  while (!fn()) {
    if (absl::Now() > end) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// One Predict on gRPC's callback client API (no client thread per call either): assembles
// and checks the chunks, keeps the final status.
class PredictClient : public grpc::ClientReadReactor<v1::PredictionChunk> {
 public:
  PredictClient(v1::Nowcaster::Stub* stub, const std::string& job, const std::string& token, int k,
                absl::Duration deadline = absl::Seconds(60))
      : values_(kParams), assembler_(values_.data(), kParams * 4, 0) {
    request_.set_job_id(job);
    request_.set_job_token(token);
    request_.set_step(kStep);
    request_.set_k(k);
    context_.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    stub->async()->Predict(&context_, &request_, this);
    StartRead(&chunk_);
    StartCall();
  }
  // A test that stops early still waits for gRPC to be done with the call.
  ~PredictClient() override {
    Cancel();
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (assembled_.ok()) assembled_ = assembler_.Add(chunk_);
    StartRead(&chunk_);
  }
  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }

  void Cancel() { context_.TryCancel(); }
  bool done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }
  // The final status; OK only if the chunks assembled into the whole prediction.
  grpc::Status Await() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    if (!status_.ok()) return status_;
    if (!assembled_.ok() || !assembler_.Finish().ok() || assembler_.k() != request_.k()) {
      return grpc::Status(grpc::StatusCode::DATA_LOSS, "bad prediction stream");
    }
    return status_;
  }
  const std::vector<float>& values() const { return values_; }
  const std::string& job() const { return request_.job_id(); }
  int k() const { return request_.k(); }

 private:
  v1::PredictRequest request_;
  grpc::ClientContext context_;
  v1::PredictionChunk chunk_;
  std::vector<float> values_;
  wire::ChunkAssembler assembler_;  // used by gRPC's read callbacks, one at a time
  absl::Status assembled_;
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// The clock of the Env shifted by `shift` (deadlines look nearer or farther).
class ShiftedClockEnv : public EnvWrapper {
 public:
  explicit ShiftedClockEnv(absl::Duration shift) : EnvWrapper(Env::Default()), shift_(shift) {}
  absl::Time Now() override { return target()->Now() + shift_; }

 private:
  const absl::Duration shift_;
};

class WaitingPredictsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::filesystem::create_directories(Dir());
    NiNoConfig c;
    c.gnn = false;
    auto model = NiNoModel::Synthetic(c, 7);
    ASSERT_TRUE(model.ok()) << model.status();
    ASSERT_TRUE(model->Save(ModelPath()).ok());
  }
  void TearDown() override {
    if (nowcast_gate_) nowcast_gate_->Set(true);
    if (build_gate_) build_gate_->Set(true);
    if (server_) server_->Shutdown();
  }

  // Small limits: one worker, --max_rpc_threads 8, room in the queue for every Predict here;
  // both test hooks pass through the gates (open until a test closes them).
  NowcasterOptions Options() {
    nowcast_gate_ = std::make_shared<Gate>();
    build_gate_ = std::make_shared<Gate>();
    NowcasterOptions o;
    o.address = "127.0.0.1:0";
    o.models = {{"nino_mlp", ModelPath()}};
    o.threads = 1;
    o.workers = 1;
    o.queue_length = 2 * kWaiting;
    o.max_rpc_threads = kMaxRpcThreads;
    o.metrics_port = kAnyPort;
    o.metrics_host = "127.0.0.1";
    o.register_wait_ms = 10000;
    o.shutdown_deadline_ms = 2000;
    o.before_nowcast_for_testing = [gate = nowcast_gate_] { gate->Pass(); };
    o.before_graph_build_for_testing = [gate = build_gate_] { gate->Pass(); };
    return o;
  }
  void Start(NowcasterOptions o, Env* env = Env::Default()) {
    auto server = NowcasterServer::BuildAndStart(std::move(o), env);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Nowcaster::NewStub(channel_);
  }

  std::string Register(const std::string& job_id, v1::RegisterJobResponse* out = nullptr,
                       absl::Duration deadline = absl::Seconds(60)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    v1::RegisterJobResponse response;
    const grpc::Status s = stub_->RegisterJob(&ctx, JobRequest(job_id), &response);
    EXPECT_TRUE(s.ok()) << job_id << ": " << s.error_message();
    if (out != nullptr) *out = response;
    return response.job_token();
  }
  grpc::Status PutState(const std::string& job, const std::string& token, int64_t step,
                        absl::Span<const float> values) {
    auto chunks = wire::SplitState(job, token, step, values, 64);  // 4 chunks
    EXPECT_TRUE(chunks.ok()) << chunks.status();
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::PutStateResponse r;
    auto writer = stub_->PutState(&ctx, &r);
    for (const auto& c : *chunks) {
      if (!writer->Write(c)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }
  void PutContext(const std::string& job, const std::string& token, const torch::Tensor& states) {
    for (int i = 0; i < 5; ++i) {
      const grpc::Status s = PutState(job, token, kContextSteps[i], Row(states, i));
      ASSERT_TRUE(s.ok()) << job << ": " << s.error_message();
    }
  }
  grpc::Status GetJob(const std::string& job, const std::string& token, v1::JobStatus* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::JobRef ref;
    ref.set_job_id(job);
    ref.set_job_token(token);
    return stub_->GetJob(&ctx, ref, out);
  }
  v1::JobStatus Status(const std::string& job, const std::string& token) {
    v1::JobStatus st;
    const grpc::Status s = GetJob(job, token, &st);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return st;
  }
  grpc::Status CloseJob(const std::string& job, const std::string& token) {
    grpc::ClientContext ctx;
    v1::JobRef ref;
    ref.set_job_id(job);
    ref.set_job_token(token);
    v1::CloseJobResponse r;
    return stub_->CloseJob(&ctx, ref, &r);
  }
  bool Metric(const std::string& line) { return MetricsHave(server_->metrics_port(), line); }

  // The in-process reference: the NiNo library on the same states.
  static torch::Tensor Reference(const torch::Tensor& states, int k) {
    auto model = NiNoModel::Load(ModelPath());
    EXPECT_TRUE(model.ok()) << model.status();
    auto engine = NowcastEngine::Create(std::make_shared<const NiNoModel>(std::move(*model)),
                                        *MakeParamTable(Shapes()), GraphSpec{});
    EXPECT_TRUE(engine.ok()) << engine.status();
    auto pred = (*engine)->Nowcast(states, k);
    EXPECT_TRUE(pred.ok()) << pred.status();
    return *pred;
  }

  std::shared_ptr<Gate> nowcast_gate_;
  std::shared_ptr<Gate> build_gate_;
  std::unique_ptr<NowcasterServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Nowcaster::Stub> stub_;
};

#define EXPECT_CODE(status, code_)                                             \
  do {                                                                         \
    const grpc::Status s_ = (status);                                          \
    EXPECT_EQ(s_.error_code(), grpc::StatusCode::code_) << s_.error_message(); \
  } while (0)

TEST_F(WaitingPredictsTest, TwoHundredWaitingPredictsHoldNoThreadsAndTheServerStaysResponsive) {
  Start(Options());
  // Two jobs with their graphs built, one whose graph build is held back, one for uploads.
  const torch::Tensor states[] = {States(1), States(2), States(3)};
  const std::string ids[] = {"ready-0", "ready-1", "building"};
  std::string tokens[3];
  for (int j = 0; j < 2; ++j) {
    tokens[j] = Register(ids[j]);
    PutContext(ids[j], tokens[j], states[j]);
  }
  const std::string upload_token = Register("upload");
  build_gate_->Set(false);
  v1::RegisterJobResponse reg;
  tokens[2] = Register(ids[2], &reg, /*deadline=*/absl::Seconds(1));  // answers before its build
  EXPECT_FALSE(reg.graph_ready());
  PutContext(ids[2], tokens[2], states[2]);
  nowcast_gate_->Set(false);
  ASSERT_FALSE(HasFailure());

  // 200 Predicts: 100 wait for the graph of "building", 100 for the one worker (one of them
  // holds it, stopped in the test hook, 99 queue). k differs, so every answer differs.
  const int threads_before = ThreadCount();
  std::vector<std::unique_ptr<PredictClient>> calls;
  for (int i = 0; i < kWaiting; ++i) {
    const int j = i % 2 == 0 ? 2 : i % 4 == 1 ? 0 : 1;
    calls.push_back(std::make_unique<PredictClient>(stub_.get(), ids[j], tokens[j], 1 + i % 40));
  }
  int max_threads = ThreadCount();
  ASSERT_TRUE(nowcast_gate_->AwaitEntered(1));
  ASSERT_TRUE(Eventually([&] {
    max_threads = std::max(max_threads, ThreadCount());
    return server_->predicts_in_flight() == kWaiting && server_->queue_depth() == 99;
  })) << server_->predicts_in_flight()
      << " in flight, " << server_->queue_depth() << " queued";
  for (const auto& call : calls) EXPECT_FALSE(call->done());
  EXPECT_TRUE(Metric(absl::StrCat("nino_nowcaster_predicts_in_flight ", kWaiting)));
  EXPECT_TRUE(Metric("nino_nowcaster_queue_depth 99"));
  EXPECT_TRUE(Metric("nino_nowcaster_busy_workers 1"));

  // Meanwhile health (readiness and liveness), GetJob and another job's upload answer at once.
  absl::Duration slowest;
  auto timed = [&](const char* what, auto call) {
    const absl::Time t0 = absl::Now();
    const bool ok = call();
    const absl::Duration took = absl::Now() - t0;
    slowest = std::max(slowest, took);
    EXPECT_TRUE(ok) << what;
    EXPECT_LT(took, kAnswerWithin) << what << " took " << took;
    max_threads = std::max(max_threads, ThreadCount());
  };
  const torch::Tensor upload = States(4);
  for (int round = 0; round < 3; ++round) {
    timed("readiness", [&] {
      auto s = CheckHealth(channel_, "", absl::Seconds(5));
      return s.ok() && *s == ServingStatus::kServing;
    });
    timed("liveness", [&] {
      auto s = CheckHealth(channel_, kLivenessService, absl::Seconds(5));
      return s.ok() && *s == ServingStatus::kServing;
    });
    timed("GetJob", [&] {
      v1::JobStatus st;
      return GetJob(ids[0], tokens[0], &st).ok() && st.states_held() == 5;
    });
    timed("PutState",
          [&] { return PutState("upload", upload_token, 15 + round, Row(upload, round)).ok(); });
  }
  EXPECT_EQ(Status("upload", upload_token).states_held(), 3);
  EXPECT_EQ(server_->predicts_in_flight(), kWaiting) << "a waiting Predict was answered early";

  // No thread per waiting call: the process grew by far fewer threads than calls wait.
  std::cout << "threads: " << threads_before << " before the Predicts, at most " << max_threads
            << " while " << kWaiting << " waited; slowest health/GetJob/PutState answer " << slowest
            << "\n";
  EXPECT_LE(max_threads - threads_before, kMaxRpcThreads + 16);

  // Let the graph build and the worker go: every call gets its own job's prediction at its k.
  build_gate_->Set(true);
  nowcast_gate_->Set(true);
  std::map<std::pair<std::string, int>, torch::Tensor> want;
  for (int j = 0; j < 3; ++j) {
    for (int k = 1; k <= 40; ++k) want[{ids[j], k}] = Reference(states[j], k);
  }
  int ok = 0;
  for (const auto& call : calls) {
    const grpc::Status s = call->Await();
    ASSERT_TRUE(s.ok()) << call->job() << " k " << call->k() << ": " << s.error_message();
    const torch::Tensor got =
        torch::from_blob(const_cast<float*>(call->values().data()), {kParams});
    EXPECT_LE((got - want[{call->job(), call->k()}]).abs().max().item<double>(), 1e-6)
        << call->job() << " k " << call->k();
    ++ok;
  }
  EXPECT_EQ(ok, kWaiting);
  EXPECT_EQ(Status(ids[0], tokens[0]).predictions(), kWaiting / 4);
  EXPECT_EQ(Status(ids[1], tokens[1]).predictions(), kWaiting / 4);
  EXPECT_EQ(Status(ids[2], tokens[2]).predictions(), kWaiting / 2);
  EXPECT_TRUE(Eventually([&] { return server_->predicts_in_flight() == 0; }));
  EXPECT_TRUE(Metric("nino_nowcaster_predicts_in_flight 0"));
  EXPECT_TRUE(Metric(
      absl::StrCat("nino_nowcaster_requests_total{code=\"OK\",method=\"Predict\"} ", kWaiting)));
}

TEST_F(WaitingPredictsTest, ACancelledWaitingPredictIsFreedAtOnce) {
  Start(Options());
  const torch::Tensor states = States(5);
  const std::string t0 = Register("run"), t1 = Register("queued");
  PutContext("run", t0, states);
  PutContext("queued", t1, states);
  build_gate_->Set(false);
  const std::string t2 = Register("building", nullptr, absl::Seconds(1));
  PutContext("building", t2, states);
  nowcast_gate_->Set(false);

  PredictClient running(stub_.get(), "run", t0, 1);
  ASSERT_TRUE(nowcast_gate_->AwaitEntered(1));
  PredictClient queued(stub_.get(), "queued", t1, 2);
  PredictClient building(stub_.get(), "building", t2, 3);
  ASSERT_TRUE(Eventually(
      [&] { return server_->predicts_in_flight() == 3 && server_->queue_depth() == 1; }));

  // Cancelled while queued for the worker: answered, out of the queue, the job unchanged.
  queued.Cancel();
  EXPECT_CODE(queued.Await(), CANCELLED);
  ASSERT_TRUE(Eventually(
      [&] { return server_->predicts_in_flight() == 2 && server_->queue_depth() == 0; }));
  EXPECT_TRUE(Metric("nino_nowcaster_queue_depth 0"));
  EXPECT_TRUE(Metric("nino_nowcaster_predicts_in_flight 2"));
  EXPECT_TRUE(Eventually([&] {
    return Metric("nino_nowcaster_requests_total{code=\"CANCELLED\",method=\"Predict\"} 1");
  }));
  // Cancelled while its job's graph is being built.
  building.Cancel();
  EXPECT_CODE(building.Await(), CANCELLED);
  ASSERT_TRUE(Eventually([&] { return server_->predicts_in_flight() == 1; }));
  EXPECT_TRUE(Eventually([&] {
    return Metric("nino_nowcaster_requests_total{code=\"CANCELLED\",method=\"Predict\"} 2");
  }));

  build_gate_->Set(true);
  nowcast_gate_->Set(true);
  ASSERT_TRUE(running.Await().ok());
  // Only the running call's nowcast ran; the cancelled ones kept their jobs' snapshots.
  EXPECT_TRUE(Eventually([&] { return server_->predicts_in_flight() == 0; }));
  EXPECT_TRUE(Metric("nino_nowcaster_nowcast_seconds_count 1"));
  EXPECT_EQ(Status("queued", t1).states_held(), 5);
  EXPECT_EQ(Status("queued", t1).predictions(), 0);
  EXPECT_EQ(Status("building", t2).states_held(), 5);
  EXPECT_EQ(Status("run", t0).predictions(), 1);
}

TEST_F(WaitingPredictsTest, ClosingAJobAnswersItsWaitingPredicts) {
  Start(Options());
  const torch::Tensor states = States(6);
  const std::string t0 = Register("run"), t1 = Register("closing");
  PutContext("run", t0, states);
  PutContext("closing", t1, states);
  nowcast_gate_->Set(false);
  PredictClient running(stub_.get(), "run", t0, 1);
  ASSERT_TRUE(nowcast_gate_->AwaitEntered(1));
  PredictClient waiting(stub_.get(), "closing", t1, 2);
  ASSERT_TRUE(Eventually([&] { return server_->queue_depth() == 1; }));
  ASSERT_TRUE(CloseJob("closing", t1).ok());
  const grpc::Status s = waiting.Await();
  EXPECT_CODE(s, FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("closed"), std::string::npos) << s.error_message();
  EXPECT_TRUE(Eventually(
      [&] { return server_->predicts_in_flight() == 1 && server_->queue_depth() == 0; }));
  nowcast_gate_->Set(true);
  EXPECT_TRUE(running.Await().ok());
}

TEST_F(WaitingPredictsTest, BusyWorkersGaugeFollowsTheWorkers) {
  NowcasterOptions o = Options();
  o.workers = 2;
  Start(o);
  const torch::Tensor states = States(7);
  const std::string t0 = Register("a"), t1 = Register("b");
  PutContext("a", t0, states);
  PutContext("b", t1, states);
  EXPECT_TRUE(Metric("nino_nowcaster_busy_workers 0"));
  nowcast_gate_->Set(false);
  PredictClient a(stub_.get(), "a", t0, 1);
  ASSERT_TRUE(nowcast_gate_->AwaitEntered(1));
  EXPECT_TRUE(Eventually([&] { return Metric("nino_nowcaster_busy_workers 1"); }));
  PredictClient b(stub_.get(), "b", t1, 1);
  ASSERT_TRUE(nowcast_gate_->AwaitEntered(2));
  EXPECT_TRUE(Eventually([&] { return Metric("nino_nowcaster_busy_workers 2"); }));
  EXPECT_EQ(server_->busy_workers(), 2);
  nowcast_gate_->Set(true);
  ASSERT_TRUE(a.Await().ok());
  ASSERT_TRUE(b.Await().ok());
  EXPECT_TRUE(Eventually([&] { return Metric("nino_nowcaster_busy_workers 0"); }));
  EXPECT_EQ(server_->busy_workers(), 0);
}

TEST_F(WaitingPredictsTest, DeadlinesReadTheEnvClock) {
  // The Env's clock runs an hour ahead: every deadline has passed by its reckoning.
  ShiftedClockEnv env(absl::Hours(1));
  NowcasterOptions o = Options();
  o.register_wait_ms = 20000;
  Start(o, &env);
  const torch::Tensor states = States(8);
  const std::string token = Register("ready");
  PutContext("ready", token, states);
  // RegisterJob's wait for the graph ends at the call's deadline (30 s away by the real clock).
  build_gate_->Set(false);
  v1::RegisterJobResponse reg;
  const absl::Time t0 = absl::Now();
  const std::string building = Register("building", &reg, absl::Seconds(30));
  EXPECT_FALSE(building.empty());
  EXPECT_FALSE(reg.graph_ready());
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5)) << "waited by the real clock";
  build_gate_->Set(true);
  // A Predict whose deadline (60 s away by the real clock) passed by the Env's: refused by the
  // worker before the nowcast, the job unchanged.
  PredictClient late(stub_.get(), "ready", token, 1, absl::Seconds(60));
  EXPECT_CODE(late.Await(), DEADLINE_EXCEEDED);
  EXPECT_EQ(Status("ready", token).states_held(), 5);
  EXPECT_TRUE(Metric("nino_nowcaster_nowcast_seconds_count 0"));
}

TEST_F(WaitingPredictsTest, ShutdownAnswersEveryWaitingPredict) {
  NowcasterOptions o = Options();
  o.shutdown_deadline_ms = 300;
  Start(o);
  const torch::Tensor states = States(9);
  const std::string t0 = Register("run"), t1 = Register("queued");
  PutContext("run", t0, states);
  PutContext("queued", t1, states);
  build_gate_->Set(false);
  const std::string t2 = Register("building", nullptr, absl::Seconds(1));
  PutContext("building", t2, states);
  nowcast_gate_->Set(false);
  PredictClient running(stub_.get(), "run", t0, 1);
  ASSERT_TRUE(nowcast_gate_->AwaitEntered(1));
  PredictClient queued(stub_.get(), "queued", t1, 1);
  PredictClient building(stub_.get(), "building", t2, 1);
  ASSERT_TRUE(Eventually([&] { return server_->predicts_in_flight() == 3; }));

  // The drain's deadline passes with the worker and the builder held: gRPC cancels the calls,
  // each waiting Predict is answered (none hangs); then the workers stop.
  std::thread stopper([&] { server_->Shutdown(); });
  EXPECT_FALSE(queued.Await().ok());
  EXPECT_FALSE(building.Await().ok());
  EXPECT_FALSE(running.Await().ok());
  nowcast_gate_->Set(true);
  build_gate_->Set(true);
  stopper.join();
  EXPECT_EQ(server_->predicts_in_flight(), 0);
}

}  // namespace
}  // namespace nino::nowcaster
