#include "tools/load_test_nowcaster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace nino::load_test {
namespace {

// The start-up line NowcasterServer logs last ("device cpu, N workers, LibTorch threads T, ...").
constexpr char kReadyMarker[] = "LibTorch threads ";
constexpr char kPortMarker[] = "listening on 127.0.0.1:";
constexpr char kMetricsMarker[] = "metrics on http://127.0.0.1:";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The number right after `marker` in `text`, or 0.
int NumberAfter(const std::string& text, const std::string& marker) {
  const size_t at = text.find(marker);
  if (at == std::string::npos) return 0;
  const size_t begin = at + marker.size();
  const size_t end = text.find_first_not_of("0123456789", begin);
  int value = 0;
  if (!absl::SimpleAtoi(text.substr(begin, end == std::string::npos ? end : end - begin), &value)) {
    return 0;
  }
  return value;
}

// GET http://127.0.0.1:port/path over HTTP/1.0; the whole response (headers and body).
absl::StatusOr<std::string> HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::UnavailableError("socket() failed");
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to 127.0.0.1:", port));
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\n\r\n");
  std::string response;
  if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
    char buf[8192];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) response.append(buf, n);
  }
  close(fd);
  return response;
}

}  // namespace

absl::StatusOr<std::unique_ptr<NowcasterProcess>> NowcasterProcess::Start(
    const std::string& binary, const std::vector<std::string>& args, const std::string& log_path,
    absl::Duration timeout) {
  if (binary.empty() || access(binary.c_str(), X_OK) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("nowcaster binary '", binary, "' does not exist or is not executable"));
  }
  std::vector<std::string> argv = {binary, "--address=127.0.0.1:0", "--metrics_port=-1",
                                   "--metrics_host=127.0.0.1"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> c_argv;
  for (std::string& a : argv) c_argv.push_back(a.data());
  c_argv.push_back(nullptr);
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return absl::InvalidArgumentError(absl::StrCat("cannot open ", log_path));
  const size_t log_start = static_cast<size_t>(lseek(log_fd, 0, SEEK_END));

  std::unique_ptr<NowcasterProcess> p(new NowcasterProcess());
  p->log_path_ = log_path;
  p->pid_ = fork();
  if (p->pid_ == 0) {  // only async-signal-safe calls until execv
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(c_argv[0], c_argv.data());
    _exit(127);
  }
  close(log_fd);
  if (p->pid_ < 0) return absl::InternalError("fork() failed");

  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    const std::string log = ReadFile(log_path).substr(log_start);
    const size_t ready = log.find(kReadyMarker);
    if (ready != std::string::npos && log.find('\n', ready) != std::string::npos) {
      p->port_ = NumberAfter(log, kPortMarker);
      p->metrics_port_ = NumberAfter(log, kMetricsMarker);
      if (p->port_ <= 0 || p->metrics_port_ <= 0) {
        return absl::UnavailableError(
            absl::StrCat("the nowcaster's start-up log names no ports:\n", p->LogTail(2000)));
      }
      return p;
    }
    int status = 0;
    if (waitpid(p->pid_, &status, WNOHANG) == p->pid_) {
      p->exited_ = true;
      return absl::UnavailableError(absl::StrCat("the nowcaster exited (wait status ", status,
                                                 ") before it was ready:\n", p->LogTail(2000)));
    }
    if (absl::Now() > deadline) {
      return absl::UnavailableError(absl::StrCat("the nowcaster was not ready within ",
                                                 absl::FormatDuration(timeout), ":\n",
                                                 p->LogTail(2000)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

NowcasterProcess::~NowcasterProcess() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

int64_t NowcasterProcess::ResidentBytes() const { return ProcStatusBytes(pid_, "VmRSS"); }

int64_t NowcasterProcess::PeakResidentBytes() const { return ProcStatusBytes(pid_, "VmHWM"); }

absl::StatusOr<std::string> NowcasterProcess::Metrics() const {
  absl::StatusOr<std::string> response = HttpGet(metrics_port_, "/metrics");
  if (!response.ok()) return response.status();
  const size_t body = response->find("\r\n\r\n");
  if (response->rfind("HTTP/1.", 0) != 0 || response->find(" 200 ") == std::string::npos ||
      body == std::string::npos) {
    return absl::UnavailableError(
        absl::StrCat("GET /metrics: unexpected response '", response->substr(0, 200), "'"));
  }
  return response->substr(body + 4);
}

absl::Status NowcasterProcess::Stop(absl::Duration timeout) {
  if (pid_ <= 0 || exited_) return absl::FailedPreconditionError("the nowcaster is not running");
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
      return absl::InternalError(
          WIFSIGNALED(status)
              ? absl::StrCat("the nowcaster died of signal ", WTERMSIG(status), " after SIGTERM")
              : absl::StrCat("the nowcaster exited with status ", WEXITSTATUS(status),
                             " after SIGTERM:\n", LogTail(2000)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  exited_ = true;
  return absl::DeadlineExceededError(absl::StrCat("the nowcaster did not exit within ",
                                                  absl::FormatDuration(timeout), " of SIGTERM"));
}

std::string NowcasterProcess::LogTail(size_t bytes) const {
  const std::string log = ReadFile(log_path_);
  return log.size() <= bytes ? log : log.substr(log.size() - bytes);
}

int64_t ProcStatusBytes(pid_t pid, const std::string& field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) != 0) continue;
    const size_t begin = line.find_first_of("0123456789");
    if (begin == std::string::npos) return -1;
    const size_t end = line.find(' ', begin);
    int64_t kib = 0;
    if (!absl::SimpleAtoi(line.substr(begin, end == std::string::npos ? end : end - begin), &kib)) {
      return -1;
    }
    return kib * 1024;
  }
  return -1;
}

double SumMetric(const std::string& exposition, const std::string& metric,
                 const std::vector<std::string>& labels) {
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (line.size() <= metric.size() || line.substr(0, metric.size()) != metric) continue;
    const char next = line[metric.size()];
    if (next != '{' && next != ' ') continue;  // another metric with this prefix
    const size_t close = line.rfind('}');
    const absl::string_view label_text = next == '{' && close != absl::string_view::npos
                                             ? line.substr(metric.size(), close - metric.size())
                                             : absl::string_view();
    bool all = true;
    for (const std::string& l : labels) all = all && label_text.find(l) != absl::string_view::npos;
    if (!all) continue;
    double value = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) sum += value;
  }
  return sum;
}

std::string DefaultNowcasterBinary() {
  std::vector<std::string> candidates;
  if (const char* srcdir = std::getenv("TEST_SRCDIR"); srcdir != nullptr && *srcdir) {
    candidates.push_back(absl::StrCat(srcdir, "/nino_service/nowcaster/nino_nowcaster"));
  }
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    candidates.push_back(self.string() + ".runfiles/nino_service/nowcaster/nino_nowcaster");
    candidates.push_back((self.parent_path().parent_path() / "nowcaster/nino_nowcaster").string());
  }
  for (const std::string& c : candidates) {
    if (access(c.c_str(), X_OK) == 0) return c;
  }
  return "";
}

}  // namespace nino::load_test
