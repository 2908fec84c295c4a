// NowcastOptimizer and the data-parallel transaction with fake nowcasters and in-memory
// collectives (two ranks on two threads): when NiNo steps happen, that predictions are applied on
// every rank or on none, and that every kind of failure becomes an ordinary optimizer step.
#include "client/nino_client.h"

#include <gtest/gtest.h>

#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace nino::client {
namespace {

// Predicts newest state + 1 (or fails in a chosen way), and counts calls.
class FakeNowcaster : public Nowcaster {
 public:
  enum class Mode { kGood, kError, kThrow, kNaN, kWrongSize };
  explicit FakeNowcaster(Mode mode = Mode::kGood) : mode_(mode) {}
  absl::StatusOr<torch::Tensor> Nowcast(const torch::Tensor& states, int k) override {
    ++calls;
    last_k = k;
    torch::Tensor p = states[states.size(0) - 1] + 1.0;
    switch (mode_) {
      case Mode::kGood:
        return p;
      case Mode::kError:
        return absl::UnavailableError("nowcaster down");
      case Mode::kThrow:
        throw std::runtime_error("boom");
      case Mode::kNaN:
        p[0] = NAN;
        return p;
      case Mode::kWrongSize:
        return torch::zeros({p.numel() + 1});
    }
    return p;
  }
  int calls = 0;
  int last_k = 0;

 private:
  Mode mode_;
};

// Collectives of `n` ranks in one process (each rank on its own thread).
class LocalGroup {
 public:
  explicit LocalGroup(int n) : n_(n) {}
  class Member : public Collectives {
   public:
    Member(LocalGroup* g, int rank) : g_(g), rank_(rank) {}
    int rank() const override { return rank_; }
    int world_size() const override { return g_->n_; }
    absl::StatusOr<double> AllreduceMin(double v) override {
      return g_->Exchange(rank_, torch::full({1}, v, torch::kDouble), -1)[0].item<double>();
    }
    absl::Status Broadcast(torch::Tensor& t, int root) override {
      t.copy_(g_->Exchange(rank_, t, root));
      if (g_->broadcast_fault_ && rank_ == g_->fault_rank_) return g_->broadcast_fault_(t);
      return absl::OkStatus();
    }

   private:
    LocalGroup* g_;
    int rank_;
  };
  std::unique_ptr<Collectives> member(int rank) { return std::make_unique<Member>(this, rank); }
  // Every broadcast on `rank` ends with `fault` (which may damage the received tensor, or fail).
  void InjectBroadcastFault(int rank, std::function<absl::Status(torch::Tensor&)> fault) {
    fault_rank_ = rank;
    broadcast_fault_ = std::move(fault);
  }

