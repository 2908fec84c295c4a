// Failure tests 1 and 7 of issue 13 against the real nino_nowcaster process (loopback, a
// synthetic WNN+ checkpoint, bounded in time):
//   1. the nowcaster killed (SIGKILL) during an upload and during a prediction: training goes
//      on, and the final parameters equal, bit for bit, a run in which those NiNo steps were
//      ordinary optimizer steps;
//   7. SIGTERM under load: readiness turns NOT_SERVING first, predictions in flight are served
//      (drained), the process exits 0, and no client ever receives a wrong prediction.
// The daemon's --testonly_nowcast_delay_ms makes every nowcast slow, so that work is reliably in
// flight when the signal arrives.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/nino_client.h"
#include "client/remote_nowcaster.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"
#include "nowcaster/grpc_probe.h"
#include "tests/testing/child_process.h"
#include "tests/testing/loopback_nowcaster.h"
#include "tests/testing/synthetic_checkpoint.h"
#include "tests/testing/test_jobs.h"
#include "tests/testing/test_util.h"

namespace nino {
namespace {

using client::NowcastOptimizer;
using client::NowcastOptimizerOptions;
using testing::ChildProcess;

// A small MLP the server maps as a generic chain: fc.0 (6 -> 5), ReLU, fc.2 (5 -> 3).
struct NetImpl : torch::nn::Module {
  torch::nn::Sequential fc{torch::nn::Linear(6, 5), torch::nn::ReLU(), torch::nn::Linear(5, 3)};
  NetImpl() {
    register_module("fc", fc);
    torch::NoGradGuard no_grad;
    torch::manual_seed(7);
    for (auto& p : parameters()) p.copy_(torch::randn(p.sizes()) * 0.3);
  }
};
TORCH_MODULE(Net);

const std::vector<std::pair<std::string, std::vector<int64_t>>> kLayout = {
    {"fc.0.weight", {5, 6}}, {"fc.0.bias", {5}}, {"fc.2.weight", {3, 5}}, {"fc.2.bias", {3}}};
constexpr int64_t kParams = 5 * 6 + 5 + 3 * 5 + 3;

torch::Tensor Flat(const Net& net) {
  std::vector<torch::Tensor> all;
  for (const auto& p : net->parameters()) all.push_back(p.detach().reshape({-1}));
  return torch::cat(all);
}

// One training call as the README's loop: zero_grad, backward unless it is a NiNo step, step.
NinoStepOutcome TrainCall(NowcastOptimizer& opt, Net& net, torch::optim::SGD& sgd, int call) {
  sgd.zero_grad();
  if (opt.need_grads()) {
    torch::Tensor x = torch::linspace(-1, 1, 24).reshape({4, 6}) * (1.0 + 0.05 * call);
    net->fc->forward(x).pow(2).mean().backward();
  }
  return opt.step();
}

// NiNo steps every 10 calls (snapshots every 2), a short run.
NowcastOptimizerOptions Schedule() {
  NowcastOptimizerOptions o;
  o.period = 10;
  o.ctx = 5;
  o.max_train_steps = 100;
  o.nino_model = "nino_mlp";
  o.quiet = true;
  return o;
}

class Unavailable : public Nowcaster {
 public:
  absl::StatusOr<torch::Tensor> Nowcast(const torch::Tensor&, int) override {
    return absl::UnavailableError("no nowcaster");
  }
};

// The reference: `calls` calls in which every NiNo step is an ordinary step.
torch::Tensor OrdinaryRun(int calls) {
  Net net;
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1));
  auto opt = NowcastOptimizer::CreateWithNowcaster(&sgd, client::NamedParameters(*net), Schedule(),
                                                   std::make_shared<Unavailable>());
  EXPECT_TRUE(opt.ok()) << opt.status();
  for (int i = 0; i < calls; ++i) TrainCall(**opt, net, sgd, i);
  EXPECT_EQ((*opt)->stats().fallbacks, calls / 10);
  return Flat(net);
}

