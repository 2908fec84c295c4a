// JobSpec validation, the snapshot ring and memory accounting of Job, and tokens: no checkpoint
// needed. (The status conversion is tested in grpc_status_test.cc.)
#include "nowcaster/job.h"

#include <gtest/gtest.h>

#include <set>

#include "nowcaster/job_registry.h"
#include "nowcaster/job_spec.h"
#include "nowcaster/memory_budget.h"
#include "nowcaster/token.h"
#include "tests/testing/test_jobs.h"

namespace nino::nowcaster {
namespace {

v1::RegisterJobRequest Fm16Request() {
  return testing::RegisterRequest("fm16-a", testing::Fm16Layout(), "nino_no_posw", 1000, 10000);
}

TEST(JobSpec, ValidFm16) {
  auto spec = ValidateJobRequest(Fm16Request(), "nino_no_posw", NiNoConfig{});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->num_params, 14378);
  EXPECT_EQ(spec->state_bytes(), 4 * 14378);
  EXPECT_EQ(spec->k_schedule, (std::vector<int>{40, 33, 26, 21, 16, 11, 8, 5, 3, 1}));
  EXPECT_EQ(spec->params[2].offset, 160);
  EXPECT_EQ(spec->k_decay, 2.0);
}

TEST(JobSpec, BadFieldsAreNamed) {
  struct Case {
    std::function<void(v1::RegisterJobRequest&)> set;
    const char* needle;
  };
  const Case cases[] = {
      {[](auto& r) { r.set_job_id(""); }, "job_id"},
      {[](auto& r) { r.set_job_id("a b"); }, "job_id"},
      {[](auto& r) { r.clear_params(); }, "params"},
      {[](auto& r) { r.mutable_params(2)->set_shape(1, 0); }, "params[2].shape[1]"},
      {[](auto& r) { r.mutable_params(3)->set_name("fc.0.bias"); }, "params[3].name"},
      {[](auto& r) { r.mutable_params(1)->clear_shape(); }, "params[1].shape"},
      {[](auto& r) { r.mutable_params(0)->set_dtype(static_cast<v1::DType>(9)); },
       "params[0].dtype"},
      {[](auto& r) { r.mutable_graph()->set_kind("rnn"); }, "graph"},
      {[](auto& r) { r.mutable_graph()->set_kind("gpt2"); }, "num_heads"},
      {[](auto& r) { r.set_ctx(4); }, "ctx"},
      {[](auto& r) { r.set_period(999); }, "period"},
      {[](auto& r) { r.set_period(0); }, "period"},
      {[](auto& r) { r.set_max_train_steps(0); }, "max_train_steps"},
      {[](auto& r) { r.set_k_decay(-1); }, "k_decay"},
      {[](auto& r) { r.mutable_tuning()->set_edge_sample_ratio(2); }, "tuning.edge_sample_ratio"},
  };
  for (const Case& c : cases) {
    v1::RegisterJobRequest r = Fm16Request();
    c.set(r);
    auto spec = ValidateJobRequest(r, "nino_no_posw", NiNoConfig{});
    ASSERT_FALSE(spec.ok()) << c.needle;
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << spec.status();
    EXPECT_NE(spec.status().message().find(c.needle), absl::string_view::npos) << spec.status();
  }
}

TEST(MemoryBudget, ReserveAndRelease) {
  MemoryBudget b(100);
  EXPECT_TRUE(b.Reserve(60, "a").ok());
  absl::Status s = b.Reserve(41, "job b");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("job b needs 41 bytes"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("40 of 100 bytes are available"), absl::string_view::npos) << s;
  EXPECT_EQ(b.reserved_bytes(), 60);
  EXPECT_TRUE(b.Reserve(40, "c").ok());
  b.Release(60);
  EXPECT_EQ(b.reserved_bytes(), 40);
}

// A job of P = 4 parameters (16-byte snapshots) without an engine: the ring alone.
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

torch::Tensor State(float v) { return torch::full({4}, v); }

TEST(Job, RingKeepsTheNewestCtxSnapshots) {
  MemoryBudget budget(1000);
  auto job = SmallJob(&budget);
  for (int i = 0; i < 7; ++i) {
    const int64_t step = 199 + 200 * i;
    auto buffer = job->BeginUpload(step);
    ASSERT_TRUE(buffer.ok()) << buffer.status();
    buffer->fill_(static_cast<float>(i));
    auto held = job->CommitUpload(step, *buffer, 16);
    ASSERT_TRUE(held.ok()) << held.status();
    EXPECT_EQ(*held, std::min(i + 1, 5));
  }
  v1::JobStatus st = job->Status();
  EXPECT_EQ(st.states_held(), 5);
  EXPECT_EQ(st.last_state_step(), 1399);
  EXPECT_EQ(st.bytes_in(), 7 * 16);
  EXPECT_EQ(st.memory_bytes(), 5 * 16);
  // Out of order: rejected, nothing changes.
  EXPECT_EQ(job->BeginUpload(1399).status().code(), absl::StatusCode::kFailedPrecondition);
  // The context of NiNo step 1399: snapshots 599..1399 (values 2..6), oldest first.
  auto ctx = job->TakeContext(1399);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  EXPECT_EQ(ctx->states.sizes(), (std::vector<int64_t>{5, 4}));
  EXPECT_EQ(ctx->states[0][0].item<float>(), 2.0f);
  EXPECT_EQ(ctx->states[4][0].item<float>(), 6.0f);
  // Not the context of a NiNo step a period later, nor of one before the newest snapshot.
  EXPECT_EQ(job->TakeContext(2399).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(job->TakeContext(1398).status().code(), absl::StatusCode::kFailedPrecondition);
  // A snapshot committed after TakeContext survives FinishPrediction.
  ASSERT_TRUE(job->BeginUpload(1599).ok());
  ASSERT_TRUE(job->CommitUpload(1599, State(7), 16).ok());  // a buffer of its own: fine too
  job->FinishPrediction(ctx->last_seq, 16);
  st = job->Status();
  EXPECT_EQ(st.states_held(), 1);
  EXPECT_EQ(st.predictions(), 1);
  EXPECT_EQ(st.bytes_out(), 16);
}

TEST(Job, UploadsStayWithinTheReservation) {
  MemoryBudget budget(1000);
  auto job = SmallJob(&budget);
  EXPECT_EQ(budget.reserved_bytes(), 96);
  for (int i = 0; i < 5; ++i) {
    auto buffer = job->BeginUpload(i);
    ASSERT_TRUE(buffer.ok());
    ASSERT_TRUE(job->CommitUpload(i, *buffer, 16).ok());
  }
  auto sixth = job->BeginUpload(10);  // the 6th snapshot: in flight
  ASSERT_TRUE(sixth.ok());
  EXPECT_EQ(job->Status().memory_bytes(), 96);
  absl::StatusOr<torch::Tensor> second = job->BeginUpload(11);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted) << second.status();
  job->AbortUpload(std::move(*sixth));
  // The aborted upload's buffer is kept for the next one: still within the reservation.
  EXPECT_EQ(job->Status().memory_bytes(), 80);
  EXPECT_EQ(job->Status().cached_bytes(), 16);
  EXPECT_EQ(job->Status().states_held(), 5);
  // Closing frees the snapshots and the reservation; a commit after it is refused.
  auto twelfth = job->BeginUpload(12);
  ASSERT_TRUE(twelfth.ok());
  job->Close();
  EXPECT_EQ(budget.reserved_bytes(), 0);
  EXPECT_EQ(job->CommitUpload(12, *twelfth, 16).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(job->Status().states_held(), 0);
}

TEST(Job, SnapshotBuffersAreRecycledNotReallocated) {
  MemoryBudget budget(1000);
  auto job = SmallJob(&budget);
  std::set<const void*> buffers;
  for (int i = 0; i < 20; ++i) {
    auto buffer = job->BeginUpload(200 * i);
    ASSERT_TRUE(buffer.ok()) << buffer.status();
    buffers.insert(buffer->data_ptr());
    buffer->fill_(static_cast<float>(i));
    ASSERT_TRUE(job->CommitUpload(200 * i, *buffer, 16).ok());
  }
  // ctx = 5 held plus one being filled: six buffers serve any number of uploads.
  EXPECT_EQ(buffers.size(), 6u);
  // Recycling never hands out a buffer that is still held: the ring holds 15..19.
  auto ctx = job->TakeContext(3800);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(ctx->states[i][0].item<float>(), 15.0f + i);
  // A buffer someone else still refers to is not reused.
  auto next = job->BeginUpload(4000);
  ASSERT_TRUE(next.ok());
  torch::Tensor alias = *next;
  ASSERT_TRUE(job->CommitUpload(4000, *next, 16).ok());
  job->FinishPrediction(~uint64_t{0}, 0);  // drops all, alias keeps the newest alive
  auto after = job->BeginUpload(4200);
  ASSERT_TRUE(after.ok());
  EXPECT_NE(after->data_ptr(), alias.data_ptr());
}

TEST(Job, EngineArrivesLaterOrFails) {
  MemoryBudget budget(1000);
  auto job = SmallJob(&budget);
  EXPECT_EQ(job->EngineStatus().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(job->WaitForEngine(absl::Now() + absl::Milliseconds(10)).code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(job->Status().graph_state(), "building");
  // Snapshots are accepted while the graph is built.
  EXPECT_TRUE(job->BeginUpload(0).ok());
  EXPECT_EQ(job->Nowcast(torch::zeros({5, 4}), 1).status().code(),
            absl::StatusCode::kFailedPrecondition);
  job->SetEngine(absl::InvalidArgumentError("no NiNo graph for this layout"));
  EXPECT_EQ(job->WaitForEngine(absl::InfiniteFuture()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(job->Status().graph_state(), "failed: no NiNo graph for this layout");
  job->SetEngine(absl::InternalError("a second result"));  // settled: ignored
  EXPECT_EQ(job->EngineStatus().code(), absl::StatusCode::kInvalidArgument);
  // A job whose graph failed takes no more snapshots.
  EXPECT_EQ(job->BeginUpload(200).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(Job, EngineBytesAreReturnedWhenTheLastHolderLetsGo) {
  MemoryBudget budget(1000);
  JobSpec spec;
  spec.job_id = "engine";
  spec.num_params = 4;
  spec.ctx = 5;
  spec.period = 1000;
  ASSERT_TRUE(budget.Reserve(96 + 500, "engine").ok());
  auto job = std::make_shared<Job>(spec, "secret", &budget, 96, 500);
  EXPECT_EQ(job->Status().engine_bytes(), 500);
  EXPECT_EQ(job->Status().reserved_bytes(), 596);
  std::shared_ptr<Job> running_nowcast = job;  // e.g. a Predict still on a worker
  job->Close();
  job.reset();
  EXPECT_EQ(budget.reserved_bytes(), 500) << "the snapshots are freed, the engine still in use";
  running_nowcast.reset();
  EXPECT_EQ(budget.reserved_bytes(), 0);
}

TEST(JobRegistry, TokensAndIds) {
  MemoryBudget budget(1000);
  JobRegistry registry;
  ASSERT_TRUE(registry.Add(SmallJob(&budget)).ok());
  EXPECT_EQ(registry.Add(SmallJob(&budget)).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(budget.reserved_bytes(), 96);  // the rejected job returned its reservation
  EXPECT_TRUE(registry.Find("small", "secret").ok());
  EXPECT_EQ(registry.Find("small", "secreT").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(registry.Find("other", "secret").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.Remove("small", "x").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(registry.Remove("small", "secret").ok());
  EXPECT_EQ(registry.size(), 0u);
  EXPECT_EQ(budget.reserved_bytes(), 0);
}

TEST(Token, RandomHex) {
  auto a = RandomHexToken(), b = RandomHexToken();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 32u);
  EXPECT_EQ(a->find_first_not_of("0123456789abcdef"), std::string::npos) << *a;
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(TokensEqual(*a, *a));
  EXPECT_FALSE(TokensEqual(*a, *b));
  EXPECT_FALSE(TokensEqual("ab", "abc"));
}

}  // namespace
}  // namespace nino::nowcaster
