// RemoteNowcaster against an in-process NowcasterServer: predictions equal the in-process
// engine's, a restarted server gets the context resent, and a missing server is a bounded error.
#include "client/remote_nowcaster.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"
#include "nowcaster/nowcaster_server.h"
#include "tests/testing/loopback_nowcaster.h"
#include "tests/testing/synthetic_checkpoint.h"
#include "tests/testing/test_jobs.h"

namespace nino::client {
namespace {

const testing::Layout& kFm16 = testing::Fm16Layout();

// A synthetic WNN+ model (the client does not care which NiNo runs): no ../shared needed.
std::string Checkpoint() {
  return testing::SharedSyntheticCheckpoint(testing::SyntheticNiNo::kWnn);
}

absl::StatusOr<std::unique_ptr<nowcaster::NowcasterServer>> StartServer(
    const std::string& address, int64_t memory_budget_bytes = 0) {
  nowcaster::NowcasterOptions o = testing::LoopbackNowcasterOptions({{"nino_mlp", Checkpoint()}});
  if (memory_budget_bytes > 0) o.memory_budget_bytes = memory_budget_bytes;
  o.address = address;
  return testing::StartLoopbackNowcaster(std::move(o));
}

RemoteNowcasterOptions ClientOptions(const std::string& address) {
  RemoteNowcasterOptions o;
  o.address = address;
  o.job_id = MakeJobId("fm16", 1);
  o.params = kFm16;
  o.nino_model = "nino_mlp";
  o.period = 20;
  o.ctx = 5;
  o.max_train_steps = 100;
  o.nowcast_timeout = absl::Seconds(30);
  o.rpc_timeout = absl::Seconds(10);
  return o;
}

// ctx states of a smooth trajectory (the official-like input of a NiNo step).
torch::Tensor States(int64_t num_params, int seed) {
  return testing::SmoothStates(num_params, seed);
}

class RemoteNowcasterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = NiNoModel::Load(Checkpoint());
    ASSERT_TRUE(model.ok()) << model.status();
    auto table = MakeParamTable(kFm16);
    ASSERT_TRUE(table.ok()) << table.status();
    num_params_ = TotalParams(*table);
    auto engine = NowcastEngine::Create(std::make_shared<const NiNoModel>(std::move(*model)),
                                        *table, GraphSpec{}, NowcastEngineOptions{});
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }
  // One NiNo step at call index `nino_step`: the first ctx-1 states go in the background.
  absl::StatusOr<torch::Tensor> Step(RemoteNowcaster& client, const torch::Tensor& states,
                                     int64_t nino_step, int k) {
    for (int64_t i = 0; i < 4; ++i) client.StateRecorded(nino_step - (4 - i) * 4, states[i]);
    client.SetNinoStep(nino_step);
    return client.Nowcast(states, k);
  }
  int64_t num_params_ = 0;
  std::unique_ptr<NowcastEngine> engine_;
};

