// Tests for trainer/dist: DistEnv parsing, world-size-1 no-ops, and real multi-process runs
// (2 and 3 forked ranks on 127.0.0.1 with Gloo) of every collective, a data-parallel
// equivalence check against single-process training, and the error paths.
//
// Multi-process scenarios fork one child per rank. A child reports through its exit code
// (0 = pass; details go to stderr, i.e. the test log) and never returns into gtest. Children
// arm alarm() and PR_SET_PDEATHSIG; the parent polls them against a deadline, kills the rest
// shortly after the first failure and all of them on timeout, so nothing can hang the test.
#include "trainer/dist/distributed.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/testing/test_util.h"

namespace nino::trainer {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// -----------------------------------------------------------------------------------------------
// Environment variables.

const char* const kVars[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"};

class DistEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : kVars) {
      if (const char* s = std::getenv(v)) saved_[v] = s;
      unsetenv(v);
    }
  }
  void TearDown() override {
    for (const char* v : kVars) {
      unsetenv(v);
      if (auto it = saved_.find(v); it != saved_.end()) setenv(v, it->second.c_str(), 1);
    }
  }
  std::map<std::string, std::string> saved_;
};

TEST_F(DistEnvTest, UnsetMeansSingleProcess) {
  absl::StatusOr<DistEnv> env = DistEnv::FromEnv();
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->rank, 0);
  EXPECT_EQ(env->world_size, 1);
  EXPECT_EQ(env->local_rank, 0);
  EXPECT_EQ(env->master_addr, "127.0.0.1");
  EXPECT_EQ(env->master_port, 29500);
}

TEST_F(DistEnvTest, ReadsTorchrunVariables) {
  setenv("RANK", "5", 1);
  setenv("WORLD_SIZE", "8", 1);
  setenv("LOCAL_RANK", "1", 1);
  setenv("MASTER_ADDR", "node-0.cluster", 1);
  setenv("MASTER_PORT", "12345", 1);
  absl::StatusOr<DistEnv> env = DistEnv::FromEnv();
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->rank, 5);
  EXPECT_EQ(env->world_size, 8);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->master_addr, "node-0.cluster");
  EXPECT_EQ(env->master_port, 12345);
  EXPECT_THAT(env->DebugString(), HasSubstr("node-0.cluster:12345"));
}

TEST_F(DistEnvTest, PartialSettingsKeepDefaults) {
  setenv("WORLD_SIZE", "4", 1);
  absl::StatusOr<DistEnv> env = DistEnv::FromEnv();
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->rank, 0);
  EXPECT_EQ(env->world_size, 4);
  EXPECT_EQ(env->master_port, 29500);
}

struct BadCase {
  std::vector<std::pair<const char*, const char*>> set;
  const char* names;  // substring the message must contain
};

TEST_F(DistEnvTest, RejectsBadValuesNamingTheVariable) {
  const std::vector<BadCase> cases = {
      {{{"RANK", "abc"}}, "variable RANK="},
      {{{"RANK", ""}}, "variable RANK="},
      {{{"RANK", "1x"}}, "variable RANK="},
      {{{"RANK", "99999999999"}}, "variable RANK="},
      {{{"RANK", "-1"}, {"WORLD_SIZE", "2"}}, "variable RANK="},
      {{{"RANK", "2"}, {"WORLD_SIZE", "2"}}, "variable RANK="},
      {{{"RANK", "1"}}, "variable RANK="},  // WORLD_SIZE unset = 1
      {{{"WORLD_SIZE", "0"}}, "variable WORLD_SIZE="},
      {{{"WORLD_SIZE", "two"}}, "variable WORLD_SIZE="},
      {{{"LOCAL_RANK", "1.5"}}, "variable LOCAL_RANK="},
      {{{"LOCAL_RANK", "-3"}}, "variable LOCAL_RANK="},
      {{{"MASTER_PORT", "70000"}}, "variable MASTER_PORT="},
      {{{"MASTER_PORT", "0"}}, "variable MASTER_PORT="},
      {{{"MASTER_PORT", "http"}}, "variable MASTER_PORT="},
      {{{"MASTER_PORT", ""}}, "variable MASTER_PORT="},
      {{{"MASTER_ADDR", ""}}, "MASTER_ADDR"},
  };
  for (const BadCase& c : cases) {
    for (const char* v : kVars) unsetenv(v);
    std::string desc;
    for (auto [k, v] : c.set) {
      setenv(k, v, 1);
      absl::StrAppend(&desc, k, "='", v, "' ");
    }
    absl::StatusOr<DistEnv> env = DistEnv::FromEnv();
    ASSERT_FALSE(env.ok()) << desc;
    EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument) << desc;
    EXPECT_THAT(std::string(env.status().message()), HasSubstr(c.names)) << desc;
  }
}

