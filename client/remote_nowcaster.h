// RemoteNowcaster: the client side of the nino.v1 nowcaster protocol for one training job. Used
// on rank 0 only, as the inner nowcaster of the data-parallel transaction (nowcast_transaction.h).
//
//  * Replicas: `address` is one "host:port" or a comma-separated list of nowcaster replicas. The
//    job's replica order is fixed by rendezvous hashing of its job id (ReplicaOrder: stable when
//    replicas come and go; every replica is tried at most once per call). A replica that is
//    unavailable, refuses the job for lack of memory (RESOURCE_EXHAUSTED) or has lost it sends
//    the job to the next replica: the client registers there and resends the context it holds.
//    Predictions are fenced by job id, step and k, so an answer for anything else is refused.
//
//  * DNS names: an entry of `address` whose host is a name (e.g. a Kubernetes headless Service)
//    stands for every address it resolves to (remote_nowcaster_resolve.h); IP literals are kept.
//    The names are resolved again when every replica failed, and, at most every
//    `re_resolve_interval`, before the job registers (a registered job stays where it is).
//  * Security: `credentials` (remote_nowcaster_credentials.h) select TLS / mutual TLS and the
//    bearer token sent with every call. Files that cannot be read make every call fail with
//    their INVALID_ARGUMENT (check them first with ChannelSecurity::Load).
//
//  * The job is registered lazily (first upload or nowcast); a failure is logged and counted
//    and registration is tried again at the next use. Training never stops for the nowcaster.
//  * StateRecorded() copies a snapshot and returns at once; a worker thread streams it to the
//    server (PutState, chunks from proto/wire) while training goes on.
//  * Nowcast() waits (within its deadline) for pending uploads, uploads synchronously the
//    context snapshots the server does not hold yet (always the newest one: it is recorded in the
//    NiNo step's own iteration), calls Predict with a deadline, and assembles and checks the
//    prediction (chunk checksums and offsets, job, step, k, size, finite values). If the server
//    lacks the context (it restarted, an upload was lost, ...) the job is registered afresh, the
//    `states` argument uploaded synchronously once and Predict retried once. Any other error or
//    a timeout is returned as a Status (the trainer then takes an ordinary optimizer step).
#ifndef NINO_CLIENT_REMOTE_NOWCASTER_H_
#define NINO_CLIENT_REMOTE_NOWCASTER_H_

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/remote_nowcaster_credentials.h"
#include "client/remote_nowcaster_resolve.h"
#include "common/nino/neural_graph.h"
#include "common/nino/nino_optimizer.h"
#include "common/nino/nowcast_engine.h"
#include "nino/v1/nowcaster.grpc.pb.h"

namespace nino::client {

struct RemoteNowcasterOptions {
  std::string address;  // host:port of nino_nowcaster, or a comma-separated list (see above)
  NowcasterCredentials credentials;  // TLS and bearer token (default: plaintext, no token)
  HostResolver resolver;             // name -> addresses; empty: ResolveHostSystem (getaddrinfo)
  absl::Duration re_resolve_interval = absl::Seconds(30);
  std::string job_id;  // unique among the server's open jobs (see MakeJobId)
  std::vector<std::pair<std::string, std::vector<int64_t>>> params;  // named_parameters order
  GraphSpec graph;  // kDescribed: its description travels in RegisterJob (graph.description)
  std::string nino_model = "nino_no_posw";
  int64_t period = 1000;
  int64_t ctx = 5;
  int64_t max_train_steps = 10000;
  double k_decay = 2.0;
  uint64_t lpe_seed = 0;  // positional-encoding sign seed: the in-process trainer uses --seed
  NowcastTuning tuning;   // sent with RegisterJob (the server seeds edge samples with lpe_seed)
  absl::Duration nowcast_timeout = absl::Seconds(60);  // whole Nowcast(), uploads included
  absl::Duration rpc_timeout = absl::Seconds(30);      // RegisterJob, background PutState
  bool quiet = false;                                  // no log lines (errors are still counted)
  // TEST ONLY (never set in production): called with each StateChunk just before it is sent,
  // after its CRC-32C was computed; a test flips a byte to simulate corruption in transit.
  std::function<void(v1::StateChunk*)> before_send_chunk_for_testing;
};

// "<task>-s<seed>-p<pid>-t<unix seconds>", characters the server accepts.
std::string MakeJobId(const std::string& task, uint64_t seed);

// The comma-separated `addresses` (empty entries dropped, spaces trimmed) in the order the job
// `job_id` tries them: descending ReplicaScore, ties by address (rendezvous hashing; the Python
// client's nino._client.replica_order is the same function).
std::vector<std::string> ReplicaOrder(const std::string& job_id, const std::string& addresses);
// The same order for replicas already expanded (by ReplicaScore of each address).
std::vector<ReplicaAddress> ReplicaOrder(const std::string& job_id,
                                         std::vector<ReplicaAddress> replicas);
// fmix64(FNV-1a-64) of the bytes of "<job_id>|<address>".
uint64_t ReplicaScore(const std::string& job_id, const std::string& address);

class RemoteNowcaster : public Nowcaster {
 public:
  explicit RemoteNowcaster(RemoteNowcasterOptions options);
  // Stops the upload thread and closes the job (best effort, short deadline).
  ~RemoteNowcaster() override;
  RemoteNowcaster(const RemoteNowcaster&) = delete;
  RemoteNowcaster& operator=(const RemoteNowcaster&) = delete;

