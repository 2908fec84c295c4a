// bench_stream: how fast does a parameter snapshot travel to the nowcaster over loopback?
// Streams a float32 snapshot (default 100 MB) with PutState (nino.v1, chunks + CRC-32C) into an
// in-process NowcasterServer holding a registered job, and copies the same bytes over a plain
// TCP socket; prints MB/s of each (best and median of --repeat runs). Two PutState clients:
// the generated protobuf stub (what the trainer and any other gRPC client send) and the
// zero-copy frames of proto/chunk_codec.h; the server side is the same. The job's graph is never
// built (a 1 GB layer's graph would not fit this machine): the bench holds the builder and closes
// the job before releasing it.
//
// --transports=plaintext,tls,mtls also streams with the protobuf stub over TLS and over mutual
// TLS with a bearer token, each against its own in-process server (certificates made with the
// openssl tool in a temporary folder), beside the plaintext rows of the same run.
//
//   bazel build //tools:bench_stream
//   ./bazel-bin/tools/bench_stream --mb 100 --repeat 8
//   ./bazel-bin/tools/bench_stream --mb 100 --repeat 5 --transports=plaintext,tls,mtls
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "common/runtime/allocator.h"
#include "nino/v1/nowcaster.grpc.pb.h"
#include "nowcaster/nowcaster_server.h"
#include "proto/chunk_codec.h"
#include "proto/wire.h"
#include "tests/testing/test_certs.h"

ABSL_FLAG(double, mb, 100, "snapshot size in MB (10^6 bytes), rounded to a square MLP layer");
ABSL_FLAG(int, repeat, 3, "timed runs of each transfer");
ABSL_FLAG(std::string, only, "",
          "zerocopy, protobuf or tcp: run one transfer only (for profiling)");
ABSL_FLAG(bool, tuned_http2, true,
          "client side: the trainer's HTTP/2 frame and window settings (false: gRPC defaults)");
ABSL_FLAG(int64_t, chunk_bytes, 1 << 20, "PutState chunk payload (the server caps it)");
ABSL_FLAG(std::string, transports, "plaintext",
          "plaintext, tls (server certificate), mtls (client certificate + bearer token): "
          "the protobuf-stub PutState of a running job over each, in this run");
ABSL_FLAG(
    std::string, nino_ckpt, "../shared/reference/checkpoints/nino_mlp.pt",
    "NiNo checkpoint the in-process server loads (nino_mlp: no positional encoding to build)");

