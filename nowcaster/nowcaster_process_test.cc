// The nino_nowcaster binary as users run it: start, become healthy, SIGTERM, exit 0.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nowcaster/grpc_probe.h"

namespace nino::nowcaster {
namespace {

std::string CheckpointPath() {
  const char* env = std::getenv("NINO_SHARED_DIR");
  const std::string shared = env && *env ? env : NINO_SHARED_DIR_DEFAULT;
  return shared + "/reference/checkpoints/nino_no_posw.pt";
}

std::string BinaryPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  if (srcdir != nullptr) return std::string(srcdir) + "/nino_service/nowcaster/nino_nowcaster";
  return "nowcaster/nino_nowcaster";
}

// GET http://127.0.0.1:port/path; the whole response.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\n\r\n");
    (void)!write(fd, request.data(), request.size());
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) response.append(buf, n);
  }
  close(fd);
  return response;
}

// The number after `marker` in `text`, or 0.
int PortAfter(const std::string& text, const std::string& marker) {
  const size_t at = text.find(marker);
  if (at == std::string::npos) return 0;
  const size_t begin = at + marker.size();
  int port = 0;
  if (!absl::SimpleAtoi(text.substr(begin, text.find_first_not_of("0123456789", begin) - begin),
                        &port)) {
    return 0;
  }
  return port;
}

// A child process with its stderr on a pipe.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDERR_FILENO);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(fds[1]);
    err_fd_ = fds[0];
  }
  ~Child() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (err_fd_ >= 0) close(err_fd_);
  }
  pid_t pid() const { return pid_; }

  // Reads stderr until a line contains `needle` or the child closes it; returns all read.
  std::string ReadUntil(const std::string& needle) {
    char buf[1024];
    while (log_.find(needle) == std::string::npos) {
      const ssize_t n = read(err_fd_, buf, sizeof buf);
      if (n <= 0) break;
      log_.append(buf, n);
    }
    return log_;
  }

  // Waits up to `timeout` for the exit; the wait status, or -1 on timeout.
  int WaitExit(std::chrono::seconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int err_fd_ = -1;
  bool exited_ = false;
  std::string log_;
};

TEST(NowcasterProcess, ServesHealthAndExitsCleanlyOnSigterm) {
  const std::string ckpt = CheckpointPath();
  if (!std::filesystem::exists(ckpt)) {
    GTEST_SKIP() << "official checkpoint not found at " << ckpt
                 << " (set NINO_SHARED_DIR to the shared folder to run this test)";
  }
  ASSERT_TRUE(std::filesystem::exists(BinaryPath())) << BinaryPath();
  Child child({BinaryPath(), "--address=127.0.0.1:0", "--metrics_port=-1",
               "--metrics_host=127.0.0.1", "--threads=1", "--lame_duck_ms=0",
               "--shutdown_deadline_ms=2000", "--nino_model=nino_no_posw=" + ckpt});
  ASSERT_GT(child.pid(), 0);
  std::string log = child.ReadUntil("device ");
  const int port = PortAfter(log, "listening on 127.0.0.1:");
  ASSERT_GT(port, 0) << "no address in the start-up log:\n" << log;
  const int metrics_port = PortAfter(log, "metrics on http://127.0.0.1:");
  ASSERT_GT(metrics_port, 0) << "no metrics port in the start-up log:\n" << log;
  EXPECT_NE(log.find("models: nino_no_posw="), std::string::npos) << log;
  EXPECT_NE(log.find("device cpu"), std::string::npos) << log;
  EXPECT_NE(log.find("LibTorch threads 1"), std::string::npos) << log;

  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  absl::StatusOr<ServingStatus> health;
  for (int i = 0; i < 100; ++i) {
    health = CheckHealth(channel, "nino.v1.Nowcaster", absl::Seconds(2));
    if (health.ok() && *health == ServingStatus::kServing) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(health.ok()) << health.status();
  ASSERT_EQ(*health, ServingStatus::kServing);

  // /metrics works in the real process (LibTorch and all its libraries loaded).
  const std::string metrics = HttpGet(metrics_port, "/metrics");
  EXPECT_NE(metrics.find("200 OK"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("nino_nowcaster_jobs 0"), std::string::npos) << metrics;

  ASSERT_EQ(kill(child.pid(), SIGTERM), 0);
  const int status = child.WaitExit(std::chrono::seconds(20));
  ASSERT_NE(status, -1) << "no exit within 20 s of SIGTERM";
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  log = child.ReadUntil("stopped");
  EXPECT_NE(log.find("received SIGTERM"), std::string::npos) << log;
  EXPECT_NE(log.find("stopped"), std::string::npos) << log;
}

}  // namespace
}  // namespace nino::nowcaster
