#include "trainer/train_options.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace nino::trainer {

absl::Status ValidateTrainOptions(const TrainOptions& o) {
  auto bad = [](const std::string& m) { return absl::InvalidArgumentError(m); };
  if (o.steps <= 0) return bad(absl::StrCat("--steps must be > 0, got ", o.steps));
  if (o.lr < 0) return bad(absl::StrCat("--lr must be > 0, got ", o.lr));
  if (o.batch < 0) return bad(absl::StrCat("--batch must be > 0, got ", o.batch));
  if (o.ctx < 1 || o.period < o.ctx || o.period % o.ctx != 0) {
    return bad(absl::StrCat("--period must be a positive multiple of --ctx (", o.ctx, "), got ",
                            o.period));
  }
  if (o.k_decay <= 0) return bad("--k_decay must be > 0");
  if (o.nino_step_search.size() > 8) return bad("--nino_step_search: at most 8 scales");
  for (double s : o.nino_step_search) {
    if (!(s >= 0) || !std::isfinite(s))
      return bad("--nino_step_search: scales must be finite and >= 0");
  }
  if (o.eval_every < 0 || o.log_every < 0 || o.checkpoint_every < 0) {
    return bad("--eval_every, --log_every and --checkpoint_every must be >= 0");
  }
  if (o.out_dir.empty()) return bad("--out_dir is required");
  if (o.optimizer != "adamw" && o.optimizer != "sgd") {
    return bad(absl::StrCat("--optimizer must be adamw or sgd, got '", o.optimizer, "'"));
  }
  if (o.threads < 0) return bad("--threads must be >= 0");
  if (o.record_every < 0)
    return bad(absl::StrCat("--record_every must be >= 0, got ", o.record_every));
  // Other ranks wait for rank 0's nowcast inside a collective, which times out after 120 s.
  if (o.nowcaster.empty() && !(o.nowcaster_tls_ca + o.nowcaster_tls_cert + o.nowcaster_tls_key +
                               o.nowcaster_tls_server_name + o.auth_token_file)
                                  .empty()) {
    return absl::InvalidArgumentError(
        "--nowcaster_tls_* and --auth_token_file need --nowcaster (they secure its connection)");
  }
  if (!o.nowcaster.empty() && (o.nowcaster_timeout_ms <= 0 || o.nowcaster_timeout_ms > 100000)) {
    return bad(
        absl::StrCat("--nowcaster_timeout_ms must be in 1..100000, got ", o.nowcaster_timeout_ms));
  }
  return absl::OkStatus();
}

bool UsesNino(const TrainOptions& o) {
  return !o.nowcaster.empty() || (!o.nino_ckpt.empty() && o.nino_ckpt != "none");
}

}  // namespace nino::trainer
