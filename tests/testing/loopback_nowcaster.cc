#include "tests/testing/loopback_nowcaster.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/testing/synthetic_checkpoint.h"
#include "tests/testing/test_util.h"

namespace nino::testing {

nowcaster::NowcasterOptions LoopbackNowcasterOptions(std::vector<nowcaster::ModelSpec> models) {
  nowcaster::NowcasterOptions o;
  o.address = "127.0.0.1:0";
  o.threads = 1;
  o.shutdown_deadline_ms = 1000;
  o.metrics_port = 0;
  if (models.empty())
    models.push_back({"nino_mlp", SharedSyntheticCheckpoint(SyntheticNiNo::kWnn)});
  o.models = std::move(models);
  return o;
}

absl::StatusOr<std::unique_ptr<nowcaster::NowcasterServer>> StartLoopbackNowcaster(
    nowcaster::NowcasterOptions options) {
  if (!absl::StartsWith(options.address, "127.0.0.1:")) {
    return absl::InvalidArgumentError(
        absl::StrCat("a test nowcaster listens on 127.0.0.1 only, not ", options.address));
  }
  return nowcaster::NowcasterServer::BuildAndStart(std::move(options));
}

std::shared_ptr<grpc::Channel> LoopbackChannel(int port) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  return grpc::CreateCustomChannel(LoopbackAddress(port), grpc::InsecureChannelCredentials(), args);
}

}  // namespace nino::testing