namespace {

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Result {
  double best = 0, median = 0;
};
Result Summarise(std::vector<double> mbps) {
  std::sort(mbps.begin(), mbps.end());
  return {mbps.back(), mbps[mbps.size() / 2]};
}

// One plain TCP copy of `payload` to a receiver thread over loopback (until its 1-byte ack),
// into `sink` (payload.size() bytes): a fresh buffer, or one already written (faulted in).
double TcpCopySeconds(const std::string& payload, std::vector<char>& sink) {
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(lfd, 1) != 0) {
    std::perror("tcp listen");
    std::exit(1);
  }
  socklen_t len = sizeof a;
  getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  std::thread receiver([&] {
    int fd = accept(lfd, nullptr, nullptr);
    size_t got = 0;
    while (got < sink.size()) {
      const ssize_t n = read(fd, sink.data() + got, sink.size() - got);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    const char ack = got == sink.size() ? 1 : 0;
    (void)!write(fd, &ack, 1);
    close(fd);
  });
  const auto t0 = std::chrono::steady_clock::now();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("tcp connect");
    std::exit(1);
  }
  size_t sent = 0;
  while (sent < payload.size()) {
    const ssize_t n = write(fd, payload.data() + sent, payload.size() - sent);
    if (n <= 0) {
      std::perror("tcp write");
      std::exit(1);
    }
    sent += static_cast<size_t>(n);
  }
  char ack = 0;
  if (read(fd, &ack, 1) != 1 || ack != 1) {
    std::fprintf(stderr, "tcp: the receiver did not get every byte\n");
    std::exit(1);
  }
  const double s = Seconds(t0);
  close(fd);
  receiver.join();
  close(lfd);
  return s;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// What a secured PutState measurement needs from main().
struct SecureRun {
  nino::nowcaster::NowcasterOptions options;  // the plaintext server's, builder hook excluded
  nino::v1::RegisterJobRequest reg;
  absl::string_view payload;
  std::vector<nino::wire::ChunkSpan> spans;
  int64_t bytes = 0;
  int repeat = 1;
  bool tuned_http2 = true;
};

// The protobuf-stub PutState of a running job (after 6 uploads that fill its buffers) over TLS
// ("tls") or mutual TLS with a bearer token ("mtls"), against a server of its own; MB/s.
Result SecurePutState(const std::string& transport, const SecureRun& run) {
  char dir_template[] = "/tmp/bench_stream_tls_XXXXXX";
  const char* dir = mkdtemp(dir_template);
  auto certs = dir ? nino::testing::MakeTestCerts(dir) : absl::InternalError("mkdtemp failed");
  const std::string token = "bench-token-0123456789abcdef";
  if (!certs.ok() ||
      !nino::testing::WriteTestFile(std::string(dir) + "/tokens", token + " bench\n")) {
    std::fprintf(stderr, "certificates: %s\n", certs.status().ToString().c_str());
    std::exit(1);
  }
  nino::nowcaster::NowcasterOptions so = run.options;
  so.tls_cert_file = certs->server_cert;
  so.tls_key_file = certs->server_key;
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFile(certs->ca_cert);
  const bool mutual = transport == "mtls";
  if (mutual) {
    so.tls_client_ca_file = certs->ca_cert;
    so.auth_tokens_file = std::string(dir) + "/tokens";
    ssl.pem_cert_chain = ReadFile(certs->client_cert);
    ssl.pem_private_key = ReadFile(certs->client_key);
  }
  auto hold_builder = std::make_shared<absl::Notification>();
  so.before_graph_build_for_testing = [hold_builder] { hold_builder->WaitForNotification(); };
  auto server = nino::nowcaster::NowcasterServer::BuildAndStart(so);
  if (!server.ok()) {
    std::fprintf(stderr, "%s nowcaster: %s\n", transport.c_str(),
                 server.status().ToString().c_str());
    std::exit(1);
  }
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(16 << 20);
  if (run.tuned_http2) {
    args.SetInt(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, nino::wire::kHttp2MaxFrameBytes);
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, nino::wire::kHttp2LookaheadBytes);
  }
  auto stub = nino::v1::Nowcaster::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", (*server)->port()), grpc::SslCredentials(ssl), args));
  auto prepare = [&](grpc::ClientContext* ctx) {
    if (mutual) ctx->AddMetadata("authorization", "Bearer " + token);
  };
  nino::v1::RegisterJobResponse reg_resp;
  {
    grpc::ClientContext ctx;
    prepare(&ctx);
    grpc::Status s = stub->RegisterJob(&ctx, run.reg, &reg_resp);
    if (!s.ok()) {
      std::fprintf(stderr, "%s RegisterJob: %s\n", transport.c_str(), s.error_message().c_str());
      std::exit(1);
    }
  }
  const std::string job = run.reg.job_id();
  std::vector<double> mbps;
  for (int r = 0; r < 6 + run.repeat; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    grpc::ClientContext ctx;
    prepare(&ctx);
    nino::v1::PutStateResponse resp;
    auto writer = stub->PutState(&ctx, &resp);
    for (const auto& span : run.spans) {
      if (!writer->Write(nino::wire::MakeStateChunk(job, reg_resp.job_token(), 200 * (r + 1),
                                                    run.payload, span))) {
        break;
      }
    }
    writer->WritesDone();
    const grpc::Status s = writer->Finish();
    if (!s.ok() || resp.bytes_received() != run.bytes) {
      std::fprintf(stderr, "%s PutState: %s\n", transport.c_str(), s.error_message().c_str());
      std::exit(1);
    }
    if (r >= 6) mbps.push_back(run.bytes / 1e6 / Seconds(t0));
  }
  {
    grpc::ClientContext ctx;
    prepare(&ctx);
    nino::v1::JobRef ref;
    ref.set_job_id(job);
    ref.set_job_token(reg_resp.job_token());
    nino::v1::CloseJobResponse closed;
    (void)stub->CloseJob(&ctx, ref, &closed);
  }
  hold_builder->Notify();
  (*server)->Shutdown();
  std::filesystem::remove_all(dir);
  return Summarise(mbps);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("PutState streaming vs plain TCP over loopback (MB/s).");
  absl::ParseCommandLine(argc, argv);
  nino::runtime::TuneAllocatorForTensors();  // as nino_nowcaster and nino_train do
  const int repeat = std::max(1, absl::GetFlag(FLAGS_repeat));
  // One square layer n x n plus its bias: ~mb * 10^6 bytes.
  const int64_t n =
      std::max<int64_t>(8, static_cast<int64_t>(std::sqrt(absl::GetFlag(FLAGS_mb) * 1e6 / 4.0)));
  const int64_t num_params = n * n + n;
  const int64_t bytes = 4 * num_params;