// nino_nowcaster on 127.0.0.1:<free port> serving the synthetic WNN+ checkpoint as nino_mlp.
class Daemon {
 public:
  explicit Daemon(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {
        testing::NowcasterBinary(), "--address=127.0.0.1:0", "--threads=1", "--metrics_port=0",
        "--nino_model=nino_mlp=" +
            testing::SharedSyntheticCheckpoint(testing::SyntheticNiNo::kWnn)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    child_ = std::make_unique<ChildProcess>(argv);
    log_ = child_->ReadUntil("device ");
    port_ = testing::NumberAfter(log_, "listening on 127.0.0.1:");
  }
  int port() const { return port_; }
  pid_t pid() const { return child_->pid(); }
  ChildProcess& child() { return *child_; }
  const std::string& log() const { return log_; }

 private:
  std::unique_ptr<ChildProcess> child_;
  std::string log_;
  int port_ = 0;
};

// True once /proc says `pid` is stopped (state T): kill(SIGSTOP) only queues the stop, and on a
// loaded machine a daemon thread could still finish a call before it takes effect.
bool WaitUntilStopped(pid_t pid, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    const size_t paren = line.rfind(')');
    if (paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'T') {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

// Failure test 1: `stop_before_step` runs just before the first NiNo step (call 9) and arranges
// the kill during it. 25 calls: NiNo steps 9 and 19 both become ordinary steps.
void ExpectAKilledNowcasterLeavesAnOrdinaryRun(Daemon& daemon,
                                               const std::function<void()>& stop_before_step,
                                               int64_t expect_uploads_before_kill) {
  ASSERT_GT(daemon.port(), 0) << daemon.log();
  Net net;
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1));
  NowcastOptimizerOptions o = Schedule();
  o.nowcaster = testing::LoopbackAddress(daemon.port());
  o.nowcast_timeout = absl::Seconds(20);
  o.rpc_timeout = absl::Seconds(5);
  auto opt = NowcastOptimizer::Create(&sgd, client::NamedParameters(*net), o);
  ASSERT_TRUE(opt.ok()) << opt.status();
  for (int i = 0; i < 9; ++i) TrainCall(**opt, net, sgd, i);
  ASSERT_TRUE((*opt)->WaitForUploads(absl::Seconds(20)));
  ASSERT_EQ((*opt)->stats().remote.uploads, 4) << "the live nowcaster took the first snapshots";

  stop_before_step();
  const auto t0 = std::chrono::steady_clock::now();
  const NinoStepOutcome killed = TrainCall(**opt, net, sgd, 9);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(15));
  EXPECT_TRUE(killed.nino_step);
  EXPECT_FALSE(killed.applied);
  EXPECT_FALSE(killed.status.ok());
  EXPECT_EQ((*opt)->stats().remote.uploads, expect_uploads_before_kill);
  const int status = daemon.child().WaitExit(std::chrono::seconds(10));
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

  for (int i = 10; i < 25; ++i) TrainCall(**opt, net, sgd, i);  // training goes on
  EXPECT_EQ((*opt)->stats().nino_steps, 2);
  EXPECT_EQ((*opt)->stats().applied, 0);
  EXPECT_EQ((*opt)->stats().fallbacks, 2);
  const torch::Tensor want = OrdinaryRun(25);
  EXPECT_TRUE(torch::equal(Flat(net), want))
      << "max diff " << (Flat(net) - want).abs().max().item<double>();
}

TEST(NowcasterKilled, DuringAnUploadTheRunEqualsOneWithAnOrdinaryStep) {
  Daemon daemon;
  std::thread killer;
  // Frozen first, so the NiNo step's upload of its newest snapshot is surely in flight when the
  // process dies.
  ExpectAKilledNowcasterLeavesAnOrdinaryRun(
      daemon,
      [&] {
        ASSERT_EQ(kill(daemon.pid(), SIGSTOP), 0);
        ASSERT_TRUE(WaitUntilStopped(daemon.pid(), std::chrono::seconds(5)));
        killer = std::thread([pid = daemon.pid()] {
          std::this_thread::sleep_for(std::chrono::milliseconds(700));
          kill(pid, SIGKILL);
        });
      },
      /*expect_uploads_before_kill=*/4);
  if (killer.joinable()) killer.join();
}

TEST(NowcasterKilled, DuringAPredictionTheRunEqualsOneWithAnOrdinaryStep) {
  // Every nowcast takes 5 s on the server: the kill 1.5 s into the NiNo step lands in Predict,
  // after the whole context was uploaded (5 uploads).
  Daemon daemon({"--testonly_nowcast_delay_ms=5000"});
  std::thread killer;
  ExpectAKilledNowcasterLeavesAnOrdinaryRun(
      daemon,
      [&] {
        killer = std::thread([pid = daemon.pid()] {
          std::this_thread::sleep_for(std::chrono::milliseconds(1500));
          kill(pid, SIGKILL);
        });
      },
      /*expect_uploads_before_kill=*/5);
  if (killer.joinable()) killer.join();
}