// -----------------------------------------------------------------------------------------------
// World size 1.

TEST(DistributedWorld1, EveryCallIsANoOp) {
  absl::StatusOr<std::unique_ptr<Distributed>> d = Distributed::Create(DistEnv{}, torch::kCPU);
  ASSERT_TRUE(d.ok()) << d.status();
  Distributed& dist = **d;
  EXPECT_EQ(dist.rank(), 0);
  EXPECT_EQ(dist.world_size(), 1);
  EXPECT_TRUE(dist.is_main());
  EXPECT_STREQ(dist.backend_name(), "none");

  auto a = torch::randn({3, 4}, torch::requires_grad());
  auto b = torch::randn({5}, torch::requires_grad());
  a.mutable_grad() = torch::arange(12, torch::kFloat).view({3, 4});
  const void* grad_ptr = a.grad().data_ptr();
  const auto a_before = a.detach().clone();
  ASSERT_TRUE(dist.AllreduceGradients({a, b}).ok());
  EXPECT_EQ(a.grad().data_ptr(), grad_ptr);
  EXPECT_TRUE(torch::equal(a.grad(), torch::arange(12, torch::kFloat).view({3, 4})));
  EXPECT_FALSE(b.grad().defined()) << "world 1 leaves undefined grads alone";
  EXPECT_TRUE(torch::equal(a, a_before));

  // scale still applies, so results do not depend on the world size.
  ASSERT_TRUE(dist.AllreduceGradients({a, b}, 0.5).ok());
  EXPECT_TRUE(torch::equal(a.grad(), torch::arange(12, torch::kFloat).view({3, 4}) * 0.5));

  ASSERT_TRUE(dist.BroadcastTensors({a, b}).ok());
  EXPECT_TRUE(torch::equal(a, a_before));

  absl::StatusOr<double> s = dist.AllreduceScalar(2.5, Distributed::Op::kSum);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, 2.5);
  absl::StatusOr<std::vector<double>> v =
      dist.AllreduceScalars({1.0, -2.0, 3.0}, Distributed::Op::kMax);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, (std::vector<double>{1.0, -2.0, 3.0}));
  EXPECT_TRUE(dist.Barrier().ok());

  // Argument checks still apply.
  EXPECT_EQ(dist.BroadcastTensors({a}, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dist.AllreduceGradients({a}, 1.0, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dist.AllreduceGradients({torch::Tensor()}).code(), absl::StatusCode::kInvalidArgument);

  // Cheap: no communication, no copies.
  std::vector<torch::Tensor> params;
  for (int i = 0; i < 20; ++i) {
    params.push_back(torch::zeros({8}, torch::requires_grad()));
    params.back().mutable_grad() = torch::ones({8});
  }
  const auto t0 = Clock::now();
  constexpr int kCalls = 2000;
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(dist.AllreduceGradients(params).ok());
    ASSERT_TRUE(dist.AllreduceScalar(1.0, Distributed::Op::kSum).ok());
  }
  const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / kCalls;
  printf("[world1] AllreduceGradients(20 params) + AllreduceScalar: %.2f us per pair\n", us);
  EXPECT_LT(us, 1000.0);
}

