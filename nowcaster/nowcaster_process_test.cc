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

#include "absl/strings/str_cat.h"
#include "nowcaster/child_process.h"
#include "nowcaster/grpc_probe.h"

namespace nino::nowcaster {
namespace {

std::string CheckpointPath() {
  const char* env = std::getenv("NINO_SHARED_DIR");
  const std::string shared = env && *env ? env : NINO_SHARED_DIR_DEFAULT;
  return shared + "/reference/checkpoints/nino_no_posw.pt";
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

TEST(NowcasterProcess, ServesHealthAndExitsCleanlyOnSigterm) {
  const std::string ckpt = CheckpointPath();
  if (!std::filesystem::exists(ckpt)) {
    GTEST_SKIP() << "official checkpoint not found at " << ckpt
                 << " (set NINO_SHARED_DIR to the shared folder to run this test)";
  }
  ASSERT_TRUE(std::filesystem::exists(NowcasterBinaryPath())) << NowcasterBinaryPath();
  ChildProcess child({NowcasterBinaryPath(), "--address=127.0.0.1:0", "--metrics_port=-1",
                      "--metrics_host=127.0.0.1", "--threads=1", "--lame_duck_ms=0",
                      "--shutdown_deadline_ms=2000", "--nino_model=nino_no_posw=" + ckpt});
  ASSERT_GT(child.pid(), 0);
  std::string log = child.ReadUntil("device ");
  const int port = NumberAfter(log, "listening on 127.0.0.1:");
  ASSERT_GT(port, 0) << "no address in the start-up log:\n" << log;
  const int metrics_port = NumberAfter(log, "metrics on http://127.0.0.1:");
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
