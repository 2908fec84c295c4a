#include "tests/testing/test_util.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace nino::testing {
namespace fs = std::filesystem;

std::string SharedDir() {
  const char* env = std::getenv("NINO_SHARED_DIR");
  if (env != nullptr && *env != '\0') return env;
#ifdef NINO_SHARED_DIR_DEFAULT
  return NINO_SHARED_DIR_DEFAULT;
#else
  return "";
#endif
}

std::string SharedPath(const std::string& rel) {
  const std::string dir = SharedDir();
  if (dir.empty()) return "";
  const std::string path = dir + "/" + rel;
  std::error_code ec;
  return fs::exists(path, ec) ? path : "";
}

std::string RunfilesPath(const std::string& rel, const char* override_env) {
  if (override_env != nullptr) {
    if (const char* set = std::getenv(override_env); set != nullptr && *set != '\0') return set;
  }
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir != nullptr && workspace != nullptr) {
    return absl::StrCat(srcdir, "/", workspace, "/", rel);
  }
  return rel;
}

std::string TrainBinary() { return RunfilesPath("trainer/nino_train", "NINO_TRAIN_BIN"); }

std::string NowcasterBinary() {
  return RunfilesPath("nowcaster/nino_nowcaster", "NINO_NOWCASTER_BIN");
}

LoopbackSocket::LoopbackSocket(bool listen_on) {
  fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      (listen_on && listen(fd, 16) != 0) ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    Close();
    return;
  }
  port = ntohs(a.sin_port);
}

LoopbackSocket::~LoopbackSocket() { Close(); }

void LoopbackSocket::Close() {
  if (fd >= 0) close(fd);
  fd = -1;
}

int FreePort() { return LoopbackSocket(false).port; }

std::string LoopbackAddress(int port) { return absl::StrCat("127.0.0.1:", port); }

std::string MakeTestDir(const std::string& name) {
  static std::atomic<int> counter{0};
  const fs::path dir =
      fs::path(::testing::TempDir()) / absl::StrCat(name, ".", getpid(), ".", counter++);
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (!fs::create_directories(dir, ec)) {
    ADD_FAILURE() << "cannot create " << dir << ": " << ec.message();
    return "";
  }
  return dir.string();
}

std::string HttpGet(int port, const std::string& path, const std::string& authorization,
                    int timeout_ms) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (fd >= 0) close(fd);
    return "connect failed";
  }
  std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n");
  if (!authorization.empty()) absl::StrAppend(&request, "Authorization: ", authorization, "\r\n");
  absl::StrAppend(&request, "Connection: close\r\n\r\n");
  (void)!write(fd, request.data(), request.size());
  std::string response;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0) break;
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return response;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  return static_cast<bool>(out.flush());
}

}  // namespace nino::testing
