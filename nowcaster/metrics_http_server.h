// A minimal HTTP endpoint serving a prometheus-cpp Registry as Prometheus text on /metrics.
//
// Hand-written instead of prometheus::Exposer (prometheus-cpp-pull) on purpose: Debian's
// civetweb starts its threads with a fixed 100 KiB stack (USE_STACK_SIZE=102400), and glibc
// refuses such threads (pthread_create: EINVAL) once the process's static TLS exceeds it, which
// LibTorch's dependencies do (OpenBLAS 60 KiB + glog 30 KiB + libtorch_cpu 10 KiB). The Exposer
// therefore cannot start inside the nowcaster. This server only answers GET/HEAD /metrics, one
// connection at a time with short socket timeouts, which is all a Prometheus scrape needs;
// metric names, types and the text format stay prometheus-cpp's (TextSerializer).
#ifndef NINO_NOWCASTER_METRICS_HTTP_SERVER_H_
#define NINO_NOWCASTER_METRICS_HTTP_SERVER_H_

#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nino::nowcaster {

class MetricsHttpServer {
 public:
  // Decides from a request's Authorization header value ("" when absent) whether it may read
  // /metrics. Must not log the value.
  using Authorizer = std::function<bool(absl::string_view authorization)>;

  // Listens on host:port (IPv4 literal or name; port 0 = any free port) and serves `registry`
  // from a background thread. With an `authorize` function, a /metrics request it refuses gets
  // 401 Unauthorized (WWW-Authenticate: Bearer). UNAVAILABLE if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& host, int port, std::shared_ptr<prometheus::Registry> registry,
      Authorizer authorize = Authorizer());

  ~MetricsHttpServer();  // Stop()
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The bound port.
  int port() const { return port_; }

  // Stops accepting, finishes the connection being served and joins the thread. Idempotent;
  // not thread-safe with itself.
  void Stop();

 private:
  MetricsHttpServer(int listen_fd, int wake_read_fd, int wake_write_fd, int port,
                    std::shared_ptr<prometheus::Registry> registry, Authorizer authorize);
  void Serve();
  void HandleConnection(int fd);

  int listen_fd_;
  int wake_read_fd_;  // a byte written to wake_write_fd_ ends Serve()
  int wake_write_fd_;
  const int port_;
  const std::shared_ptr<prometheus::Registry> registry_;
  const Authorizer authorize_;  // empty: open
  std::thread thread_;
};

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_METRICS_HTTP_SERVER_H_