TEST_F(RemoteNowcasterTest, MatchesTheEngineAndResendsTheContextAfterARestart) {
  auto server = StartServer("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = absl::StrCat("127.0.0.1:", (*server)->port());
  RemoteNowcaster client(ClientOptions(address));

  const torch::Tensor s1 = States(num_params_, 1);
  auto expected1 = engine_->Nowcast(s1, 7);
  ASSERT_TRUE(expected1.ok()) << expected1.status();
  auto got1 = Step(client, s1, 19, 7);
  ASSERT_TRUE(got1.ok()) << got1.status();
  EXPECT_LT((*got1 - *expected1).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(client.stats().uploads, 5);
  EXPECT_EQ(client.stats().context_resends, 0);

  // The server restarts (same port): it forgot the job; the client registers again, resends the
  // context once and gets the same answer as the engine.
  (*server)->Shutdown();
  server->reset();
  auto restarted = StartServer(address);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  const torch::Tensor s2 = States(num_params_, 2);
  auto expected2 = engine_->Nowcast(s2, 3);
  ASSERT_TRUE(expected2.ok()) << expected2.status();
  auto got2 = Step(client, s2, 39, 3);
  ASSERT_TRUE(got2.ok()) << got2.status();
  EXPECT_LT((*got2 - *expected2).abs().max().item<double>(), 1e-6);
  const RemoteNowcaster::Stats st = client.stats();
  EXPECT_EQ(st.predictions, 2);
  EXPECT_EQ(st.prediction_failures, 0);
  EXPECT_EQ(st.context_resends, 1);
  EXPECT_GE(st.registrations, 2);
}

TEST_F(RemoteNowcasterTest, NoServerIsABoundedError) {
  // Reserve a port, then free it: nothing listens there.
  std::string address;
  {
    auto server = StartServer("127.0.0.1:0");
    ASSERT_TRUE(server.ok()) << server.status();
    address = absl::StrCat("127.0.0.1:", (*server)->port());
  }
  RemoteNowcasterOptions o = ClientOptions(address);
  o.nowcast_timeout = absl::Seconds(3);
  o.rpc_timeout = absl::Seconds(1);
  o.quiet = true;
  RemoteNowcaster client(o);
  const auto t0 = std::chrono::steady_clock::now();
  auto got = Step(client, States(num_params_, 3), 19, 5);
  EXPECT_FALSE(got.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_EQ(client.stats().prediction_failures, 1);
  EXPECT_GE(client.stats().register_failures, 1);

  // Wrong-sized input is refused before any call.
  EXPECT_EQ(client.Nowcast(torch::zeros({2, 3}), 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ReplicaOrder, RendezvousHashingIsStable) {
  const std::string job = "fm16-s1-p1-t1";
  const auto order = ReplicaOrder(job, "a:1,b:2, c:3,,d:4");
  ASSERT_EQ(order.size(), 4u);
  // The same set in another order, or with spaces, gives the same order.
  EXPECT_EQ(ReplicaOrder(job, "d:4,c:3,b:2,a:1"), order);
  // Removing a replica keeps the others' relative order (a job moves only if its replica left).
  std::vector<std::string> rest(order.begin() + 1, order.end());
  std::string joined;
  for (const auto& a : rest) joined += a + ",";
  EXPECT_EQ(ReplicaOrder(job, joined), rest);
  // Different jobs spread over replicas.
  std::set<std::string> firsts;
  for (int i = 0; i < 40; ++i)
    firsts.insert(ReplicaOrder(absl::StrCat("job", i), "a:1,b:2,c:3,d:4")[0]);
  EXPECT_GE(firsts.size(), 3u);
  // Even over sequential ports: each of 3 replicas comes first for >= 25% of 300 jobs.
  const std::string loopback = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053";
  std::map<std::string, int> count;
  for (int i = 0; i < 300; ++i) ++count[ReplicaOrder(absl::StrCat("job", i), loopback)[0]];
  ASSERT_EQ(count.size(), 3u);
  for (const auto& [address, n] : count) EXPECT_GE(n, 75) << address;
  // The same vectors as python/tests/unit_test.py: both clients place a job alike.
  EXPECT_EQ(ReplicaScore("fm16-s1-p1-t1", "a:1"), 16166860272966390669ull);
  EXPECT_EQ(ReplicaOrder("fm16-s1-p1-t1", "a:1,b:2, c:3,,d:4"),
            (std::vector<std::string>{"a:1", "d:4", "b:2", "c:3"}));
  EXPECT_EQ(ReplicaOrder("job-2", loopback),
            (std::vector<std::string>{"127.0.0.1:50053", "127.0.0.1:50052", "127.0.0.1:50051"}));
  EXPECT_EQ(ReplicaOrder("mnist-run", "h:1,h:2,h:3,h:4,h:5"),
            (std::vector<std::string>{"h:1", "h:3", "h:2", "h:4", "h:5"}));
}

TEST_F(RemoteNowcasterTest, AKilledReplicaSendsTheJobToTheNextOne) {
  std::vector<std::unique_ptr<nowcaster::NowcasterServer>> servers;
  std::string addresses;
  for (int i = 0; i < 3; ++i) {
    auto s = StartServer("127.0.0.1:0");
    ASSERT_TRUE(s.ok()) << s.status();
    addresses += absl::StrCat(i ? "," : "", "127.0.0.1:", (*s)->port());
    servers.push_back(std::move(*s));
  }
  RemoteNowcasterOptions o = ClientOptions(addresses);
  RemoteNowcaster client(o);
  const std::vector<std::string> order = ReplicaOrder(o.job_id, addresses);
  const torch::Tensor s1 = States(num_params_, 1);
  auto got1 = Step(client, s1, 19, 7);
  ASSERT_TRUE(got1.ok()) << got1.status();
  EXPECT_EQ(client.replica(), order[0]);
  for (auto& s : servers) {
    if (absl::StrCat("127.0.0.1:", s->port()) == order[0]) s->Shutdown();
  }
  const torch::Tensor s2 = States(num_params_, 2);
  auto expected2 = engine_->Nowcast(s2, 3);
  ASSERT_TRUE(expected2.ok());
  auto got2 = Step(client, s2, 39, 3);
  ASSERT_TRUE(got2.ok()) << got2.status();
  EXPECT_LT((*got2 - *expected2).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(client.replica(), order[1]);
  EXPECT_GE(client.stats().failovers, 1);
  EXPECT_EQ(client.stats().predictions, 2);
}

TEST_F(RemoteNowcasterTest, AReplicaWithoutMemoryPassesTheJobOn) {
  // Which of two replicas comes first depends on the job id: give that one no memory.
  auto a = StartServer("127.0.0.1:0");
  ASSERT_TRUE(a.ok());
  const std::string addr_a = absl::StrCat("127.0.0.1:", (*a)->port());
  auto probe = StartServer("127.0.0.1:0");
  ASSERT_TRUE(probe.ok());
  const int port_b = (*probe)->port();
  (*probe)->Shutdown();
  probe->reset();
  const std::string addr_b = absl::StrCat("127.0.0.1:", port_b);
  RemoteNowcasterOptions o = ClientOptions(addr_a + "," + addr_b);
  const auto order = ReplicaOrder(o.job_id, o.address);
  // The first in order: a budget of 1 KiB (RESOURCE_EXHAUSTED); the second: the default.
  std::unique_ptr<nowcaster::NowcasterServer> small, big;
  if (order[0] == addr_a) {
    a->reset();
    auto s = StartServer(addr_a, 1024);
    ASSERT_TRUE(s.ok()) << s.status();
    small = std::move(*s);
    auto b = StartServer(addr_b);
    ASSERT_TRUE(b.ok()) << b.status();
    big = std::move(*b);
  } else {
    big = std::move(*a);
    auto s = StartServer(addr_b, 1024);
    ASSERT_TRUE(s.ok()) << s.status();
    small = std::move(*s);
  }
  RemoteNowcaster client(o);
  auto got = Step(client, States(num_params_, 4), 19, 5);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(client.replica(), order[1]);
  EXPECT_GE(client.stats().failovers, 1);
}

// Failure test 4 of issue 13: a slow nowcaster (test hook: every nowcast waits 4 s on the
// server) against a client whose NiNo step may take 2 s. The deadline fires, the step fails in
// bounded time, and the late answer is never used: the next NiNo step (the server fast again)
// returns exactly the prediction for its own snapshots, not the stale one.
TEST_F(RemoteNowcasterTest, ASlowNowcasterTimesOutAndItsLateAnswerIsNeverUsed) {
  auto slow = std::make_shared<std::atomic<bool>>(true);
  nowcaster::NowcasterOptions so = testing::LoopbackNowcasterOptions({{"nino_mlp", Checkpoint()}});
  so.before_nowcast_for_testing = [slow] {
    if (slow->load()) std::this_thread::sleep_for(std::chrono::seconds(4));
  };
  auto server = testing::StartLoopbackNowcaster(so);
  ASSERT_TRUE(server.ok()) << server.status();
  RemoteNowcasterOptions o = ClientOptions(absl::StrCat("127.0.0.1:", (*server)->port()));
  o.nowcast_timeout = absl::Seconds(2);
  o.quiet = true;
  RemoteNowcaster client(o);

  const torch::Tensor s1 = States(num_params_, 1);
  const auto t0 = std::chrono::steady_clock::now();
  auto late = Step(client, s1, 19, 7);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded) << late.status();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(3500));
  EXPECT_EQ(client.stats().prediction_failures, 1);

  // The server finishes (or skips) the abandoned nowcast; the next step is answered on time.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  slow->store(false);
  const torch::Tensor s2 = States(num_params_, 2);
  auto expected2 = engine_->Nowcast(s2, 3);
  auto stale = engine_->Nowcast(s1, 7);
  ASSERT_TRUE(expected2.ok() && stale.ok());
  auto got2 = Step(client, s2, 39, 3);
  ASSERT_TRUE(got2.ok()) << got2.status();
  EXPECT_LT((*got2 - *expected2).abs().max().item<double>(), 1e-6);
  EXPECT_GT((*got2 - *stale).abs().max().item<double>(), 1e-3) << "the late answer was used";
  EXPECT_EQ(client.stats().predictions, 1);
}

// Failure test 6 of issue 13: one byte of one chunk flipped in transit (after its CRC-32C was
// computed). The server refuses that upload with DATA_LOSS and keeps nothing of it; the client
// sends the snapshot again, which succeeds; the NiNo step returns exactly the engine's
// prediction, without re-registering or resending the context.
TEST_F(RemoteNowcasterTest, AChunkDamagedInTransitIsRefusedAndSentAgain) {
  auto server = StartServer("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  RemoteNowcasterOptions o = ClientOptions(absl::StrCat("127.0.0.1:", (*server)->port()));
  auto flips = std::make_shared<std::atomic<int>>(0);
  o.before_send_chunk_for_testing = [flips](v1::StateChunk* chunk) {
    // The first chunk of the snapshot of call 11 (the third of the context), once.
    if (chunk->step() == 11 && chunk->chunk_index() == 0 && flips->fetch_add(1) == 0) {
      (*chunk->mutable_data())[5] ^= 0x10;
    }
  };
  RemoteNowcaster client(o);
  const torch::Tensor s1 = States(num_params_, 1);
  auto expected = engine_->Nowcast(s1, 7);
  ASSERT_TRUE(expected.ok()) << expected.status();
  auto got = Step(client, s1, 19, 7);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_LT((*got - *expected).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(flips->load(), 2) << "the damaged chunk was sent again (undamaged)";
  const RemoteNowcaster::Stats st = client.stats();
  EXPECT_EQ(st.upload_retries, 1);
  EXPECT_EQ(st.upload_failures, 0);
  EXPECT_EQ(st.uploads, 5);
  EXPECT_EQ(st.context_resends, 0);
  EXPECT_EQ(st.registrations, 1);
}

}  // namespace
}  // namespace nino::client
