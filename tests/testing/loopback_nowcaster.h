// Part of the test library (tests/testing): an in-process NowcasterServer on 127.0.0.1, with
// options for tests (one LibTorch thread, a short shutdown deadline) and a synthetic NiNo model
// unless the test names its own, and an insecure channel and nino.v1 stub to it.
//
//   nowcaster::NowcasterOptions o = LoopbackNowcasterOptions(
//       {{"nino_no_posw", SharedSyntheticCheckpoint(SyntheticNiNo::kGnn)}});
//   o.workers = 1;                                   // any other knob
//   auto server = StartLoopbackNowcaster(o);          // ASSERT_TRUE(server.ok())
//   auto stub = nino::v1::Nowcaster::NewStub(LoopbackChannel((*server)->port()));
#ifndef NINO_TESTS_TESTING_LOOPBACK_NOWCASTER_H_
#define NINO_TESTS_TESTING_LOOPBACK_NOWCASTER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "nowcaster/nowcaster_server.h"
#include "nowcaster/options.h"

namespace nino::testing {

// Test defaults: address 127.0.0.1:0 (a free port), threads 1, shutdown_deadline_ms 1000, no
// /metrics, and `models` (empty: "nino_mlp" = the shared synthetic WNN+ checkpoint).
nowcaster::NowcasterOptions LoopbackNowcasterOptions(std::vector<nowcaster::ModelSpec> models = {});

// BuildAndStart(options); INVALID_ARGUMENT if the address is not on 127.0.0.1 (tests never
// listen elsewhere).
absl::StatusOr<std::unique_ptr<nowcaster::NowcasterServer>> StartLoopbackNowcaster(
    nowcaster::NowcasterOptions options);

// An insecure channel to 127.0.0.1:<port> that accepts messages of up to 16 MiB.
std::shared_ptr<grpc::Channel> LoopbackChannel(int port);

}  // namespace nino::testing

#endif  // NINO_TESTS_TESTING_LOOPBACK_NOWCASTER_H_
