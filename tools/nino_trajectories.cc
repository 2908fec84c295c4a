// nino_trajectories: lists and checks trajectory datasets recorded by `nino_train --record_dir`.
//
//   nino_trajectories list DIR...    one JSON line per dataset (task, seed, lr, params, rows,
//                                    every, bytes, complete, the run's best metric)
//   nino_trajectories check DIR...   also reads every value: non-finite count, checksum; exits 1
//                                    if any dataset is damaged or incomplete
// A DIR that is not itself a dataset is searched one level down (a collection's root).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trainer/trajectory.h"

namespace {
namespace fs = std::filesystem;

std::vector<std::string> Datasets(const std::string& dir) {
  if (fs::exists(fs::path(dir) / "manifest.json")) return {dir};
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory() && fs::exists(e.path() / "manifest.json"))
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Prints the dataset's line; returns false when it is damaged (or, for check, incomplete).
bool Report(const std::string& dir, bool check) {
  auto r = nino::trainer::TrajectoryReader::Open(dir);
  if (!r.ok()) {
    std::printf("%s\n",
                nlohmann::json({{"dir", dir}, {"error", std::string(r.status().ToString())}})
                    .dump()
                    .c_str());
    return false;
  }
  const nlohmann::json& m = (*r)->manifest();
  nlohmann::json line = {{"dir", dir},
                         {"task", m.value("task", "")},
                         {"seed", m.value("seed", 0)},
                         {"lr", m.value("lr", 0.0)},
                         {"params", (*r)->num_params()},
                         {"rows", (*r)->rows()},
                         {"every", m.value("every", 0)},
                         {"last_step", (*r)->rows() ? (*r)->steps().back() : -1},
                         {"bytes", 2 * (*r)->rows() * (*r)->num_params()},
                         {"complete", m.value("complete", false)}};
  if (m.contains("metrics")) {
    for (const auto& [k, v] : m["metrics"].items()) {
      if (k.rfind("best_", 0) == 0) line[k] = v;
    }
  }
  bool ok = true;
  if (check) {
    const auto c = (*r)->Check();
    line["non_finite"] = c.non_finite;
    line["checksum"] =
        c.checksum_checked ? (c.checksum_ok ? "ok" : "MISMATCH") : "none (incomplete)";
    ok = c.non_finite == 0 && c.checksum_checked && c.checksum_ok;
  }
  std::printf("%s\n", line.dump().c_str());
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || (std::string(argv[1]) != "list" && std::string(argv[1]) != "check")) {
    std::fprintf(stderr, "usage: nino_trajectories list|check DIR...\n");
    return 2;
  }
  const bool check = std::string(argv[1]) == "check";
  bool all_ok = true;
  int found = 0;
  for (int i = 2; i < argc; ++i) {
    for (const auto& d : Datasets(argv[i])) {
      ++found;
      all_ok &= Report(d, check);
    }
  }
  if (found == 0) {
    std::fprintf(stderr, "error: no trajectory dataset (manifest.json) under the given folders\n");
    return 1;
  }
  return all_ok ? 0 : 1;
}
