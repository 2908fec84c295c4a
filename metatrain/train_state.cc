#include "metatrain/train_state.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/status/torch_guard.h"

namespace nino::metatrain {
namespace {

absl::Status FsyncPath(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot open ", path, " to fsync"));
  const int rc = ::fsync(fd);
  ::close(fd);
  return rc == 0 ? absl::OkStatus() : absl::UnavailableError(absl::StrCat("fsync ", path));
}

}  // namespace

absl::Status SaveTrainState(const std::string& path, torch::nn::Module& model,
                            torch::optim::Optimizer& optimizer, const TrainProgress& progress) {
  const std::filesystem::path target(path);
  const std::string tmp = path + ".tmp";
  try {
    torch::serialize::OutputArchive ar, model_ar, opt_ar;
    model.save(model_ar);
    optimizer.save(opt_ar);
    ar.write("model", model_ar);
    ar.write("optimizer", opt_ar);
    ar.write("step", torch::tensor(progress.step, torch::kInt64));
    ar.write("wall_seconds", torch::tensor(progress.wall_seconds, torch::kFloat64));
    ar.write("rollbacks", torch::tensor(progress.rollbacks, torch::kInt64));
    ar.write("rng", c10::IValue(progress.rng));
    ar.write("config_json", c10::IValue(progress.config_json));
    ar.save_to(tmp);
  } catch (...) {
    std::remove(tmp.c_str());
    return StatusFromCurrentException(absl::StrCat("writing ", tmp),
                                      absl::StatusCode::kUnavailable);
  }
  NINO_RETURN_IF_ERROR(FsyncPath(tmp, false));
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp, " to ", path));
  const std::string dir =
      target.has_parent_path() ? target.parent_path().string() : std::string(".");
  return FsyncPath(dir, true);
}

absl::Status LoadTrainState(const std::string& path, torch::nn::Module& model,
                            torch::optim::Optimizer& optimizer, TrainProgress* progress) {
  try {
    torch::serialize::InputArchive ar, model_ar, opt_ar;
    ar.load_from(path);
    ar.read("model", model_ar);
    ar.read("optimizer", opt_ar);
    model.load(model_ar);
    optimizer.load(opt_ar);
    torch::Tensor t;
    ar.read("step", t);
    progress->step = t.item<int64_t>();
    ar.read("wall_seconds", t);
    progress->wall_seconds = t.item<double>();
    ar.read("rollbacks", t);
    progress->rollbacks = t.item<int64_t>();
    c10::IValue v;
    ar.read("rng", v);
    progress->rng = v.toStringRef();
    ar.read("config_json", v);
    progress->config_json = v.toStringRef();
  } catch (...) {
    return StatusFromCurrentException(path, absl::StatusCode::kDataLoss);
  }
  return absl::OkStatus();
}

}  // namespace nino::metatrain
