// What the callback-API Predict relies on in Job: engine-settled and close listeners (called
// once, at once when already settled or closed, removable) and the pinned context (references
// to the held snapshots, not copies). No checkpoint needed.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "nowcaster/job.h"
#include "nowcaster/memory_budget.h"

namespace nino::nowcaster {
namespace {

// A job of P = 4 parameters (16-byte snapshots) without an engine.
std::shared_ptr<Job> SmallJob(MemoryBudget* budget) {
  JobSpec spec;
  spec.job_id = "small";
  spec.num_params = 4;
  spec.ctx = 5;
  spec.period = 1000;
  const int64_t reservation = (spec.ctx + 1) * spec.state_bytes();
  EXPECT_TRUE(budget->Reserve(reservation, "small").ok());
  return std::make_shared<Job>(spec, "secret", budget, reservation);
}

TEST(JobListeners, EngineListenersRunOnceWhenTheEngineSettles) {
  MemoryBudget budget(1000);
  auto job = SmallJob(&budget);
  std::vector<absl::StatusCode> seen;
  job->WhenEngineSettled([&](const absl::Status& s) { seen.push_back(s.code()); });
  job->WhenEngineSettled([&](const absl::Status& s) { seen.push_back(s.code()); });
  EXPECT_TRUE(seen.empty()) << "called before the engine settled";
  job->SetEngine(absl::InvalidArgumentError("no NiNo graph for this layout"));
  EXPECT_EQ(seen, (std::vector<absl::StatusCode>{absl::StatusCode::kInvalidArgument,
                                                 absl::StatusCode::kInvalidArgument}));
  job->SetEngine(absl::InternalError("a second result"));  // settled: nobody called again
  EXPECT_EQ(seen.size(), 2u);
  // Settled already: called at once, on this thread.
  job->WhenEngineSettled([&](const absl::Status& s) { seen.push_back(s.code()); });
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[2], absl::StatusCode::kInvalidArgument);
}

TEST(JobListeners, CloseListenersRunOnceUnlessRemoved) {
  MemoryBudget budget(1000);
  auto job = SmallJob(&budget);
  std::atomic<int> a{0}, b{0}, late{0};
  const Job::ListenerId id_a = job->AddCloseListener([&] { ++a; });
  const Job::ListenerId id_b = job->AddCloseListener([&] { ++b; });
  EXPECT_NE(id_a, 0u);
  EXPECT_NE(id_a, id_b);
  job->RemoveCloseListener(id_b);
  EXPECT_FALSE(job->closed());
  EXPECT_EQ(a.load(), 0);
  job->Close();
  EXPECT_TRUE(job->closed());
  EXPECT_EQ(a.load(), 1);
  EXPECT_EQ(b.load(), 0);
  job->Close();  // idempotent: nobody called again
  EXPECT_EQ(a.load(), 1);
  // Closed already: called at once, id 0 (removing it is a no-op).
  EXPECT_EQ(job->AddCloseListener([&] { ++late; }), 0u);
  EXPECT_EQ(late.load(), 1);
  job->RemoveCloseListener(0);
  job->RemoveCloseListener(id_a);  // already called: no-op
}

TEST(JobListeners, PinnedContextRefersToTheHeldSnapshots) {
  MemoryBudget budget(1000);
  auto job = SmallJob(&budget);
  for (int i = 0; i < 5; ++i) {
    const int64_t step = 199 + 200 * i;
    auto buffer = job->BeginUpload(step);
    ASSERT_TRUE(buffer.ok()) << buffer.status();
    buffer->fill_(static_cast<float>(i));
    ASSERT_TRUE(job->CommitUpload(step, *buffer, 16).ok());
  }
  EXPECT_EQ(job->PinContext(1999).status().code(), absl::StatusCode::kFailedPrecondition);
  auto pinned = job->PinContext(999);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  ASSERT_EQ(pinned->states.size(), 5u);
  auto copied = job->TakeContext(999);
  ASSERT_TRUE(copied.ok());
  EXPECT_EQ(pinned->last_seq, copied->last_seq);
  EXPECT_TRUE(torch::equal(pinned->Stack(), copied->states));
  const void* oldest = pinned->states[0].data_ptr();
  // The prediction drops the snapshots; the pinned ones stay alive and unchanged, and are not
  // handed out as buffers of new uploads while pinned.
  job->FinishPrediction(pinned->last_seq, 16);
  EXPECT_EQ(job->Status().states_held(), 0);
  std::vector<torch::Tensor> uploads;
  for (int i = 0; i < 5; ++i) {
    auto buffer = job->BeginUpload(1199 + 200 * i);
    ASSERT_TRUE(buffer.ok()) << buffer.status();
    EXPECT_NE(buffer->data_ptr(), oldest);
    buffer->fill_(-1.0f);
    ASSERT_TRUE(job->CommitUpload(1199 + 200 * i, *buffer, 16).ok());
  }
  EXPECT_TRUE(torch::equal(pinned->Stack(), copied->states));
}

}  // namespace
}  // namespace nino::nowcaster
