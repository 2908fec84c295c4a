#include "nowcaster/metrics_http_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace nino::nowcaster {
namespace {

constexpr size_t kMaxRequestBytes = 8192;
constexpr int kSocketTimeoutMs = 2000;

void SetTimeouts(int fd) {
  timeval tv{kSocketTimeoutMs / 1000, (kSocketTimeoutMs % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

std::string Response(absl::string_view status, absl::string_view content_type,
                     absl::string_view body, bool include_body) {
  return absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n",
                      include_body ? body : absl::string_view());
}

// The value of the first "Authorization:" header of `request` (name case-insensitive), or "".
absl::string_view AuthorizationHeader(absl::string_view request) {
  constexpr absl::string_view kName = "authorization:";
  size_t pos = request.find("\r\n");
  while (pos != absl::string_view::npos) {
    const absl::string_view rest = request.substr(pos + 2);
    const absl::string_view line = rest.substr(0, rest.find("\r\n"));
    if (line.empty()) break;
    if (line.size() > kName.size() && absl::EqualsIgnoreCase(line.substr(0, kName.size()), kName)) {
      return absl::StripAsciiWhitespace(line.substr(kName.size()));
    }
    pos = request.find("\r\n", pos + 2);
  }
  return "";
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& host, int port, std::shared_ptr<prometheus::Registry> registry,
    Authorizer authorize) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* resolved = nullptr;
  const std::string port_text = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), port_text.c_str(), &hints, &resolved); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("/metrics: cannot resolve ", host, ": ", gai_strerror(rc)));
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const bool bound =
      fd >= 0 && bind(fd, resolved->ai_addr, resolved->ai_addrlen) == 0 && listen(fd, 16) == 0;
  const int bind_errno = errno;
  freeaddrinfo(resolved);
  if (!bound) {
    if (fd >= 0) close(fd);
    return absl::UnavailableError(absl::StrCat("/metrics: cannot listen on ", host, ":", port, ": ",
                                               std::strerror(bind_errno)));
  }
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int wake[2];
  if (pipe2(wake, O_CLOEXEC) != 0) {
    close(fd);
    return absl::InternalError(absl::StrCat("/metrics: pipe: ", std::strerror(errno)));
  }
  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer(
      fd, wake[0], wake[1], ntohs(addr.sin_port), std::move(registry), std::move(authorize)));
  server->thread_ = std::thread([s = server.get()] { s->Serve(); });
  return server;
}

MetricsHttpServer::MetricsHttpServer(int listen_fd, int wake_read_fd, int wake_write_fd, int port,
                                     std::shared_ptr<prometheus::Registry> registry,
                                     Authorizer authorize)
    : listen_fd_(listen_fd),
      wake_read_fd_(wake_read_fd),
      wake_write_fd_(wake_write_fd),
      port_(port),
      registry_(std::move(registry)),
      authorize_(std::move(authorize)) {}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

void MetricsHttpServer::Stop() {
  if (!thread_.joinable()) return;
  const char byte = 0;
  (void)!write(wake_write_fd_, &byte, 1);
  thread_.join();
  close(listen_fd_);
  close(wake_read_fd_);
  close(wake_write_fd_);
}

void MetricsHttpServer::Serve() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_read_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    SetTimeouts(fd);
    HandleConnection(fd);
    close(fd);
  }
}

void MetricsHttpServer::HandleConnection(int fd) {
  std::string request;
  char buf[1024];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < kMaxRequestBytes) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return;  // closed or timed out
    }
    request.append(buf, static_cast<size_t>(n));
  }
  // Request line: METHOD SP TARGET SP VERSION
  const absl::string_view line = absl::string_view(request).substr(0, request.find("\r\n"));
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == absl::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == absl::string_view::npos) {
    WriteAll(fd, Response("400 Bad Request", "text/plain", "bad request\n", true));
    return;
  }
  const absl::string_view method = line.substr(0, sp1);
  absl::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));
  const bool head = method == "HEAD";
  if (method != "GET" && !head) {
    WriteAll(fd, Response("405 Method Not Allowed", "text/plain", "GET or HEAD only\n", true));
    return;
  }
  if (target != "/metrics") {
    WriteAll(fd, Response("404 Not Found", "text/plain", "try /metrics\n", !head));
    return;
  }
  if (authorize_ && !authorize_(AuthorizationHeader(request))) {
    WriteAll(fd, absl::StrCat("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n",
                              "Content-Type: text/plain\r\nContent-Length: 32\r\n",
                              "Connection: close\r\n\r\n",
                              head ? "" : "needs Authorization: Bearer ...\n"));
    return;
  }
  const std::string body = prometheus::TextSerializer().Serialize(registry_->Collect());
  WriteAll(fd, Response("200 OK", "text/plain; version=0.0.4; charset=utf-8", body, !head));
}

}  // namespace nino::nowcaster