  // The NiNoOptimizer call index of the next Nowcast (the trainer sets it before a NiNo step).
  void SetNinoStep(int64_t step_idx);
  // A snapshot [P] was recorded at call index `step_idx`: copied here, uploaded in the
  // background.
  void StateRecorded(int64_t step_idx, const torch::Tensor& flat);

  absl::StatusOr<torch::Tensor> Nowcast(const torch::Tensor& states, int k) override;

  // Waits until every snapshot handed to StateRecorded has been uploaded (or has failed);
  // false if that takes longer than `timeout`.
  bool WaitForUploads(absl::Duration timeout);

  struct Stats {
    int64_t registrations = 0, register_failures = 0;
    int64_t uploads = 0, upload_failures = 0, uploads_dropped = 0;
    int64_t upload_retries = 0;  // uploads sent again after DATA_LOSS (damaged in transit)
    int64_t predictions = 0, prediction_failures = 0, context_resends = 0;
    int64_t failovers = 0;                   // moves to the next replica
    double last_server_nowcast_seconds = 0;  // the server's own time for the last prediction
  };
  Stats stats() const;
  std::string job_id() const;
  // The replica the job is on (or will register with next).
  std::string replica() const;

 private:
  struct Pending {
    int64_t step;
    torch::Tensor values;
  };
  void UploadLoop();
  // All below: rpc_mu_ held.
  absl::Status EnsureRegisteredLocked(absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rpc_mu_);
  // Uploads one snapshot; an upload the server found damaged (DATA_LOSS: a chunk's CRC-32C did
  // not match, or the stream was cut) changed nothing there and is sent once more.
  absl::Status UploadLocked(int64_t step, const torch::Tensor& values, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rpc_mu_);
  absl::Status UploadOnceLocked(int64_t step, const torch::Tensor& flat, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rpc_mu_);
  absl::StatusOr<torch::Tensor> PredictLocked(int64_t step, int k, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rpc_mu_);
  absl::StatusOr<torch::Tensor> NowcastLocked(const torch::Tensor& states, int k, int64_t step,
                                              absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rpc_mu_);
  void Log(const std::string& line) const;
  const std::string& AddressLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(rpc_mu_);
  // Deadline and bearer token of a call.
  void Prepare(grpc::ClientContext* ctx, absl::Time deadline) const;
  // Expands options_.address into replicas_ (in the job's order) and starts at the first.
  void ResolveLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(rpc_mu_);
  // ResolveLocked when the address has names and (`force` or the interval passed) and the job
  // is not registered.
  void MaybeResolveLocked(bool force) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rpc_mu_);
  // Connects to replicas_[replica_].
  void ConnectLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(rpc_mu_);
  // Moves the job to the next replica (forgetting its registration there); false when there is
  // only one replica or `tries` replicas were already tried.
  bool FailOverLocked(const absl::Status& why, int tries) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rpc_mu_);
  absl::Status RegisterOnceLocked(absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rpc_mu_);

  const RemoteNowcasterOptions options_;
  const int64_t num_params_;
  const absl::StatusOr<ChannelSecurity> security_;
  const bool has_host_names_;  // options_.address names hosts: re-resolve them

  mutable absl::Mutex rpc_mu_;
  std::vector<ReplicaAddress> replicas_ ABSL_GUARDED_BY(rpc_mu_);  // in the job's order
  absl::Time next_resolve_ ABSL_GUARDED_BY(rpc_mu_) = absl::InfinitePast();
  size_t replica_ ABSL_GUARDED_BY(rpc_mu_) = 0;
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(rpc_mu_);
  std::unique_ptr<v1::Nowcaster::StubInterface> stub_ ABSL_GUARDED_BY(rpc_mu_);

  mutable absl::Mutex queue_mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool busy_ ABSL_GUARDED_BY(queue_mu_) = false;
  bool stop_ ABSL_GUARDED_BY(queue_mu_) = false;
  int64_t nino_step_ ABSL_GUARDED_BY(queue_mu_) = -1;
  int64_t dropped_ ABSL_GUARDED_BY(queue_mu_) = 0;
  // Uploaded snapshot buffers kept for the next StateRecorded (at most 2).
  std::vector<torch::Tensor> free_ ABSL_GUARDED_BY(queue_mu_);
  void RecycleLocked(torch::Tensor buffer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);

  int incarnation_ ABSL_GUARDED_BY(rpc_mu_) = 0;  // job id suffix after a re-registration
  std::string current_job_id_ ABSL_GUARDED_BY(rpc_mu_);
  std::string token_ ABSL_GUARDED_BY(rpc_mu_);  // empty: not registered
  int64_t max_chunk_bytes_ ABSL_GUARDED_BY(rpc_mu_) = 1 << 20;
  std::set<int64_t> held_steps_ ABSL_GUARDED_BY(rpc_mu_);  // snapshots the server got from us
  Stats stats_ ABSL_GUARDED_BY(rpc_mu_);
  std::atomic<int64_t> failures_without_rpc_lock_{0};  // nowcasts that timed out waiting on uploads

  std::thread worker_;
};

}  // namespace nino::client

#endif  // NINO_CLIENT_REMOTE_NOWCASTER_H_
