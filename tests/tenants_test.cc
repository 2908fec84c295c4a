// Failure test 5 of issue 13: eight concurrent jobs on one in-process nowcaster (loopback,
// synthetic WNN+ checkpoint), one of them misbehaving the whole time: garbage (malformed
// registrations, chunks with bad checksums, wrong tokens aimed at the other jobs), floods (many
// uploads and predictions at once) and disconnects (streams cancelled half-way). The seven
// well-behaved jobs finish every NiNo step with exactly the in-process engine's prediction for
// their own snapshots (nothing lost or crossed between jobs), and the server stays healthy.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/remote_nowcaster.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"
#include "nino/v1/nowcaster.grpc.pb.h"
#include "nowcaster/grpc_probe.h"
#include "proto/wire.h"
#include "tests/testing/loopback_nowcaster.h"
#include "tests/testing/synthetic_checkpoint.h"
#include "tests/testing/test_jobs.h"
#include "tests/testing/test_util.h"

namespace nino {
namespace {

using testing::Fm16Layout;
using testing::kFm16Params;
constexpr int kGoodJobs = 7;
constexpr int kStepsPerJob = 3;

// ctx states of a smooth trajectory, different for every (job, step).
torch::Tensor States(int job, int step) {
  return testing::SmoothStates(kFm16Params, 100 * job + step);
}

v1::RegisterJobRequest Fm16Request(const std::string& job_id) {
  return testing::RegisterRequest(job_id, Fm16Layout(), "nino_mlp", 20, 100);
}

// The misbehaving tenant: raw nino.v1 calls, each bounded by a 2 s deadline.
class Vandal {
 public:
  explicit Vandal(std::shared_ptr<grpc::Channel> channel)
      : channel_(channel), stub_(v1::Nowcaster::NewStub(channel)) {}

  // One round of every kind of misbehaviour; `victims` are the good jobs' ids (not tokens).
  void Round(int round, const std::vector<std::string>& victims) {
    Garbage(round, victims);
    Flood(round);
    Disconnects(round);
  }
  int calls() const { return calls_; }
  int ok_calls() const { return ok_calls_; }

 private:
  void Prepare(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    ++calls_;
  }
  void Count(const grpc::Status& s) {
    if (s.ok()) ++ok_calls_;
  }

  void Garbage(int round, const std::vector<std::string>& victims) {
    // Malformed registrations.
    for (int variant = 0; variant < 3; ++variant) {
      v1::RegisterJobRequest bad = Fm16Request(absl::StrCat("vandal-bad-", round, "-", variant));
      if (variant == 0) bad.clear_params();
      if (variant == 1) bad.mutable_params(2)->set_shape(1, -5);
      if (variant == 2) bad.set_period(7);  // not a multiple of ctx
      grpc::ClientContext ctx;
      Prepare(&ctx);
      v1::RegisterJobResponse r;
      Count(stub_->RegisterJob(&ctx, bad, &r));
    }
    // Uploads, predictions and closes aimed at the good jobs with made-up tokens.
    const std::string& victim = victims[round % victims.size()];
    const std::vector<float> junk(kFm16Params, 1e3f);
    auto chunks = wire::SplitState(victim, std::string(32, 'f'), 10000 + round,
                                   absl::MakeConstSpan(junk), 4096);
    if (chunks.ok()) Send(*chunks, -1);
    {
      grpc::ClientContext ctx;
      Prepare(&ctx);
      v1::PredictRequest req;
      req.set_job_id(victim);
      req.set_job_token(std::string(32, '0'));
      req.set_step(19);
      auto reader = stub_->Predict(&ctx, req);
      v1::PredictionChunk chunk;
      while (reader->Read(&chunk)) {
      }
      Count(reader->Finish());
    }
    {
      grpc::ClientContext ctx;
      Prepare(&ctx);
      v1::JobRef ref;
      ref.set_job_id(victim);
      ref.set_job_token(std::string(32, 'a'));
      v1::CloseJobResponse r;
      Count(stub_->CloseJob(&ctx, ref, &r));
    }
    // Its own job: a chunk with a flipped byte (DATA_LOSS) and NaNs (INVALID_ARGUMENT).
    const std::string own = absl::StrCat("vandal-", round);
    std::string token = RegisterOwn(own);
    if (token.empty()) return;
    auto corrupt = wire::SplitState(own, token, 199, absl::MakeConstSpan(junk), 4096);
    if (corrupt.ok()) {
      (*(*corrupt)[1].mutable_data())[7] ^= 0x01;
      Send(*corrupt, -1);
    }
    std::vector<float> nans(kFm16Params, std::nanf(""));
    auto bad_values = wire::SplitState(own, token, 199, absl::MakeConstSpan(nans), 4096);
    if (bad_values.ok()) Send(*bad_values, -1);
    owned_.push_back({own, token});
  }