  nino::nowcaster::NowcasterOptions so;
  so.address = "127.0.0.1:0";
  so.metrics_port = 0;
  so.threads = 1;
  so.allow_download = false;
  so.models = {{"bench", absl::GetFlag(FLAGS_nino_ckpt)}};
  // Admission reserves the job's whole estimated footprint (engine included); this benchmark
  // holds the graph build, so only the snapshot buffers are ever allocated.
  so.memory_budget_bytes = int64_t{1} << 50;
  so.max_chunk_bytes = std::min<int64_t>(so.max_chunk_bytes, absl::GetFlag(FLAGS_chunk_bytes));
  auto hold_builder = std::make_shared<absl::Notification>();
  so.before_graph_build_for_testing = [hold_builder] { hold_builder->WaitForNotification(); };
  so.register_wait_ms = 0;
  auto server = nino::nowcaster::NowcasterServer::BuildAndStart(so);
  if (!server.ok()) {
    std::fprintf(stderr, "cannot start the nowcaster: %s\n", server.status().ToString().c_str());
    return 1;
  }
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(16 << 20);
  if (absl::GetFlag(FLAGS_tuned_http2)) {
    args.SetInt(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, nino::wire::kHttp2MaxFrameBytes);
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, nino::wire::kHttp2LookaheadBytes);
  }
  auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                                           grpc::InsecureChannelCredentials(), args);
  auto stub = nino::v1::Nowcaster::NewStub(channel);

  nino::v1::RegisterJobRequest reg;
  reg.set_job_id("bench-stream");
  auto* w = reg.add_params();
  w->set_name("fc.0.weight");
  w->add_shape(n);
  w->add_shape(n);
  auto* b = reg.add_params();
  b->set_name("fc.0.bias");
  b->add_shape(n);
  reg.set_period(1000);
  reg.set_ctx(5);
  reg.set_max_train_steps(10000);
  nino::v1::RegisterJobResponse reg_resp;
  {
    const auto t0 = std::chrono::steady_clock::now();
    grpc::ClientContext ctx;
    grpc::Status s = stub->RegisterJob(&ctx, reg, &reg_resp);
    if (!s.ok()) {
      std::fprintf(stderr, "RegisterJob: %s\n", s.error_message().c_str());
      return 1;
    }
    std::printf("registered a %lld-parameter job (%.1f MB snapshots) in %.1f s\n",
                static_cast<long long>(num_params), bytes / 1e6, Seconds(t0));
  }
  const int64_t chunk =
      std::min<int64_t>(absl::GetFlag(FLAGS_chunk_bytes), reg_resp.max_chunk_bytes());

  auto values = std::make_shared<std::vector<float>>(num_params);
  for (int64_t i = 0; i < num_params; ++i) (*values)[i] = static_cast<float>((i % 1000) * 1e-3);
  const absl::string_view payload = nino::wire::AsBytes(*values);
  auto spans = nino::wire::PlanChunks(bytes, chunk);
  if (!spans.ok()) {
    std::fprintf(stderr, "%s\n", spans.status().ToString().c_str());
    return 1;
  }

  const std::string only = absl::GetFlag(FLAGS_only);
  int64_t step = 0;
  // One PutState of the snapshot; MB/s.
  auto put = [&](bool zero_copy) -> double {
    step += 200;
    const auto t0 = std::chrono::steady_clock::now();
    grpc::ClientContext ctx;
    nino::v1::PutStateResponse resp;
    grpc::Status s;
    if (zero_copy) {
      s = nino::wire::PutStateZeroCopy(channel.get(), &ctx, "bench-stream", reg_resp.job_token(),
                                       step, payload, chunk, values, &resp);
    } else {
      auto writer = stub->PutState(&ctx, &resp);
      for (const auto& span : *spans) {
        if (!writer->Write(nino::wire::MakeStateChunk("bench-stream", reg_resp.job_token(), step,
                                                      payload, span))) {
          break;
        }
      }
      writer->WritesDone();
      s = writer->Finish();
    }
    const double sec = Seconds(t0);
    if (!s.ok() || resp.bytes_received() != bytes) {
      std::fprintf(stderr, "PutState: %s (%lld bytes acknowledged)\n", s.error_message().c_str(),
                   static_cast<long long>(resp.bytes_received()));
      std::exit(1);
    }
    return bytes / 1e6 / sec;
  };
  // The server recycles a job's snapshot buffers once it holds ctx = 5: the first 6 uploads of
  // a job fill fresh memory, later ones (a running job) reuse it. Report both.
  std::vector<double> first_mbps, zc_mbps, pb_mbps, tcp_mbps, tcp_fresh_mbps;
  if (only.empty() || only == "zerocopy" || only == "protobuf") {
    for (int r = 0; r < 6; ++r) first_mbps.push_back(put(only != "protobuf"));
  }
  for (int r = 0; r < repeat; ++r) {
    if (only.empty() || only == "zerocopy") zc_mbps.push_back(put(true));
    if (only.empty() || only == "protobuf") pb_mbps.push_back(put(false));
  }
  const bool run_tcp = only.empty() || only == "tcp";
  const std::string copy(run_tcp ? payload : absl::string_view());
  std::vector<char> reused(copy.size(), 1);
  for (int r = 0; r < (run_tcp ? repeat + 1 : 0); ++r) {
    double sec = TcpCopySeconds(copy, reused);
    if (r > 0) tcp_mbps.push_back(bytes / 1e6 / sec);
    std::vector<char> fresh(copy.size());  // untouched pages: the kernel faults them in
    sec = TcpCopySeconds(copy, fresh);
    if (r > 0) tcp_fresh_mbps.push_back(bytes / 1e6 / sec);
  }
  for (auto* v : {&first_mbps, &zc_mbps, &pb_mbps, &tcp_mbps, &tcp_fresh_mbps}) {
    if (v->empty()) v->push_back(0);
  }
  const Result f = Summarise(first_mbps), z = Summarise(zc_mbps), p = Summarise(pb_mbps),
               t = Summarise(tcp_mbps), tf = Summarise(tcp_fresh_mbps);
  std::printf("snapshot %.1f MB, %zu PutState chunks of %lld bytes, %d runs each\n", bytes / 1e6,
              spans->size(), static_cast<long long>(chunk), repeat);
  auto row = [](const char* what, const Result& r) {
    std::printf("%-54s best %.0f MB/s, median %.0f MB/s\n", what, r.best, r.median);
  };
  row("PutState, first 6 uploads of the job (fresh buffers):", f);
  row("PutState, zero-copy client, running job:", z);
  row("PutState, protobuf stub client (trainer), running job:", p);
  row("plain TCP copy into a reused buffer:", t);
  row("plain TCP copy into a fresh buffer:", tf);
  if (t.median > 0 && tf.median > 0) {
    std::printf(
        "PutState / TCP (medians, like with like): running job zero-copy %.2f, protobuf "
        "%.2f (vs reused buffer); first uploads %.2f (vs fresh buffer)\n",
        z.median / t.median, p.median / t.median, f.median / tf.median);
  }
  {
    grpc::ClientContext ctx;
    nino::v1::JobRef ref;
    ref.set_job_id("bench-stream");
    ref.set_job_token(reg_resp.job_token());
    nino::v1::CloseJobResponse closed;
    (void)stub->CloseJob(&ctx, ref, &closed);
  }
  hold_builder->Notify();  // the closed job's build is skipped
  (*server)->Shutdown();
  SecureRun secure;
  secure.options = so;
  secure.options.before_graph_build_for_testing = nullptr;
  secure.reg = reg;
  secure.payload = payload;
  secure.spans = *spans;
  secure.bytes = bytes;
  secure.repeat = repeat;
  secure.tuned_http2 = absl::GetFlag(FLAGS_tuned_http2);
  for (absl::string_view t :
       absl::StrSplit(absl::GetFlag(FLAGS_transports), ',', absl::SkipWhitespace())) {
    if (t == "plaintext") continue;  // the rows above
    if (t != "tls" && t != "mtls") {
      std::fprintf(stderr, "--transports: unknown '%s' (plaintext, tls, mtls)\n",
                   std::string(t).c_str());
      return 2;
    }
    const Result r = SecurePutState(std::string(t), secure);
    row(t == "tls" ? "PutState, protobuf stub, running job, TLS:"
                   : "PutState, protobuf stub, running job, mTLS + token:",
        r);
    if (p.median > 0)
      std::printf("  %s / plaintext protobuf (medians): %.2f\n", std::string(t).c_str(),
                  r.median / p.median);
  }
  return 0;
}