TEST(DistributedWorld1, CreateRejectsBadEnv) {
  DistEnv env;
  env.world_size = 0;
  EXPECT_EQ(Distributed::Create(env, torch::kCPU).status().code(),
            absl::StatusCode::kInvalidArgument);
  env.world_size = 2;
  env.rank = 2;
  EXPECT_EQ(Distributed::Create(env, torch::kCPU).status().code(),
            absl::StatusCode::kInvalidArgument);
  env.rank = 0;
  env.master_port = 0;
  EXPECT_EQ(Distributed::Create(env, torch::kCPU).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// -----------------------------------------------------------------------------------------------
// Multi-process harness.

constexpr int kPortInUseExit = 42;
constexpr int kChildAlarmS = 14;         // children kill themselves after this
constexpr double kParentDeadlineS = 16;  // the parent kills children after this
constexpr double kFailGraceS = 1.0;      // after one child failed, the others get this long
constexpr auto kRendezvousTimeout = std::chrono::seconds(8);

// A currently free TCP port on 127.0.0.1 (the test library's; 0 if none could be bound).
using nino::testing::FreePort;

struct ChildOutcome {
  int status = 0;       // waitpid status
  bool killed = false;  // killed by the parent (deadline or another rank failed)
  std::string Describe() const {
    if (killed) return "killed by the parent (deadline or a peer failed first)";
    if (WIFEXITED(status)) return absl::StrCat("exit code ", WEXITSTATUS(status));
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
      return absl::StrCat("hung: killed by its own alarm() after ", kChildAlarmS, " s");
    }
    if (WIFSIGNALED(status)) return absl::StrCat("signal ", WTERMSIG(status));
    return absl::StrCat("status ", status);
  }
  bool ok() const { return !killed && WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  bool port_in_use() const {
    return !killed && WIFEXITED(status) && WEXITSTATUS(status) == kPortInUseExit;
  }
};

// Forks n children running fn(i) and collects their outcomes. Never blocks past the deadline.
std::vector<ChildOutcome> ForkChildren(int n, const std::function<int(int)>& fn) {
  std::vector<pid_t> pids(n, -1);
  std::vector<ChildOutcome> out(n);
  const pid_t parent = getpid();
  fflush(nullptr);
  for (int i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(99);
      alarm(kChildAlarmS);
      torch::set_num_threads(1);  // ranks share 2 cores; also keeps OpenMP out of the way
      int rc = 3;
      try {
        rc = fn(i);
      } catch (const std::exception& e) {
        fprintf(stderr, "[child %d] exception: %s\n", i, e.what());
      } catch (...) {
        fprintf(stderr, "[child %d] unknown exception\n", i);
      }
      fflush(nullptr);
      _exit(rc);
    }
    pids[i] = pid;
    if (pid < 0) {
      ADD_FAILURE() << "fork failed";
      out[i].killed = true;
    }
  }
  const auto start = Clock::now();
  std::optional<Clock::time_point> first_failure;
  int running = 0;
  for (pid_t p : pids) running += p > 0;
  while (running > 0) {
    for (int i = 0; i < n; ++i) {
      if (pids[i] <= 0) continue;
      int st = 0;
      if (waitpid(pids[i], &st, WNOHANG) == pids[i]) {
        out[i].status = st;
        pids[i] = -1;
        --running;
        if (!out[i].ok() && !first_failure) first_failure = Clock::now();
      }
    }
    if (running == 0) break;
    const auto now = Clock::now();
    const bool deadline = std::chrono::duration<double>(now - start).count() > kParentDeadlineS;
    const bool peer_failed =
        first_failure && std::chrono::duration<double>(now - *first_failure).count() > kFailGraceS;
    if (deadline || peer_failed) {
      for (int i = 0; i < n; ++i) {
        if (pids[i] <= 0) continue;
        kill(pids[i], SIGKILL);
        waitpid(pids[i], &out[i].status, 0);
        out[i].killed = true;
        pids[i] = -1;
      }
      if (deadline) ADD_FAILURE() << "children killed after " << kParentDeadlineS << " s";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return out;
}

// Per-rank test body: 0 = pass.
using RankBody = std::function<int(Distributed&)>;

// Runs `body` on `world` forked ranks that rendezvous on a fresh port, retrying with another
// port when rank 0 finds its port taken. Fails the current test when any rank fails.
void RunRanks(int world, const RankBody& body,
              std::chrono::milliseconds timeout = kRendezvousTimeout,
              std::chrono::milliseconds rank0_start_delay = std::chrono::milliseconds(0)) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    const int port = FreePort();
    ASSERT_GT(port, 0);
    std::vector<ChildOutcome> out = ForkChildren(world, [&](int rank) {
      DistEnv env;
      env.rank = rank;
      env.world_size = world;
      env.local_rank = rank;
      env.master_port = port;
      if (rank == 0) std::this_thread::sleep_for(rank0_start_delay);
      absl::StatusOr<std::unique_ptr<Distributed>> d =
          Distributed::Create(env, torch::kCPU, timeout);
      if (!d.ok()) {
        fprintf(stderr, "[rank %d] Create: %s\n", rank, d.status().ToString().c_str());
        return rank == 0 && d.status().code() == absl::StatusCode::kUnavailable ? kPortInUseExit
                                                                                : 2;
      }
      return body(**d);
    });
    if (out[0].port_in_use()) {
      fprintf(stderr, "port %d in use, retrying\n", port);
      continue;
    }
    for (int r = 0; r < world; ++r) {
      EXPECT_TRUE(out[r].ok()) << "rank " << r << " of " << world << ": " << out[r].Describe()
                               << " (details in the rank's stderr above)";
    }
    return;
  }
  ADD_FAILURE() << "no free port after 5 attempts";
}

// Child-side check: prints and fails the rank.
#define RANK_CHECK(cond, ...)                                                                 \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      fprintf(stderr, "[rank %d] line %d: CHECK(%s) failed: %s\n", d.rank(), __LINE__, #cond, \
              absl::StrCat(__VA_ARGS__).c_str());                                             \
      return 1;                                                                               \
    }                                                                                         \
  } while (0)