  // Many uploads at once on its own job (beyond its reservation), then predictions.
  void Flood(int round) {
    if (owned_.empty()) return;
    const std::string own = owned_.back().first, token = owned_.back().second;
    std::vector<float> values(kFm16Params, 0.5f);
    std::vector<std::thread> floods;
    for (int t = 0; t < 6; ++t) {
      floods.emplace_back([&, t] {
        for (int i = 0; i < 4; ++i) {
          auto chunks = wire::SplitState(own, token, 1000 * (t + 1) + 20 * i + round,
                                         absl::MakeConstSpan(values), 2048);
          if (chunks.ok()) Send(*chunks, -1);
          grpc::ClientContext ctx;
          Prepare(&ctx);
          v1::PredictRequest req;
          req.set_job_id(own);
          req.set_job_token(token);
          req.set_step(1000 * (t + 1) + 20 * i + round);
          auto reader = stub_->Predict(&ctx, req);
          v1::PredictionChunk chunk;
          while (reader->Read(&chunk)) {
          }
          Count(reader->Finish());
        }
      });
    }
    for (std::thread& t : floods) t.join();
  }

  // Streams cut off half-way: an upload cancelled after 3 of its chunks, a prediction cancelled
  // as soon as it started, a registration whose deadline is already past.
  void Disconnects(int round) {
    if (owned_.empty()) return;
    const std::string own = owned_.back().first, token = owned_.back().second;
    std::vector<float> values(kFm16Params, 0.25f);
    auto chunks = wire::SplitState(own, token, 50000 + round, absl::MakeConstSpan(values), 1024);
    if (chunks.ok()) Send(*chunks, 3, /*cancel=*/true);
    {
      grpc::ClientContext ctx;
      Prepare(&ctx);
      v1::PredictRequest req;
      req.set_job_id(own);
      req.set_job_token(token);
      req.set_step(50000 + round);
      auto reader = stub_->Predict(&ctx, req);
      ctx.TryCancel();
      v1::PredictionChunk chunk;
      while (reader->Read(&chunk)) {
      }
      Count(reader->Finish());
    }
    {
      grpc::ClientContext ctx;
      ++calls_;
      ctx.set_deadline(std::chrono::system_clock::now() - std::chrono::seconds(1));
      v1::RegisterJobResponse r;
      Count(stub_->RegisterJob(&ctx, Fm16Request(absl::StrCat("vandal-late-", round)), &r));
    }
  }

  std::string RegisterOwn(const std::string& id) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    v1::RegisterJobResponse r;
    grpc::Status s = stub_->RegisterJob(&ctx, Fm16Request(id), &r);
    Count(s);
    return s.ok() ? r.job_token() : "";
  }

