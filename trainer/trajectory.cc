#include "trainer/trajectory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/env/write_file_atomically.h"
#include "common/io/checkpoint_locator.h"

namespace nino::trainer {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string StatesPath(const std::string& dir) { return (fs::path(dir) / "states.f16").string(); }
std::string ManifestPath(const std::string& dir) {
  return (fs::path(dir) / "manifest.json").string();
}

absl::StatusOr<json> ReadManifest(const std::string& dir) {
  std::ifstream in(ManifestPath(dir));
  if (!in) return absl::NotFoundError(absl::StrCat(ManifestPath(dir), " is missing"));
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("format", "") != kTrajectoryFormat) {
    return absl::DataLossError(
        absl::StrCat(ManifestPath(dir), " is not a ", kTrajectoryFormat, " manifest"));
  }
  for (const char* key : {"num_params", "steps", "task", "seed"}) {
    if (!j.contains(key))
      return absl::DataLossError(absl::StrCat(ManifestPath(dir), ": '", key, "' is missing"));
  }
  if (!j["num_params"].is_number_integer() || !j["steps"].is_array()) {
    return absl::DataLossError(
        absl::StrCat(ManifestPath(dir), ": 'num_params' or 'steps' has the wrong type"));
  }
  return j;
}

// Rows of an existing dataset of the same run that are at or before resume_step.
absl::StatusOr<std::vector<int64_t>> KeptSteps(const std::string& dir, const TrajectoryInfo& info,
                                               int64_t num_params, int64_t resume_step) {
  auto m = ReadManifest(dir);
  if (!m.ok()) return m.status();
  if ((*m)["task"] != info.task || (*m)["seed"] != info.seed || (*m)["num_params"] != num_params) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " holds the trajectory of another run (task ", (*m)["task"].dump(),
                     ", seed ", (*m)["seed"].dump(), ", ", (*m)["num_params"].dump(), " params)"));
  }
  std::vector<int64_t> kept;
  for (const auto& s : (*m)["steps"]) {
    if (s.is_number_integer() && s.get<int64_t>() <= resume_step) kept.push_back(s.get<int64_t>());
  }
  return kept;
}

}  // namespace

TrajectoryWriter::TrajectoryWriter(Env* env, std::string dir, TrajectoryInfo info)
    : env_(env), dir_(std::move(dir)), info_(std::move(info)) {
  for (const auto& [name, shape] : info_.params) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    num_params_ += n;
  }
}

absl::StatusOr<std::unique_ptr<TrajectoryWriter>> TrajectoryWriter::Open(const std::string& dir,
                                                                         TrajectoryInfo info,
                                                                         int64_t resume_step) {
  return Open(Env::Default(), dir, std::move(info), resume_step);
}

absl::StatusOr<std::unique_ptr<TrajectoryWriter>> TrajectoryWriter::Open(Env* env,
                                                                         const std::string& dir,
                                                                         TrajectoryInfo info,
                                                                         int64_t resume_step) {
  std::unique_ptr<TrajectoryWriter> w(new TrajectoryWriter(env, dir, std::move(info)));
  if (w->info_.every <= 0) return absl::InvalidArgumentError("trajectory: every must be > 0");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return absl::PermissionDeniedError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  const bool reopen = resume_step >= 0 && env->FileExists(ManifestPath(dir));
  if (reopen) {
    auto kept = KeptSteps(dir, w->info_, w->num_params_, resume_step);
    if (!kept.ok()) return kept.status();
    w->steps_ = std::move(*kept);
    const auto bytes = static_cast<uintmax_t>(w->rows() * w->num_params_ * 2);
    if (!fs::exists(StatesPath(dir)) || fs::file_size(StatesPath(dir)) < bytes) {
      return absl::DataLossError(
          absl::StrCat(StatesPath(dir), " is shorter than its manifest says"));
    }
    fs::resize_file(StatesPath(dir), bytes, ec);
    if (ec)
      return absl::UnavailableError(
          absl::StrCat("cannot truncate ", StatesPath(dir), ": ", ec.message()));
  } else if (env->FileExists(ManifestPath(dir))) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " already holds a trajectory (a new run needs a new folder)"));
  }
  auto states =
      reopen ? env->NewAppendableFile(StatesPath(dir)) : env->NewWritableFile(StatesPath(dir));
  if (!states.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot write ", StatesPath(dir), ": ", states.status().message()));
  }
  w->states_ = std::move(*states);
  if (absl::Status s = w->Flush(); !s.ok()) return s;
  return w;
}

