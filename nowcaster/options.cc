#include "nowcaster/options.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace nino::nowcaster {

absl::Status ValidateOptions(const NowcasterOptions& o) {
  auto bad = [](absl::string_view field, auto value, absl::string_view expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("option ", field, " = ", value, ": expected ", expected));
  };
  const size_t colon = o.address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(o.address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return bad("address", o.address, "host:port with port 0..65535");
  }
  if (o.metrics_port < kAnyPort || o.metrics_port > 65535) {
    return bad("metrics_port", o.metrics_port, "0 (off), -1 (any) or 1..65535");
  }
  if (o.metrics_port != 0 && o.metrics_host.empty()) {
    return bad("metrics_host", "''", "a host to bind /metrics to");
  }
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return bad("tls_cert/tls_key", o.tls_cert_file.empty() ? "''" : o.tls_cert_file,
               "both a certificate and its key, or neither");
  }
  if (!o.tls_client_ca_file.empty() && o.tls_cert_file.empty()) {
    return bad("tls_client_ca", o.tls_client_ca_file, "TLS as well (--tls_cert, --tls_key)");
  }
  if (!o.metrics_token_file.empty() && o.metrics_port == 0) {
    return bad("metrics_token_file", o.metrics_token_file, "a metrics port (--metrics_port)");
  }
  if (o.device != "cpu" && o.device != "cuda" && !absl::StartsWith(o.device, "cuda:")) {
    return bad("device", o.device, "cpu, cuda or cuda:N");
  }
  if (o.memory_budget_bytes < 1) return bad("memory_budget_bytes", o.memory_budget_bytes, ">= 1");
  if (o.queue_length < 1) return bad("queue_length", o.queue_length, ">= 1");
  if (o.workers < 1) return bad("workers", o.workers, ">= 1");
  if (o.register_wait_ms < 0) return bad("register_wait_ms", o.register_wait_ms, ">= 0");
  if (o.max_pending_builds < 1) return bad("max_pending_builds", o.max_pending_builds, ">= 1");
  if (o.threads < 0) return bad("threads", o.threads, ">= 0");
  if (o.max_rpc_threads < 0) return bad("max_rpc_threads", o.max_rpc_threads, ">= 0");
  if (o.max_chunk_bytes < 1) return bad("max_chunk_bytes", o.max_chunk_bytes, ">= 1");
  if (o.max_message_bytes > (int64_t{1} << 31) - 1) {
    return bad("max_message_bytes", o.max_message_bytes, "< 2 GiB (protobuf's limit)");
  }
  if (o.max_message_bytes < o.max_chunk_bytes + kChunkHeaderBytes) {
    return bad("max_message_bytes", o.max_message_bytes,
               absl::StrCat(">= max_chunk_bytes + ", kChunkHeaderBytes, " = ",
                            o.max_chunk_bytes + kChunkHeaderBytes));
  }
  if (o.lame_duck_ms < 0) return bad("lame_duck_ms", o.lame_duck_ms, ">= 0");
  if (o.shutdown_deadline_ms < 0) {
    return bad("shutdown_deadline_ms", o.shutdown_deadline_ms, ">= 0");
  }
  std::set<std::string> names;
  for (const ModelSpec& m : o.models) {
    if (m.name.empty() || m.path.empty()) return bad("models", m.name + "=" + m.path, "name=path");
    if (!names.insert(m.name).second) return bad("models", m.name, "each name once");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ModelSpec>> ParseModelSpecs(const std::vector<std::string>& items) {
  std::vector<ModelSpec> specs;
  std::set<std::string> names;
  for (const std::string& item : items) {
    for (absl::string_view part : absl::StrSplit(item, ',', absl::SkipWhitespace())) {
      ModelSpec spec;
      const size_t eq = part.find('=');
      if (eq == absl::string_view::npos) {
        spec.path = std::string(part);
        absl::string_view base = part.substr(part.rfind('/') + 1);  // npos + 1 == 0
        spec.name = std::string(base.substr(0, base.rfind('.')));
      } else {
        spec.name = std::string(part.substr(0, eq));
        spec.path = std::string(part.substr(eq + 1));
      }
      if (spec.name.empty() || spec.path.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--nino_model '", part, "': expected name=path or a path"));
      }
      if (!names.insert(spec.name).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("--nino_model: model name '", spec.name, "' given twice"));
      }
      specs.push_back(std::move(spec));
    }
  }
  return specs;
}

}  // namespace nino::nowcaster