#define RANK_OK(expr)                                \
  do {                                               \
    absl::Status _s = (expr);                        \
    RANK_CHECK(_s.ok(), #expr, ": ", _s.ToString()); \
  } while (0)

std::string Str(const torch::Tensor& t) {
  std::ostringstream os;
  os << t;
  return os.str();
}

// -----------------------------------------------------------------------------------------------
// Scalars and barrier.

int ScalarsBody(Distributed& d) {
  const int r = d.rank(), w = d.world_size();
  RANK_CHECK(d.is_main() == (r == 0), "is_main");
  RANK_CHECK(std::string(d.backend_name()) == "gloo", d.backend_name());
  using Op = Distributed::Op;
  absl::StatusOr<double> sum = d.AllreduceScalar(r + 1, Op::kSum);
  RANK_CHECK(sum.ok(), sum.status().ToString());
  RANK_CHECK(*sum == w * (w + 1) / 2, *sum);
  absl::StatusOr<double> mn = d.AllreduceScalar(r + 1, Op::kMin);
  absl::StatusOr<double> mx = d.AllreduceScalar(r + 1, Op::kMax);
  RANK_CHECK(mn.ok() && mx.ok(), "min/max");
  RANK_CHECK(*mn == 1 && *mx == w, *mn, " ", *mx);

  absl::StatusOr<std::vector<double>> v =
      d.AllreduceScalars({double(r), -2.0 * r, 0.25, 1e10 + r}, Op::kSum);
  RANK_CHECK(v.ok() && v->size() == 4, v.status().ToString());
  const double tri = w * (w - 1) / 2.0;
  RANK_CHECK(
      (*v)[0] == tri && (*v)[1] == -2 * tri && (*v)[2] == 0.25 * w && (*v)[3] == 1e10 * w + tri,
      (*v)[0], " ", (*v)[1], " ", (*v)[2], " ", (*v)[3]);
  v = d.AllreduceScalars({double(r), -double(r)}, Op::kMax);
  RANK_CHECK(v.ok() && (*v)[0] == w - 1 && (*v)[1] == 0, "vector max");
  v = d.AllreduceScalars({}, Op::kSum);
  RANK_CHECK(v.ok() && v->empty(), "empty");
  RANK_OK(d.Barrier());

  // Barrier really waits: the last rank sleeps, everybody leaves after it arrives.
  const auto t0 = Clock::now();
  if (r == w - 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  RANK_OK(d.Barrier());
  const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
  RANK_CHECK(waited >= 0.25, "barrier returned after ", waited, " s");
  return 0;
}

TEST(DistributedMultiProcess, ScalarsAndBarrier2) { RunRanks(2, ScalarsBody); }
TEST(DistributedMultiProcess, ScalarsAndBarrier3) { RunRanks(3, ScalarsBody); }

// -----------------------------------------------------------------------------------------------
// Gradients.

// Deterministic per-rank gradient contents; nullopt = no grad on that rank.
struct GradCase {
  std::vector<int64_t> shape;
  torch::Dtype dtype;
  std::function<std::optional<torch::Tensor>(int rank)> grad;
};

std::vector<GradCase> GradCases() {
  auto f32 = torch::kFloat;
  return {
      {{3, 4},
       f32,
       [=](int r) {
         return torch::arange(12, f32).view({3, 4}) + 100 * (r + 1);
       }},
      // grad only on rank 0: the other ranks contribute zeros.
      {{5},
       f32,
       [=](int r) -> std::optional<torch::Tensor> {
         if (r == 0) return torch::arange(5, f32) - 7;
         return std::nullopt;
       }},
      // a new dtype starts a new bucket
      {{2, 3},
       torch::kDouble,
       [](int r) {
         return torch::arange(6, torch::kDouble).view({2, 3}) * 0.5 * (r + 1);
       }},
      // no grad anywhere: zeros everywhere afterwards
      {{7}, f32, [](int) -> std::optional<torch::Tensor> { return std::nullopt; }},
      // non-contiguous grad (a transposed view)
      {{4, 3},
       f32,
       [=](int r) {
         return (torch::arange(12, f32).view({3, 4}) * (r - 1)).t();
       }},
      // empty parameter
      {{0}, f32, [=](int) { return torch::zeros({0}, f32); }},
      // larger than the small buckets: split across several
      {{300}, f32, [=](int r) { return torch::arange(300, f32) * (r + 2) - 3 * r; }},
      {{1}, f32, [=](int r) { return torch::full({1}, float(r * r), f32); }},
  };
}

int GradientsBody(Distributed& d) {
  const int r = d.rank(), w = d.world_size();
  const std::vector<GradCase> cases = GradCases();
  struct Run {
    double scale;
    int64_t bucket_bytes;
    bool check_layout;
  };
  // 20 bytes = 5 floats / 2 doubles per bucket; 1 byte = one element per bucket.
  for (Run run : {Run{1.0, 20, true}, Run{0.5, 1, true}, Run{0.25, int64_t{25} << 20, true},
                  Run{1.0, 4096, false}}) {
    d.set_check_layout(run.check_layout);
    std::vector<torch::Tensor> params;
    std::vector<const void*> ptrs;
    for (const GradCase& c : cases) {
      params.push_back(
          torch::zeros(c.shape, torch::TensorOptions().dtype(c.dtype)).requires_grad_(true));
      std::optional<torch::Tensor> g = c.grad(r);
      if (g) params.back().mutable_grad() = *g;
      ptrs.push_back(g ? params.back().grad().data_ptr() : nullptr);
    }
    RANK_OK(d.AllreduceGradients(params, run.scale, run.bucket_bytes));
    for (size_t i = 0; i < cases.size(); ++i) {
      torch::Tensor expected = torch::zeros(cases[i].shape, cases[i].dtype);
      for (int q = 0; q < w; ++q) {
        if (auto g = cases[i].grad(q)) expected += *g;
      }
      expected *= run.scale;
      const torch::Tensor& got = params[i].grad();
      RANK_CHECK(got.defined(), "param ", i, " has no grad");
      RANK_CHECK(got.scalar_type() == cases[i].dtype, "param ", i, " dtype");
      RANK_CHECK(torch::equal(got, expected), "param ", i, " bucket_bytes ", run.bucket_bytes,
                 " scale ", run.scale, "\ngot ", Str(got), "\nexpected ", Str(expected));
      if (ptrs[i] != nullptr) {
        RANK_CHECK(got.data_ptr() == ptrs[i], "param ", i, " grad was replaced, not updated");
      }
    }
    RANK_CHECK(!params[4].grad().is_contiguous(), "transposed grad kept its strides");
  }

  d.set_check_layout(true);
  // Ranks that disagree on the layout all get FAILED_PRECONDITION, and the group stays usable.
  std::vector<torch::Tensor> params;
  for (int i = 0; i < (r == 0 ? 2 : 3); ++i) {
    params.push_back(torch::zeros({4}, torch::requires_grad()));
    params.back().mutable_grad() = torch::ones({4});
  }
  absl::Status s = d.AllreduceGradients(params);
  RANK_CHECK(s.code() == absl::StatusCode::kFailedPrecondition, s.ToString());
  RANK_CHECK(torch::equal(params[0].grad(), torch::ones({4})), "untouched after mismatch");
  s = d.AllreduceGradients(params, 1.0, r == 0 ? 8 : 16);  // bucket_bytes differs
  RANK_CHECK(s.code() == absl::StatusCode::kFailedPrecondition, s.ToString());
  absl::StatusOr<double> after = d.AllreduceScalar(1, Distributed::Op::kSum);
  RANK_CHECK(after.ok() && *after == w, "group usable after a layout mismatch");
  return 0;
}

TEST(DistributedMultiProcess, GradientsSumAcrossBuckets2) { RunRanks(2, GradientsBody); }
TEST(DistributedMultiProcess, GradientsSumAcrossBuckets3) { RunRanks(3, GradientsBody); }

// -----------------------------------------------------------------------------------------------
// Broadcast.

std::vector<torch::Tensor> BroadcastInputs(int r, bool big) {
  torch::manual_seed(10 + r);
  std::vector<torch::Tensor> t;
  t.push_back(torch::full({3, 4}, float(r + 1)));
  t.push_back(torch::randn({257}));
  t.push_back(torch::randn({5}, torch::kDouble));
  t.push_back(torch::randn({2, 2}).requires_grad_(true));  // leaf that requires grad
  t.push_back(torch::randn({4, 6}).t());                   // non-contiguous
  t.push_back(torch::arange(6, torch::kLong) * (r + 1));
  if (big) t.push_back(torch::full({int64_t{7} << 20}, float(r + 1)));  // 28 MiB > 25 MiB bucket
  return t;
}

int BroadcastBody(Distributed& d) {
  const int r = d.rank(), w = d.world_size();
  struct Run {
    int root;
    int64_t bucket_bytes;
  };
  for (Run run : {Run{0, int64_t{25} << 20}, Run{w - 1, 64}, Run{0, 1000}}) {
    // The 28 MiB tensor (split across two default buckets) only where it is cheap.
    const bool big = run.bucket_bytes == (int64_t{25} << 20) && w == 2;
    std::vector<torch::Tensor> mine = BroadcastInputs(r, big);
    const void* big_ptr = mine[1].data_ptr();
    RANK_OK(d.BroadcastTensors(mine, run.root, run.bucket_bytes));
    std::vector<torch::Tensor> want = BroadcastInputs(run.root, big);
    for (size_t i = 0; i < mine.size(); ++i) {
      RANK_CHECK(torch::equal(mine[i].detach(), want[i].detach()), "tensor ", i, " root ", run.root,
                 " bucket_bytes ", run.bucket_bytes);
    }
    RANK_CHECK(mine[1].data_ptr() == big_ptr, "in place");
    RANK_CHECK(mine[3].requires_grad(), "still requires grad");
    RANK_CHECK(!mine[4].is_contiguous(), "strides kept");
  }
  absl::Status s = d.BroadcastTensors({torch::zeros({1})}, w);
  RANK_CHECK(s.code() == absl::StatusCode::kInvalidArgument, s.ToString());
  return 0;
}

TEST(DistributedMultiProcess, BroadcastMatchesRoot2) { RunRanks(2, BroadcastBody); }
TEST(DistributedMultiProcess, BroadcastMatchesRoot3) { RunRanks(3, BroadcastBody); }

// -----------------------------------------------------------------------------------------------
// Data-parallel training equals single-process training on the whole batch.

constexpr int kBatch = 16;
constexpr int kSteps = 5;

torch::nn::Sequential MakeMlp() {
  torch::manual_seed(0);
  return torch::nn::Sequential(torch::nn::Linear(6, 16), torch::nn::Tanh(),
                               torch::nn::Linear(16, 4));
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(bool adam,
                                                       std::vector<torch::Tensor> params) {
  if (adam) return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(0.01));
  return std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(0.1).momentum(0.9));
}

torch::Tensor Flat(torch::nn::Module& m) {
  std::vector<torch::Tensor> ps;
  for (const auto& p : m.parameters()) ps.push_back(p.detach().flatten());
  return torch::cat(ps);
}

// Trains on rows [begin, end) of the batch; loss = sum of CE / kBatch; `dist` reduces grads
// (nullptr = this process only).
torch::Tensor TrainShard(bool adam, int64_t begin, int64_t end, Distributed* dist,
                         absl::Status* status) {
  torch::manual_seed(1234);
  const torch::Tensor x = torch::randn({kBatch, 6});
  const torch::Tensor y = torch::randint(0, 4, {kBatch}, torch::kLong);
  torch::nn::Sequential model = MakeMlp();
  auto opt = MakeOptimizer(adam, model->parameters());
  namespace F = torch::nn::functional;
  for (int step = 0; step < kSteps; ++step) {
    opt->zero_grad();
    torch::Tensor loss =
        F::cross_entropy(model->forward(x.slice(0, begin, end)), y.slice(0, begin, end),
                         F::CrossEntropyFuncOptions().reduction(torch::kSum)) /
        kBatch;
    loss.backward();
    if (dist != nullptr) {
      *status = dist->AllreduceGradients(model->parameters(), 1.0, /*bucket_bytes=*/256);
      if (!status->ok()) return {};
    }
    opt->step();
  }
  return Flat(*model);
}

torch::Tensor TrainSingleProcess(bool adam) {
  torch::manual_seed(1234);
  const torch::Tensor x = torch::randn({kBatch, 6});
  const torch::Tensor y = torch::randint(0, 4, {kBatch}, torch::kLong);
  torch::nn::Sequential model = MakeMlp();
  auto opt = MakeOptimizer(adam, model->parameters());
  for (int step = 0; step < kSteps; ++step) {
    opt->zero_grad();
    torch::nn::functional::cross_entropy(model->forward(x), y).backward();  // mean CE
    opt->step();
  }
  return Flat(*model);
}

int DataParallelBody(Distributed& d) {
  const int r = d.rank(), w = d.world_size();
  const int64_t begin = kBatch * r / w, end = kBatch * (r + 1) / w;
  const torch::Tensor initial = Flat(*MakeMlp());
  for (bool adam : {false, true}) {
    const char* name = adam ? "Adam" : "SGD";
    absl::Status s;
    torch::Tensor dp = TrainShard(adam, begin, end, &d, &s);
    RANK_OK(s);
    const torch::Tensor ref = TrainSingleProcess(adam);
    const double diff = (dp - ref).abs().max().item<double>();
    const double moved = (ref - initial).abs().max().item<double>();
    // Sensitivity: training on this shard alone ends far away from the reference.
    torch::Tensor alone = TrainShard(adam, begin, end, nullptr, &s);
    const double alone_diff = (alone - ref).abs().max().item<double>();
    if (r == 0) {
      printf(
          "[data-parallel %s, %d ranks] max|dp - single| = %.3g, max|single - init| = %.3g, "
          "max|shard-only - single| = %.3g\n",
          name, w, diff, moved, alone_diff);
    }
    RANK_CHECK(torch::allclose(dp, ref, /*rtol=*/0, /*atol=*/1e-6), name, " diff ", diff);
    RANK_CHECK(moved > 1e-2, name, " parameters barely moved: ", moved);
    RANK_CHECK(alone_diff > 1e-4, name, " shard-only training is indistinguishable: ", alone_diff);

    // All ranks hold bit-identical parameters: elementwise MAX == MIN across ranks.
    torch::Tensor dd = dp.to(torch::kDouble).contiguous();
    std::vector<double> vals(dd.data_ptr<double>(), dd.data_ptr<double>() + dd.numel());
    absl::StatusOr<std::vector<double>> mx = d.AllreduceScalars(vals, Distributed::Op::kMax);
    absl::StatusOr<std::vector<double>> mn = d.AllreduceScalars(vals, Distributed::Op::kMin);
    RANK_CHECK(mx.ok() && mn.ok(), "max/min");
    RANK_CHECK(*mx == *mn && *mx == vals, name, ": parameters differ across ranks");
  }
  return 0;
}

TEST(DistributedMultiProcess, DataParallelEqualsSingleProcess2) { RunRanks(2, DataParallelBody); }
TEST(DistributedMultiProcess, DataParallelEqualsSingleProcess3) { RunRanks(3, DataParallelBody); }

// -----------------------------------------------------------------------------------------------
// Timing (printed to the test log; only sanity-checked).

int TimingBody(Distributed& d) {
  const int w = d.world_size();
  for (int64_t n : {int64_t{14000}, int64_t{1} << 20}) {
    for (int64_t bucket : {int64_t{25} << 20, int64_t{1} << 20}) {
      if (n * 4 <= bucket && bucket != (int64_t{25} << 20)) continue;  // same as one bucket
      torch::Tensor p = torch::zeros({n}, torch::requires_grad());
      p.mutable_grad() = torch::ones({n});
      std::vector<double> us;
      for (int it = 0; it < 13; ++it) {
        RANK_OK(d.Barrier());
        const auto t0 = Clock::now();
        RANK_OK(d.AllreduceGradients({p}, 1.0 / w, bucket));
        us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
      RANK_CHECK(torch::equal(p.grad(), torch::ones({n})), "values");
      us.erase(us.begin(), us.begin() + 3);  // warm-up
      std::sort(us.begin(), us.end());
      if (d.is_main()) {
        printf(
            "[timing] AllreduceGradients %lld floats (%.2f MB), %d ranks, bucket %lld B: "
            "median %.0f us, min %.0f us, max %.0f us\n",
            static_cast<long long>(n), n * 4 / 1e6, w, static_cast<long long>(bucket),
            us[us.size() / 2], us.front(), us.back());
      }
    }
  }
  std::vector<double> us;
  for (int it = 0; it < 53; ++it) {
    const auto t0 = Clock::now();
    absl::StatusOr<double> v = d.AllreduceScalar(1, Distributed::Op::kSum);
    RANK_CHECK(v.ok() && *v == w, "scalar");
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  us.erase(us.begin(), us.begin() + 3);
  std::sort(us.begin(), us.end());
  if (d.is_main()) {
    printf(
        "[timing] AllreduceScalar (1 tiny allreduce, = the layout check's cost): median %.0f "
        "us, min %.0f us\n",
        us[us.size() / 2], us.front());
  }
  return 0;
}

TEST(DistributedMultiProcess, AllreduceTiming2) { RunRanks(2, TimingBody); }

// -----------------------------------------------------------------------------------------------
// Failures come back as Status, never as exceptions or hangs.

TEST(DistributedMultiProcess, DeadPeerGivesErrorNotHang) {
  RunRanks(
      2,
      [](Distributed& d) -> int {
        if (d.rank() == 1) return 0;  // leaves right after the rendezvous (_exit: no goodbye)
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        const auto t0 = Clock::now();
        absl::StatusOr<double> v = d.AllreduceScalar(1, Distributed::Op::kSum);
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        fprintf(stderr, "[rank 0] allreduce with a dead peer after %.2f s: %s\n", s,
                v.status().ToString().c_str());
        RANK_CHECK(!v.ok(), "allreduce with a dead peer succeeded");
        RANK_CHECK(v.status().code() == absl::StatusCode::kUnavailable ||
                       v.status().code() == absl::StatusCode::kDeadlineExceeded,
                   v.status().ToString());
        RANK_CHECK(absl::StrContains(v.status().message(), d.env().DebugString()),
                   "message names rank and address");
        RANK_CHECK(!d.Barrier().ok(), "barrier with a dead peer succeeded");
        return 0;
      },
      std::chrono::seconds(3));
}

// The other ranks keep retrying to connect until their deadline (LibTorch 1.13's TCPStore
// client alone gives up about a second early).
TEST(DistributedMultiProcess, LateMasterStillJoins) {
  const auto t0 = Clock::now();
  RunRanks(
      2,
      [](Distributed& d) -> int {
        absl::StatusOr<double> v = d.AllreduceScalar(d.rank() + 1, Distributed::Op::kSum);
        RANK_CHECK(v.ok() && *v == 3, v.status().ToString());
        return 0;
      },
      std::chrono::milliseconds(1500), std::chrono::milliseconds(900));
  EXPECT_GE(std::chrono::duration<double>(Clock::now() - t0).count(), 0.9);
}

TEST(DistributedErrors, PortInUseIsUnavailable) {
  // Occupy a port on all interfaces, as another job would.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  socklen_t n = sizeof a;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n), 0);
  const int port = ntohs(a.sin_port);

  DistEnv env;
  env.world_size = 2;
  env.master_port = port;
  const auto t0 = Clock::now();
  auto d = Distributed::Create(env, torch::kCPU, std::chrono::seconds(3));
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  close(fd);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable) << d.status();
  EXPECT_THAT(std::string(d.status().message()), HasSubstr(absl::StrCat("127.0.0.1:", port)));
  EXPECT_LT(s, 2.0) << "a busy port should fail at once";
  printf("[errors] port in use (%.2f s): %s\n", s, d.status().ToString().c_str());
}

TEST(DistributedErrors, MissingPeersTimeOut) {
  for (int rank : {0, 1}) {
    DistEnv env;
    env.rank = rank;
    env.world_size = 2;
    env.master_port = FreePort();  // nobody there (rank 1) / nobody joins (rank 0)
    const auto t0 = Clock::now();
    auto d = Distributed::Create(env, torch::kCPU, std::chrono::milliseconds(600));
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    ASSERT_FALSE(d.ok()) << "rank " << rank;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kDeadlineExceeded) << d.status();
    EXPECT_THAT(std::string(d.status().message()),
                HasSubstr(absl::StrCat("127.0.0.1:", env.master_port)));
    EXPECT_GE(s, 0.55) << "gave up before the timeout";
    EXPECT_LT(s, 1.6) << "took much longer than the timeout";
    printf("[errors] rank %d, peers missing (%.2f s): %s\n", rank, s,
           d.status().ToString().c_str());
  }
}

}  // namespace
}  // namespace nino::trainer