  // Sends `chunks` on one PutState stream (the first `send` of them if >= 0), cancelling the
  // call instead of finishing it when `cancel`.
  void Send(const std::vector<v1::StateChunk>& chunks, int send, bool cancel = false) {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    v1::PutStateResponse r;
    auto writer = stub_->PutState(&ctx, &r);
    for (size_t i = 0; i < chunks.size() && (send < 0 || static_cast<int>(i) < send); ++i) {
      if (!writer->Write(chunks[i])) break;
    }
    if (cancel) {
      ctx.TryCancel();
      (void)writer->Finish();
      return;
    }
    writer->WritesDone();
    Count(writer->Finish());
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Nowcaster::Stub> stub_;
  std::vector<std::pair<std::string, std::string>> owned_;
  std::atomic<int> calls_{0}, ok_calls_{0};
};

TEST(Tenants, SevenJobsFinishCorrectlyBesideOneThatMisbehaves) {
  const std::string ckpt = testing::SharedSyntheticCheckpoint(testing::SyntheticNiNo::kWnn);
  nowcaster::NowcasterOptions o = testing::LoopbackNowcasterOptions({{"nino_mlp", ckpt}});
  o.workers = 2;
  auto server = testing::StartLoopbackNowcaster(o);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = testing::LoopbackAddress((*server)->port());

  auto model = NiNoModel::Load(ckpt);
  ASSERT_TRUE(model.ok()) << model.status();
  auto engine = NowcastEngine::Create(std::make_shared<const NiNoModel>(std::move(*model)),
                                      *MakeParamTable(Fm16Layout()), GraphSpec{});
  ASSERT_TRUE(engine.ok()) << engine.status();
  // The snapshots and the expected predictions, made before anything runs (States() draws from
  // LibTorch's global generator, which the client threads must not share).
  std::map<std::pair<int, int>, torch::Tensor> inputs, want;
  for (int j = 0; j < kGoodJobs; ++j) {
    for (int s = 0; s < kStepsPerJob; ++s) {
      inputs[{j, s}] = States(j, s);
      auto p = (*engine)->Nowcast(inputs[{j, s}], 5);
      ASSERT_TRUE(p.ok()) << p.status();
      want[{j, s}] = *p;
    }
  }

  std::vector<std::string> ids;
  for (int j = 0; j < kGoodJobs; ++j) ids.push_back(absl::StrCat("good-", j));
  std::atomic<int> good_done{0};
  std::atomic<bool> stop{false};
  Vandal vandal(testing::LoopbackChannel((*server)->port()));
  std::thread vandal_thread([&] {
    for (int round = 0; round < 40 && !stop.load(); ++round) vandal.Round(round, ids);
  });

  std::mutex mu;
  std::vector<std::string> failures;
  std::vector<std::thread> good;
  for (int j = 0; j < kGoodJobs; ++j) {
    good.emplace_back([&, j] {
      client::RemoteNowcasterOptions co;
      co.address = address;
      co.job_id = ids[j];
      co.params = Fm16Layout();
      co.nino_model = "nino_mlp";
      co.period = 20;
      co.max_train_steps = 100;
      co.nowcast_timeout = absl::Seconds(60);
      co.rpc_timeout = absl::Seconds(20);
      co.quiet = true;
      client::RemoteNowcaster remote(co);
      for (int s = 0; s < kStepsPerJob; ++s) {
        const torch::Tensor states = inputs.at({j, s});
        const int64_t nino_step = 19 + 20 * s;
        for (int64_t i = 0; i < 4; ++i) remote.StateRecorded(nino_step - (4 - i) * 4, states[i]);
        remote.SetNinoStep(nino_step);
        absl::StatusOr<torch::Tensor> got = remote.Nowcast(states, 5);
        std::lock_guard<std::mutex> lock(mu);  // also guards `want`
        if (!got.ok()) {
          failures.push_back(absl::StrCat(ids[j], " step ", s, ": ", got.status().ToString()));
        } else if (const double d = (*got - want[{j, s}]).abs().max().item<double>(); d > 1e-6) {
          failures.push_back(absl::StrCat(ids[j], " step ", s, ": off by ", d));
        }
      }
      ++good_done;
    });
  }
  for (std::thread& t : good) t.join();
  stop = true;
  vandal_thread.join();

  EXPECT_EQ(good_done.load(), kGoodJobs);
  EXPECT_TRUE(failures.empty()) << absl::StrJoin(failures, "\n");
  EXPECT_GT(vandal.calls(), 50) << "the misbehaving job was busy meanwhile";
  // The server is still healthy and serves a fresh job.
  EXPECT_EQ(
      *nowcaster::CheckHealth(testing::LoopbackChannel((*server)->port()), "", absl::Seconds(5)),
      nowcaster::ServingStatus::kServing);
  client::RemoteNowcasterOptions co;
  co.address = address;
  co.job_id = "after";
  co.params = Fm16Layout();
  co.nino_model = "nino_mlp";
  co.period = 20;
  co.max_train_steps = 100;
  co.quiet = true;
  client::RemoteNowcaster after(co);
  const torch::Tensor states = inputs.at({0, 0});
  for (int64_t i = 0; i < 4; ++i) after.StateRecorded(19 - (4 - i) * 4, states[i]);
  after.SetNinoStep(19);
  auto got = after.Nowcast(states, 5);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_LT((*got - want[{0, 0}]).abs().max().item<double>(), 1e-6);
}

}  // namespace
}  // namespace nino