absl::Status TrajectoryWriter::Append(int64_t step, const torch::Tensor& flat) {
  if (!flat.defined() || flat.numel() != num_params_) {
    return absl::InvalidArgumentError(
        absl::StrCat("trajectory row of step ", step, " must have ", num_params_, " values"));
  }
  if (!steps_.empty() && step <= steps_.back()) {
    return absl::InvalidArgumentError(
        absl::StrCat("trajectory step ", step, " after step ", steps_.back()));
  }
  const torch::Tensor half = flat.detach().reshape({-1}).to(torch::kCPU, torch::kHalf).contiguous();
  const absl::string_view bytes(static_cast<const char*>(half.data_ptr()), 2 * num_params_);
  if (absl::Status s = states_->Append(bytes); !s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("writing ", StatesPath(dir_), " failed: ", s.message()));
  }
  steps_.push_back(step);
  return absl::OkStatus();
}

absl::Status TrajectoryWriter::Flush() {
  if (absl::Status s = states_->Sync(); !s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("flushing ", StatesPath(dir_), " failed: ", s.message()));
  }
  return WriteManifest(false, json::object(), "");
}

absl::Status TrajectoryWriter::Finish(const json& metrics) {
  if (absl::Status s = Flush(); !s.ok()) return s;
  auto sha = io::Sha256File(StatesPath(dir_));
  if (!sha.ok()) return sha.status();
  return WriteManifest(true, metrics, *sha);
}

absl::Status TrajectoryWriter::WriteManifest(bool complete, const json& metrics,
                                             const std::string& sha) {
  json params = json::array();
  for (const auto& [name, shape] : info_.params)
    params.push_back({{"name", name}, {"shape", shape}});
  json m = {{"format", kTrajectoryFormat},
            {"task", info_.task},
            {"seed", info_.seed},
            {"lr", info_.lr},
            {"optimizer", info_.optimizer},
            {"max_steps", info_.max_steps},
            {"every", info_.every},
            {"num_params", num_params_},
            {"params", params},
            {"graph",
             {{"kind", GraphKindName(info_.graph.kind)},
              {"num_heads", info_.graph.num_heads},
              {"num_kv_heads", info_.graph.num_kv_heads}}},
            {"dtype", "float16"},
            {"steps", steps_},
            {"complete", complete}};
  if (complete) {
    m["states_sha256"] = sha;
    m["metrics"] = metrics;
  }
  if (absl::Status s = WriteFileAtomically(env_, ManifestPath(dir_), m.dump(1) + "\n"); !s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("writing ", ManifestPath(dir_), " failed: ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TrajectoryReader>> TrajectoryReader::Open(const std::string& dir) {
  auto m = ReadManifest(dir);
  if (!m.ok()) return m.status();
  std::unique_ptr<TrajectoryReader> r(new TrajectoryReader());
  r->manifest_ = std::move(*m);
  for (const auto& s : r->manifest_["steps"]) {
    if (!s.is_number_integer())
      return absl::DataLossError(absl::StrCat(ManifestPath(dir), ": a step is not an integer"));
    r->steps_.push_back(s.get<int64_t>());
  }
  r->rows_ = static_cast<int64_t>(r->steps_.size());
  r->num_params_ = r->manifest_["num_params"].get<int64_t>();
  const std::string path = StatesPath(dir);
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, " is missing"));
  struct stat st {};
  fstat(fd, &st);
  const auto want = static_cast<off_t>(r->rows_ * r->num_params_ * 2);
  if (st.st_size != want) {
    close(fd);
    return absl::DataLossError(absl::StrCat(path, " has ", st.st_size, " bytes; the manifest says ",
                                            r->rows_, " rows x ", r->num_params_,
                                            " float16 = ", want));
  }
  if (want > 0) {
    r->map_ = mmap(nullptr, want, PROT_READ, MAP_SHARED, fd, 0);
    r->map_bytes_ = want;
  }
  close(fd);
  if (r->map_ == MAP_FAILED) {
    r->map_ = nullptr;
    return absl::UnavailableError(absl::StrCat("cannot map ", path));
  }
  return r;
}

TrajectoryReader::~TrajectoryReader() {
  if (map_ != nullptr) munmap(map_, map_bytes_);
}

torch::Tensor TrajectoryReader::states() const {
  if (map_ == nullptr) return torch::empty({0, num_params_}, torch::kHalf);
  return torch::from_blob(map_, {rows_, num_params_}, torch::TensorOptions().dtype(torch::kHalf));
}

TrajectoryReader::CheckResult TrajectoryReader::Check() const {
  CheckResult c;
  const torch::Tensor s = states();
  for (int64_t t = 0; t < rows_; ++t) {
    c.non_finite += (~torch::isfinite(s[t].to(torch::kFloat32))).sum().item<int64_t>();
  }
  if (manifest_.value("complete", false) && manifest_.contains("states_sha256")) {
    c.checksum_checked = true;
    const std::string bytes(static_cast<const char*>(map_ ? map_ : ""), map_bytes_);
    c.checksum_ok = io::Sha256Hex(bytes) == manifest_["states_sha256"].get<std::string>();
  }
  return c;
}

}  // namespace nino::trainer