 private:
  // root < 0: elementwise min over ranks; else root's tensor.
  torch::Tensor Exchange(int rank, const torch::Tensor& t, int root) {
    absl::MutexLock lock(&mu_);
    const int64_t gen = generation_;
    if (arrived_ == 0) result_ = torch::Tensor();
    if (root < 0) {
      result_ = result_.defined() ? torch::minimum(result_, t) : t.clone();
    } else if (rank == root) {
      result_ = t.clone();
    }
    if (++arrived_ == n_) {
      arrived_ = 0;
      done_ = result_;
      ++generation_;
      cv_.SignalAll();
    } else {
      while (generation_ == gen) cv_.Wait(&mu_);
    }
    return done_.clone();
  }
  const int n_;
  absl::Mutex mu_;
  absl::CondVar cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
  torch::Tensor result_, done_;
  int fault_rank_ = -1;
  std::function<absl::Status(torch::Tensor&)> broadcast_fault_;
};

struct Model {
  torch::nn::Linear fc{torch::nn::LinearOptions(3, 2)};
  torch::optim::SGD sgd{fc->parameters(), torch::optim::SGDOptions(0.1)};
  Model() {
    torch::NoGradGuard g;
    fc->weight.fill_(0.5);
    fc->bias.fill_(-0.25);
  }
  void Backward() {
    sgd.zero_grad();
    fc->forward(torch::ones({4, 3})).sum().backward();
  }
};

NowcastOptimizerOptions Schedule() {
  NowcastOptimizerOptions o;
  o.period = 10;
  o.ctx = 5;
  o.max_train_steps = 100;
  o.quiet = true;
  return o;
}

// Runs `steps` iterations; returns the outcomes.
std::vector<NinoStepOutcome> RunSteps(NowcastOptimizer& opt, Model& m, int steps) {
  std::vector<NinoStepOutcome> out;
  for (int i = 0; i < steps; ++i) {
    if (opt.need_grads()) m.Backward();
    out.push_back(opt.step());
  }
  return out;
}

TEST(NowcastOptimizer, NiNoStepsAtThePeriodApplyThePrediction) {
  Model m;
  auto fake = std::make_shared<FakeNowcaster>();
  auto opt =
      NowcastOptimizer::CreateWithNowcaster(&m.sgd, NamedParameters(*m.fc), Schedule(), fake);
  ASSERT_TRUE(opt.ok()) << opt.status();
  auto outs = RunSteps(**opt, m, 9);
  for (const auto& o : outs) EXPECT_FALSE(o.nino_step);
  EXPECT_EQ(outs[1].state_recorded, true);  // every period/ctx = 2 calls, before the update
  EXPECT_FALSE((*opt)->need_grads());       // call 9 is the 5th record: a NiNo step
  const torch::Tensor before = (*opt)->FlatParams();
  NinoStepOutcome o = (*opt)->step();
  EXPECT_TRUE(o.nino_step);
  EXPECT_TRUE(o.applied) << o.status;
  EXPECT_EQ(fake->calls, 1);
  EXPECT_TRUE(torch::allclose((*opt)->FlatParams(), before + 1.0));
  EXPECT_EQ((*opt)->stats().applied, 1);
  EXPECT_TRUE((*opt)->history().empty());
}

TEST(NowcastOptimizer, EveryKindOfFailureIsAnOrdinaryStep) {
  for (auto mode : {FakeNowcaster::Mode::kError, FakeNowcaster::Mode::kThrow,
                    FakeNowcaster::Mode::kNaN, FakeNowcaster::Mode::kWrongSize}) {
    Model m, reference;
    auto opt = NowcastOptimizer::CreateWithNowcaster(&m.sgd, NamedParameters(*m.fc), Schedule(),
                                                     std::make_shared<FakeNowcaster>(mode));
    ASSERT_TRUE(opt.ok());
    auto outs = RunSteps(**opt, m, 10);
    ASSERT_TRUE(outs[9].nino_step);
    EXPECT_FALSE(outs[9].applied);
    EXPECT_FALSE(outs[9].status.ok());
    EXPECT_EQ((*opt)->stats().fallbacks, 1);
    // The NiNo step became an SGD step (with the gradients left from call 8, as the loop
    // skipped backward for it): the same as a plain SGD run doing the same.
    for (int i = 0; i < 10; ++i) {
      if (i != 9) reference.Backward();
      reference.sgd.step();
    }
    EXPECT_TRUE(torch::equal(m.fc->weight, reference.fc->weight)) << static_cast<int>(mode);
  }
}

TEST(NowcastOptimizer, RestoreContinuesExactly) {
  Model a, b;
  auto fa = std::make_shared<FakeNowcaster>();
  auto oa = NowcastOptimizer::CreateWithNowcaster(&a.sgd, NamedParameters(*a.fc), Schedule(), fa);
  ASSERT_TRUE(oa.ok());
  RunSteps(**oa, a, 25);
  // b: 13 steps, then a "restart" from its state into a new optimizer, then 12 more.
  auto ob = NowcastOptimizer::CreateWithNowcaster(&b.sgd, NamedParameters(*b.fc), Schedule(),
                                                  std::make_shared<FakeNowcaster>());
  ASSERT_TRUE(ob.ok());
  RunSteps(**ob, b, 13);
  const int64_t idx = (*ob)->step_idx();
  std::vector<torch::Tensor> hist = (*ob)->history();
  ob->reset();
  auto oc = NowcastOptimizer::CreateWithNowcaster(&b.sgd, NamedParameters(*b.fc), Schedule(),
                                                  std::make_shared<FakeNowcaster>());
  ASSERT_TRUE(oc.ok());
  ASSERT_TRUE((*oc)->Restore(idx, hist).ok());
  RunSteps(**oc, b, 12);
  EXPECT_TRUE(torch::equal((*oa)->FlatParams(), (*oc)->FlatParams()));
}

TEST(NowcastOptimizer, BadArgumentsAreRefusedByName) {
  Model m;
  auto fake = std::make_shared<FakeNowcaster>();
  NowcastOptimizerOptions o = Schedule();
  o.period = 12;
  o.ctx = 5;
  auto r = NowcastOptimizer::CreateWithNowcaster(&m.sgd, NamedParameters(*m.fc), o, fake);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("period"), std::string::npos);
  r = NowcastOptimizer::CreateWithNowcaster(nullptr, NamedParameters(*m.fc), Schedule(), fake);
  EXPECT_NE(r.status().message().find("base optimizer"), std::string::npos);
  NamedParams twice = NamedParameters(*m.fc);
  twice.push_back(twice[0]);
  r = NowcastOptimizer::CreateWithNowcaster(&m.sgd, twice, Schedule(), fake);
  EXPECT_NE(r.status().message().find("twice"), std::string::npos);
  r = NowcastOptimizer::CreateWithNowcaster(&m.sgd, NamedParameters(*m.fc), Schedule(), nullptr);
  EXPECT_NE(r.status().message().find("needs a nowcaster"), std::string::npos);
  o = Schedule();
  r = NowcastOptimizer::Create(&m.sgd, NamedParameters(*m.fc), o);  // no address
  EXPECT_NE(r.status().message().find("nowcaster (host:port)"), std::string::npos);
  o.nowcaster = "127.0.0.1:1";
  o.tuning.edge_sample_ratio = -1;
  r = NowcastOptimizer::Create(&m.sgd, NamedParameters(*m.fc), o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

// Two ranks: rank 0's verdict decides for both; both end identical.
void RunTwoRanks(FakeNowcaster::Mode mode, bool expect_applied) {
  LocalGroup group(2);
  Model models[2];
  torch::Tensor finals[2];
  bool applied[2] = {false, false};
  std::thread threads[2];
  for (int r = 0; r < 2; ++r) {
    threads[r] = std::thread([&, r] {
      auto inner = r == 0 ? std::make_shared<FakeNowcaster>(mode) : nullptr;
      auto opt = NowcastOptimizer::CreateWithNowcaster(
          &models[r].sgd, NamedParameters(*models[r].fc), Schedule(), inner, group.member(r));
      ASSERT_TRUE(opt.ok()) << opt.status();
      auto outs = RunSteps(**opt, models[r], 10);
      applied[r] = outs[9].applied;
      finals[r] = (*opt)->FlatParams();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(applied[0], expect_applied);
  EXPECT_EQ(applied[1], expect_applied);
  EXPECT_TRUE(torch::equal(finals[0], finals[1]));
}

TEST(DataParallelNowcaster, APredictionIsAppliedOnEveryRank) {
  RunTwoRanks(FakeNowcaster::Mode::kGood, true);
}
TEST(DataParallelNowcaster, ARejectionOnRankZeroReachesEveryRank) {
  RunTwoRanks(FakeNowcaster::Mode::kNaN, false);
  RunTwoRanks(FakeNowcaster::Mode::kThrow, false);
  RunTwoRanks(FakeNowcaster::Mode::kError, false);
}

// Failure test 8 of issue 13: rank 0's prediction is good, but on rank 1 only it fails its check
// (the broadcast delivered a NaN, or the broadcast failed there). No rank applies it: both take
// the ordinary SGD step and end identical, equal to a plain SGD run.
void ExpectNoRankAppliesWhenRankOneFails(std::function<absl::Status(torch::Tensor&)> fault,
                                         const std::string& what) {
  SCOPED_TRACE(what);
  LocalGroup group(2);
  group.InjectBroadcastFault(1, std::move(fault));
  Model models[2];
  NinoStepOutcome last[2];
  std::thread threads[2];
  for (int r = 0; r < 2; ++r) {
    threads[r] = std::thread([&, r] {
      auto inner = r == 0 ? std::make_shared<FakeNowcaster>() : nullptr;
      auto opt = NowcastOptimizer::CreateWithNowcaster(
          &models[r].sgd, NamedParameters(*models[r].fc), Schedule(), inner, group.member(r));
      ASSERT_TRUE(opt.ok()) << opt.status();
      last[r] = RunSteps(**opt, models[r], 10)[9];
    });
  }
  for (auto& t : threads) t.join();
  Model reference;  // the NiNo step as an ordinary step (with call 8's gradients, as above)
  for (int i = 0; i < 10; ++i) {
    if (i != 9) reference.Backward();
    reference.sgd.step();
  }
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(last[r].nino_step) << r;
    EXPECT_FALSE(last[r].applied) << r;
    EXPECT_FALSE(last[r].status.ok()) << r;
    EXPECT_TRUE(torch::equal(models[r].fc->weight, reference.fc->weight)) << r;
    EXPECT_TRUE(torch::equal(models[r].fc->bias, reference.fc->bias)) << r;
  }
  EXPECT_NE(last[1].status.message().find("rank 1"), absl::string_view::npos) << last[1].status;
}

TEST(DataParallelNowcaster, AFailedCheckOnOneRankOnlyMeansNoRankApplies) {
  ExpectNoRankAppliesWhenRankOneFails(
      [](torch::Tensor& t) {
        t[3] = NAN;
        return absl::OkStatus();
      },
      "a NaN arrives on rank 1");
  ExpectNoRankAppliesWhenRankOneFails(
      [](torch::Tensor&) { return absl::UnavailableError("connection reset by peer"); },
      "the broadcast fails on rank 1");
}

// Step search: the prediction is before + 1; a probe loss with its minimum at before + 0.5
// picks the scale 0.5, a loss that only grows along the step picks 0 (parameters unchanged).
TEST(NowcastOptimizer, StepSearchPicksTheScaleWithTheLowestProbeLoss) {
  for (double want : {0.5, 0.0, 1.0}) {
    Model m;
    NowcastOptimizerOptions o = Schedule();
    o.step_search = {1, 0.5, 0.25, 0};
    torch::Tensor target;  // set just before the NiNo step
    o.probe_loss = [&] {
      return (torch::cat({m.fc->weight.flatten(), m.fc->bias}) - target)
          .pow(2)
          .sum()
          .item<double>();
    };
    auto opt = NowcastOptimizer::CreateWithNowcaster(&m.sgd, NamedParameters(*m.fc), o,
                                                     std::make_shared<FakeNowcaster>());
    ASSERT_TRUE(opt.ok()) << opt.status();
    RunSteps(**opt, m, 9);
    const torch::Tensor before = (*opt)->FlatParams();
    target = before + want;
    NinoStepOutcome out = (*opt)->step();
    ASSERT_TRUE(out.applied) << out.status;
    EXPECT_TRUE(torch::allclose((*opt)->FlatParams(), before + want)) << want;
    EXPECT_EQ((*opt)->stats().last_step_scale, want);
  }
}

TEST(NowcastOptimizer, StepSearchOptionsAreChecked) {
  Model m;
  auto fake = std::make_shared<FakeNowcaster>();
  NowcastOptimizerOptions o = Schedule();
  o.step_search = {1, 0.5};
  auto r = NowcastOptimizer::CreateWithNowcaster(&m.sgd, NamedParameters(*m.fc), o, fake);
  EXPECT_NE(r.status().message().find("probe_loss"), std::string::npos) << r.status();
  o.probe_loss = [] { return 0.0; };
  o.step_search = {1, -0.5};
  r = NowcastOptimizer::CreateWithNowcaster(&m.sgd, NamedParameters(*m.fc), o, fake);
  EXPECT_NE(r.status().message().find("bad scale"), std::string::npos) << r.status();
}

// Two ranks whose probe losses disagree: rank 0's choice is applied on both.
TEST(DataParallelNowcaster, StepSearchFollowsRankZero) {
  LocalGroup group(2);
  Model models[2];
  torch::Tensor finals[2], befores[2];
  std::thread threads[2];
  for (int r = 0; r < 2; ++r) {
    threads[r] = std::thread([&, r] {
      NowcastOptimizerOptions o = Schedule();
      o.step_search = {1, 0.25, 0};
      // Rank 0 prefers the smallest non-zero step, rank 1 the full one.
      int calls = 0;
      o.probe_loss = [&calls, r] {
        const double by_rank0[] = {2.0, 1.0, 3.0}, by_rank1[] = {1.0, 2.0, 3.0};
        return (r == 0 ? by_rank0 : by_rank1)[calls++ % 3];
      };
      auto inner = r == 0 ? std::make_shared<FakeNowcaster>() : nullptr;
      auto opt = NowcastOptimizer::CreateWithNowcaster(
          &models[r].sgd, NamedParameters(*models[r].fc), o, inner, group.member(r));
      ASSERT_TRUE(opt.ok()) << opt.status();
      RunSteps(**opt, models[r], 9);
      befores[r] = (*opt)->FlatParams();
      (*opt)->step();
      finals[r] = (*opt)->FlatParams();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(torch::equal(finals[0], finals[1]));
  EXPECT_TRUE(torch::allclose(finals[0], befores[0] + 0.25));
}

TEST(NowcastOptimizer, ResetBaseStateClearsTheOptimizerStateAfterAnAppliedStep) {
  for (bool reset : {false, true}) {
    torch::nn::Linear fc(torch::nn::LinearOptions(3, 2));
    torch::optim::Adam adam(fc->parameters(), torch::optim::AdamOptions(0.01));
    NowcastOptimizerOptions o = Schedule();
    o.reset_base_state = reset;
    auto opt = NowcastOptimizer::CreateWithNowcaster(&adam, NamedParameters(*fc), o,
                                                     std::make_shared<FakeNowcaster>());
    ASSERT_TRUE(opt.ok()) << opt.status();
    for (int i = 0; i < 10; ++i) {
      adam.zero_grad();
      if ((*opt)->need_grads()) fc->forward(torch::ones({4, 3})).sum().backward();
      NinoStepOutcome out = (*opt)->step();
      if (i == 9) {
        ASSERT_TRUE(out.applied);
      }
    }
    EXPECT_EQ(adam.state().empty(), reset) << reset;
  }
}

// reset_momentum zeroes Adam's first moment after an applied step and keeps the second moment
// and the step count; it needs an Adam, AdamW or SGD base and excludes reset_base_state.
TEST(NowcastOptimizer, ResetMomentumZeroesOnlyTheFirstMoment) {
  torch::nn::Linear fc(torch::nn::LinearOptions(3, 2));
  torch::optim::Adam adam(fc->parameters(), torch::optim::AdamOptions(0.01));
  NowcastOptimizerOptions o = Schedule();
  o.reset_momentum = true;
  auto opt = NowcastOptimizer::CreateWithNowcaster(&adam, NamedParameters(*fc), o,
                                                   std::make_shared<FakeNowcaster>());
  ASSERT_TRUE(opt.ok()) << opt.status();
  for (int i = 0; i < 10; ++i) {
    adam.zero_grad();
    if ((*opt)->need_grads()) fc->forward(torch::ones({4, 3})).sum().backward();
    NinoStepOutcome out = (*opt)->step();
    if (i == 9) {
      ASSERT_TRUE(out.applied);
    }
  }
  ASSERT_FALSE(adam.state().empty());
  for (auto& [key, state] : adam.state()) {
    auto& s = static_cast<torch::optim::AdamParamState&>(*state);
    EXPECT_EQ(s.exp_avg().abs().max().item<float>(), 0.0f);
    EXPECT_GT(s.exp_avg_sq().abs().max().item<float>(), 0.0f);
    EXPECT_GT(s.step(), 0);
  }
  o.reset_base_state = true;
  auto both = NowcastOptimizer::CreateWithNowcaster(&adam, NamedParameters(*fc), o,
                                                    std::make_shared<FakeNowcaster>());
  EXPECT_NE(both.status().message().find("exclude"), std::string::npos) << both.status();
  o.reset_base_state = false;
  torch::optim::RMSprop rms(fc->parameters(), torch::optim::RMSpropOptions(0.01));
  auto other = NowcastOptimizer::CreateWithNowcaster(&rms, NamedParameters(*fc), o,
                                                     std::make_shared<FakeNowcaster>());
  EXPECT_NE(other.status().message().find("Adam, AdamW or SGD"), std::string::npos)
      << other.status();
}

}  // namespace
}  // namespace nino::client