// Failure test 7: four clients predicting in a loop (each nowcast takes 600 ms, two workers),
// SIGTERM while predictions are in flight. Readiness turns NOT_SERVING before the process goes,
// the predictions in flight at the signal are answered, the exit code is 0, and every answer any
// client received equals the in-process engine's prediction for that client's snapshots.
TEST(NowcasterSigterm, UnderLoadItDrainsAndNoClientSeesAWrongAnswer) {
  Daemon daemon({"--workers=2", "--testonly_nowcast_delay_ms=600", "--lame_duck_ms=1500",
                 "--shutdown_deadline_ms=8000"});
  ASSERT_GT(daemon.port(), 0) << daemon.log();
  auto model = NiNoModel::Load(testing::SharedSyntheticCheckpoint(testing::SyntheticNiNo::kWnn));
  ASSERT_TRUE(model.ok()) << model.status();
  auto engine = NowcastEngine::Create(std::make_shared<const NiNoModel>(std::move(*model)),
                                      *MakeParamTable(kLayout), GraphSpec{});
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::mutex engine_mu;  // one engine, several checking threads

  std::atomic<bool> sigterm_sent{false};
  std::atomic<int> answered{0}, wrong{0}, in_flight_at_sigterm_answered{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      client::RemoteNowcasterOptions o;
      o.address = testing::LoopbackAddress(daemon.port());
      o.job_id = absl::StrCat("sigterm-", c);
      o.params = kLayout;
      o.nino_model = "nino_mlp";
      o.period = 20;
      o.max_train_steps = 1000;
      o.nowcast_timeout = absl::Seconds(20);
      o.rpc_timeout = absl::Seconds(5);
      o.quiet = true;
      client::RemoteNowcaster remote(o);
      for (int i = 0; i < 30; ++i) {
        const torch::Tensor states = testing::SmoothStates(kParams, 1000 * c + i);
        const int64_t nino_step = 19 + 20 * i;
        for (int64_t r = 0; r < 4; ++r) remote.StateRecorded(nino_step - (4 - r) * 4, states[r]);
        remote.SetNinoStep(nino_step);
        const bool before = !sigterm_sent.load();
        absl::StatusOr<torch::Tensor> got = remote.Nowcast(states, 5);
        if (!got.ok()) {
          if (sigterm_sent.load()) return;  // the server is going away: this client stops
          continue;
        }
        ++answered;
        if (before && sigterm_sent.load()) ++in_flight_at_sigterm_answered;
        absl::StatusOr<torch::Tensor> want;
        {
          std::lock_guard<std::mutex> lock(engine_mu);
          want = (*engine)->Nowcast(states, 5);
        }
        if (!want.ok() || (*got - *want).abs().max().item<double>() > 1e-6) ++wrong;
      }
    });
  }
  // Let every client get answers, then SIGTERM with predictions in flight.
  for (int i = 0; i < 300 && answered.load() < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GE(answered.load(), 4) << daemon.log();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  sigterm_sent = true;
  ASSERT_EQ(kill(daemon.pid(), SIGTERM), 0);

  // Readiness first: NOT_SERVING while the process is still there (the lame-duck period).
  auto channel = testing::LoopbackChannel(daemon.port());
  bool saw_not_serving = false;
  for (int i = 0; i < 100 && !saw_not_serving; ++i) {
    auto h = nowcaster::CheckHealth(channel, "nino.v1.Nowcaster", absl::Seconds(1));
    if (h.ok() && *h == nowcaster::ServingStatus::kNotServing) saw_not_serving = true;
    if (!h.ok()) break;  // gone already
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(saw_not_serving) << "readiness never turned NOT_SERVING before the exit";

  const int status = daemon.child().WaitExit(std::chrono::seconds(30));
  for (std::thread& t : clients) t.join();
  ASSERT_NE(status, -1) << "no exit within 30 s of SIGTERM";
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(wrong.load(), 0) << "a client received a wrong prediction";
  EXPECT_GE(in_flight_at_sigterm_answered.load(), 1)
      << "no prediction in flight at SIGTERM was answered (drain)";
  const std::string log = daemon.child().ReadUntil("stopped", std::chrono::seconds(5));
  EXPECT_NE(log.find("received SIGTERM"), std::string::npos) << log;
}

}  // namespace
}  // namespace nino
