// Every knob of the nowcaster daemon and its default, in one place (the binary's flags take
// their defaults from here).
#ifndef NINO_NOWCASTER_OPTIONS_H_
#define NINO_NOWCASTER_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nino::nowcaster {

// A NiNo checkpoint the server serves under `name` (the RegisterJobRequest.nino_model value).
struct ModelSpec {
  std::string name;  // e.g. "nino_no_posw"
  std::string path;  // torch.save checkpoint file
};

// metrics_port value that binds any free port (tests; read NowcasterServer::metrics_port()).
inline constexpr int kAnyPort = -1;

// The largest chunk payload a Predict sends when the request leaves max_chunk_bytes at 0: stock
// gRPC clients accept 4 MiB messages, so a default-sized chunk plus its header must fit in that.
inline constexpr int64_t kDefaultPredictChunkBytes = (4 << 20) - (64 << 10);

struct NowcasterOptions {
  // gRPC listening address, host:port. Port 0 binds a free port (NowcasterServer::port()).
  std::string address = "0.0.0.0:50051";
  // Prometheus text exposition on http://metrics_host:metrics_port/metrics. 0 = off; kAnyPort
  // = a free port.
  int metrics_port = 0;
  std::string metrics_host = "0.0.0.0";  // bind /metrics to a separate (internal) interface
  // When set, /metrics answers 401 unless the request carries "Authorization: Bearer <token>"
  // with the token on the first line of this file.
  std::string metrics_token_file;

  // TLS for the gRPC endpoint (tls.h): PEM certificate chain and private key, both or neither.
  // tls_client_ca_file (needs TLS): clients must present a certificate this CA verifies.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // Bearer tokens, one principal per line (auth.h); empty = every call allowed (no auth).
  std::string auth_tokens_file;
  // A non-loopback address without TLS or without auth_tokens_file is refused unless this is
  // set (exposure.h); then a warning is logged.
  bool allow_insecure = false;

  // NiNo checkpoints served. Empty: nino_no_posw.pt found by io::LocateCheckpoint (cache,
  // download if allow_download, ../shared), served as "nino_no_posw". The first model is the
  // default for RegisterJob requests that leave nino_model empty.
  std::vector<ModelSpec> models;
  bool allow_download = true;
  // "cpu", or "cuda" / "cuda:N" (only in builds with NINO_WITH_CUDA, on a machine with a GPU).
  std::string device = "cpu";

  // Memory of all jobs, in bytes. RegisterJob reserves a job's whole footprint
  // (job_footprint.h): (ctx + 1) snapshots of 4 * num_params bytes (ctx held + one being
  // received) plus its NiNo graph, indices, positional encoding and the larger of its graph
  // build's and one nowcast's working memory, estimated from the layout and tuning. A job that
  // does not fit fails with RESOURCE_EXHAUSTED; a PutState stream beyond a job's snapshot
  // reservation (concurrent uploads) fails the same way.
  int64_t memory_budget_bytes = int64_t{8} << 30;
  // Predict requests waiting for a worker; one more fails with RESOURCE_EXHAUSTED. >= 1.
  int queue_length = 16;
  // Threads running nowcasts (each one NiNo forward pass at a time). >= 1.
  int workers = 1;
  // LibTorch intra-op threads (process-wide at::set_num_threads); 0 = leave LibTorch's setting.
  int threads = 0;
  // Largest gRPC message received or sent. Must exceed max_chunk_bytes by kChunkHeaderBytes.
  int64_t max_message_bytes = int64_t{8} << 20;
  // Largest StateChunk / PredictionChunk data field accepted or sent, in bytes.
  int64_t max_chunk_bytes = int64_t{4} << 20;
  // A job's NiNo graph, positional encoding and indices are built in the background after
  // RegisterJob admitted it (minutes and tens of GB for 100M+ parameters). RegisterJob waits up
  // to this long (within its deadline) for the build: a graph ready by then is reported in the
  // reply, as is a layout the graph cannot map (INVALID_ARGUMENT, the job is not registered);
  // a longer build goes on while the job already accepts snapshots (GetJob shows graph_state;
  // Predict waits for it within its deadline). Builds run one at a time, in order.
  int64_t register_wait_ms = 5000;
  // Registered jobs whose graphs wait for the builder; one more fails RegisterJob with
  // RESOURCE_EXHAUSTED. >= 1.
  int max_pending_builds = 16;
  // Upper bound on gRPC threads serving calls (grpc::ResourceQuota); 0 = gRPC's default.
  int max_rpc_threads = 64;

  // Graceful stop: health turns NOT_SERVING, the server keeps serving for lame_duck_ms (load
  // balancers move away), then stops accepting calls and gives in-flight calls
  // shutdown_deadline_ms to finish before cancelling them.
  int64_t lame_duck_ms = 0;
  int64_t shutdown_deadline_ms = 10000;

  // Test hook, never set in production: runs on the worker thread before each nowcast (e.g.
  // blocks to fill the queue or to make a deadline pass).
  std::function<void()> before_nowcast_for_testing;
  // Test hook, never set in production: runs on the builder thread before each graph build.
  std::function<void()> before_graph_build_for_testing;
};

// Room left in a message around a chunk's data for its other fields.
inline constexpr int64_t kChunkHeaderBytes = 64 << 10;

// INVALID_ARGUMENT naming the first bad field.
absl::Status ValidateOptions(const NowcasterOptions& options);

// Parses "name=path[,name=path...]"; a bare "path" is served under its file name without
// extension. INVALID_ARGUMENT for empty names or paths and duplicate names.
absl::StatusOr<std::vector<ModelSpec>> ParseModelSpecs(const std::vector<std::string>& items);

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_OPTIONS_H_
