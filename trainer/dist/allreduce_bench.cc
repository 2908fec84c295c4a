// Allreduce timings on N forked ranks over 127.0.0.1 (Gloo): a raw c10d ProcessGroupGloo
// allreduce next to Distributed::AllreduceGradients (which adds the layout check, one tiny
// allreduce, and bucketing) for the same payloads.
//
//   bazel run //trainer/dist:allreduce_bench -- [ranks=2] [iters=50] [floats...]
//   (default floats: 14000 1048576)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <vector>

#include "trainer/dist/distributed.h"

namespace {

using Clock = std::chrono::steady_clock;
using nino::trainer::DistEnv;
using nino::trainer::Distributed;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t n = sizeof a;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  close(fd);
  return ntohs(a.sin_port);
}

struct Stats {
  double median, p10, p90;
};

template <class Fn>
Stats Time(Distributed& d, int iters, Fn&& fn) {
  std::vector<double> us;
  for (int i = 0; i < iters + 3; ++i) {
    if (!d.Barrier().ok()) std::_Exit(5);
    const auto t0 = Clock::now();
    fn();
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  us.erase(us.begin(), us.begin() + 3);
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us[us.size() / 10], us[us.size() * 9 / 10]};
}

int Rank(int rank, int world, int port, int raw_port, int iters,
         const std::vector<int64_t>& sizes) {
  torch::set_num_threads(1);
  DistEnv env;
  env.rank = rank;
  env.world_size = world;
  env.master_port = port;
  auto d = Distributed::Create(env, torch::kCPU, std::chrono::seconds(30));
  if (!d.ok()) {
    fprintf(stderr, "rank %d: %s\n", rank, d.status().ToString().c_str());
    return 2;
  }
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(raw_port);
  so.isServer = rank == 0;
  so.numWorkers = world;
  so.timeout = std::chrono::seconds(30);
  auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", so);
  auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(30));
  opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);

  auto report = [&](const char* what, int64_t n, const Stats& s) {
    if (rank == 0) {
      printf("%-44s %9lld floats %8.2f MB: median %8.0f us  p10 %8.0f  p90 %8.0f  (%.2f GB/s)\n",
             what, static_cast<long long>(n), n * 4 / 1e6, s.median, s.p10, s.p90,
             n * 4 / (s.median * 1e3));
    }
  };
  for (int64_t n : sizes) {
    std::vector<at::Tensor> raw{torch::ones({n})};
    report("raw ProcessGroupGloo::allreduce", n,
           Time(**d, iters, [&] { pg->allreduce(raw)->wait(); }));
    torch::Tensor p = torch::zeros({n}, torch::requires_grad());
    p.mutable_grad() = torch::ones({n});
    report("AllreduceGradients (1 param, 1 bucket)", n,
           Time(**d, iters, [&] { (void)(*d)->AllreduceGradients({p}); }));
    (*d)->set_check_layout(false);
    report("AllreduceGradients (1 param, no layout check)", n,
           Time(**d, iters, [&] { (void)(*d)->AllreduceGradients({p}); }));
    (*d)->set_check_layout(true);
    report("AllreduceGradients (1 param, 1 MiB buckets)", n,
           Time(**d, iters, [&] { (void)(*d)->AllreduceGradients({p}, 1.0, 1 << 20); }));
    // The same payload as 20 parameters packed into one bucket.
    std::vector<torch::Tensor> ps;
    for (int i = 0; i < 20; ++i) {
      ps.push_back(torch::zeros({n / 20 + (i < n % 20)}, torch::requires_grad()));
      ps.back().mutable_grad() = torch::ones_like(ps.back());
    }
    report("AllreduceGradients (20 params, packed)", n,
           Time(**d, iters, [&] { (void)(*d)->AllreduceGradients(ps); }));
    report("BroadcastTensors (1 tensor)", n,
           Time(**d, iters, [&] { (void)(*d)->BroadcastTensors({p}); }));
  }
  report("AllreduceScalar", 1,
         Time(**d, iters, [&] { (void)(*d)->AllreduceScalar(1.0, Distributed::Op::kSum); }));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int world = argc > 1 ? std::atoi(argv[1]) : 2;
  const int iters = argc > 2 ? std::atoi(argv[2]) : 50;
  std::vector<int64_t> sizes;
  for (int i = 3; i < argc; ++i) sizes.push_back(std::atoll(argv[i]));
  if (sizes.empty()) sizes = {14000, 1 << 20};
  const int port = FreePort(), raw_port = FreePort();
  printf("%d ranks, %d iterations (median of per-call wall time on rank 0, barrier before each)\n",
         world, iters);
  fflush(stdout);
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      alarm(300);
      int rc = 3;
      try {
        rc = Rank(r, world, port, raw_port, iters, sizes);
      } catch (const std::exception& e) {
        fprintf(stderr, "rank %d: %s\n", r, e.what());
      }
      fflush(nullptr);
      _exit(rc);
    }
    pids.push_back(pid);
  }
  int failed = 0;
  for (pid_t pid : pids) {
    int st = 0;
    waitpid(pid, &st, 0);
    failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  return failed == 0 ? 0 : 1;
}
