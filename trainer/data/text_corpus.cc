#include "trainer/data/text_corpus.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/env/write_file_atomically.h"
#include "trainer/data/batch_sampler.h"

namespace nino::trainer {
namespace {

constexpr char kKjvRange[] = "Genesis 1:1-Revelation 22:21";
constexpr char kPackageHint[] =
    "install the Debian package bible-kjv (apt-get install bible-kjv), which provides `bible` "
    "and the KJV text";
constexpr size_t kExcerptChars = 300;

std::string ShellQuote(const std::string& s) {
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
}

std::string Excerpt(const std::string& s) {
  std::string out = s.substr(0, kExcerptChars);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  if (s.size() > kExcerptChars) out += "...";
  return out.empty() ? "(nothing)" : out;
}

// Reads a whole file; nullopt-like: returns false if it cannot be opened.
bool ReadWholeFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return false;
  *out = std::move(ss).str();
  return true;
}

// Runs `program -f "<range>"`, stdout captured, stderr into a temporary file.
absl::StatusOr<std::string> RunBible(const std::string& program) {
  std::error_code ec;
  std::filesystem::path tmp_dir = std::filesystem::temp_directory_path(ec);
  if (ec) tmp_dir = "/tmp";
  std::string err_path = (tmp_dir / "nino_bible_stderr_XXXXXX").string();
  const int err_fd = ::mkstemp(err_path.data());
  if (err_fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create a temporary file ", err_path,
                                            " for the stderr of `", program,
                                            "`: ", std::strerror(errno)));
  }
  ::close(err_fd);
  const std::string command = absl::StrCat(ShellQuote(program), " -f ", ShellQuote(kKjvRange),
                                           " 2>", ShellQuote(err_path), " </dev/null");
  std::string text;
  int status = -1;
  {
    std::FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) {
      ::unlink(err_path.c_str());
      return absl::InternalError(
          absl::StrCat("popen(", command, ") failed: ", std::strerror(errno)));
    }
    char buf[1 << 16];
    size_t got;
    while ((got = std::fread(buf, 1, sizeof(buf), pipe)) > 0) text.append(buf, got);
    status = ::pclose(pipe);
  }
  std::string err_text;
  ReadWholeFile(err_path, &err_text);
  ::unlink(err_path.c_str());

  const std::string shown = absl::StrCat("`", program, " -f \"", kKjvRange, "\"`");
  if (status == -1) {
    return absl::InternalError(
        absl::StrCat("waiting for ", shown, " failed: ", std::strerror(errno)));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    return absl::NotFoundError(absl::StrCat("the program `", program, "` was not found (shell: ",
                                            Excerpt(err_text), "); ", kPackageHint));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        shown, " failed (",
        WIFEXITED(status) ? absl::StrCat("exit status ", WEXITSTATUS(status))
                          : absl::StrCat("signal ", WTERMSIG(status)),
        "); stderr: ", Excerpt(err_text), "; is bible-kjv fully installed? ", kPackageHint));
  }
  if (text.size() < kMinKjvBytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        shown, " printed only ", text.size(), " bytes, expected at least ", kMinKjvBytes,
        " (the whole KJV); output: ", Excerpt(text), "; stderr: ", Excerpt(err_text),
        "; is bible-kjv fully installed? ", kPackageHint));
  }
  return text;
}

// Writes `text` to `path` with WriteFileAtomically (missing parent folders are created).
absl::Status WriteAtomically(const std::string& path, const std::string& text) {
  const std::filesystem::path target(path);
  if (target.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(target.parent_path(), ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot create the folder of the KJV cache ", path, ": ", ec.message()));
    }
  }
  if (absl::Status s = WriteFileAtomically(Env::Default(), path, text); !s.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot write the KJV cache ", path, ": ", s.message()));
  }
  return absl::OkStatus();
}

torch::Tensor CheckTokens(const torch::Tensor& tokens, const char* who) {
  TORCH_CHECK(tokens.defined(), who, ": tokens are undefined");
  TORCH_CHECK(tokens.dim() == 1, who, ": tokens must be 1-D, got ", tokens.sizes());
  TORCH_CHECK(tokens.scalar_type() == torch::kInt64, who, ": tokens must be int64, got ",
              tokens.scalar_type());
  return tokens.cpu().contiguous();
}

}  // namespace

absl::StatusOr<std::string> LoadKjvText(const std::string& cache_path,
                                        const std::string& bible_program) {
  if (cache_path.empty()) return absl::InvalidArgumentError("LoadKjvText: empty cache path");
  struct stat st;
  if (::stat(cache_path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    std::string text;
    if (!ReadWholeFile(cache_path, &text)) {
      return absl::InternalError(
          absl::StrCat("cannot read the KJV cache ", cache_path, ": ", std::strerror(errno)));
    }
    if (text.size() >= kMinKjvBytes) return text;
    // A short cache (e.g. written by hand or by an older tool) is rebuilt, never trusted.
  }
  absl::StatusOr<std::string> text = RunBible(bible_program);
  if (!text.ok()) return text.status();
  if (absl::Status s = WriteAtomically(cache_path, *text); !s.ok()) return s;
  return text;
}

torch::Tensor BytesToTokens(const std::string& text) {
  const int64_t n = static_cast<int64_t>(text.size());
  torch::Tensor out = torch::empty({n}, torch::kInt64);
  int64_t* dst = out.data_ptr<int64_t>();
  const auto* src = reinterpret_cast<const unsigned char*>(text.data());
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
  return out;
}

TextSplits SplitText(const std::string& text, double val_fraction) {
  TORCH_CHECK(val_fraction >= 0.0 && val_fraction < 1.0,
              "SplitText: val_fraction must be in [0, 1), got ", val_fraction);
  const int64_t n = static_cast<int64_t>(text.size());
  const int64_t n_val = static_cast<int64_t>(std::floor(static_cast<double>(n) * val_fraction));
  torch::Tensor all = BytesToTokens(text);
  TextSplits splits;
  splits.train = all.narrow(0, 0, n - n_val).clone();
  splits.val = all.narrow(0, n - n_val, n_val).clone();
  return splits;
}

LmBatcher::LmBatcher(torch::Tensor tokens, int64_t context, int64_t global_batch, uint64_t seed,
                     int rank, int world_size)
    : context_(context), batch_(global_batch), seed_(seed) {
  tokens_ = CheckTokens(tokens, "LmBatcher");
  TORCH_CHECK(context >= 1, "LmBatcher: context must be >= 1, got ", context);
  TORCH_CHECK(global_batch >= 1, "LmBatcher: global_batch must be >= 1, got ", global_batch);
  TORCH_CHECK(tokens_.numel() >= context + 1, "LmBatcher: ", tokens_.numel(),
              " tokens are fewer than context + 1 = ", context + 1);
  const auto [start, count] = RankRange(global_batch, rank, world_size);
  rank_start_ = start;
  rank_count_ = count;
}

torch::Tensor LmBatcher::GlobalOffsets(int64_t step) const {
  TORCH_CHECK(step >= 0, "LmBatcher: step must be >= 0, got ", step);
  std::mt19937_64 rng(MixSeed(seed_, static_cast<uint64_t>(step)));
  const uint64_t choices = static_cast<uint64_t>(tokens_.numel() - context_);
  torch::Tensor out = torch::empty({batch_}, torch::kInt64);
  int64_t* dst = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < batch_; ++i) dst[i] = static_cast<int64_t>(UniformBelow(rng, choices));
  return out;
}

std::pair<torch::Tensor, torch::Tensor> LmBatcher::RankBatch(int64_t step) const {
  const torch::Tensor offsets = GlobalOffsets(step);
  const int64_t* off = offsets.data_ptr<int64_t>() + rank_start_;
  const int64_t* src = tokens_.data_ptr<int64_t>();
  torch::Tensor inputs = torch::empty({rank_count_, context_}, torch::kInt64);
  torch::Tensor targets = torch::empty({rank_count_, context_}, torch::kInt64);
  int64_t* in = inputs.data_ptr<int64_t>();
  int64_t* tg = targets.data_ptr<int64_t>();
  const size_t row_bytes = static_cast<size_t>(context_) * sizeof(int64_t);
  for (int64_t r = 0; r < rank_count_; ++r) {
    std::memcpy(in + r * context_, src + off[r], row_bytes);
    std::memcpy(tg + r * context_, src + off[r] + 1, row_bytes);
  }
  return {inputs, targets};
}

std::vector<std::pair<torch::Tensor, torch::Tensor>> EvalBatches(const torch::Tensor& tokens,
                                                                 int64_t context, int64_t batch,
                                                                 bool include_tail) {
  const torch::Tensor toks = CheckTokens(tokens, "EvalBatches");
  TORCH_CHECK(context >= 1, "EvalBatches: context must be >= 1, got ", context);
  TORCH_CHECK(batch >= 1, "EvalBatches: batch must be >= 1, got ", batch);
  const int64_t n = toks.numel();
  TORCH_CHECK(n >= 2, "EvalBatches: need at least 2 tokens, got ", n);
  const int64_t full = (n - 1) / context;
  const int64_t* src = toks.data_ptr<int64_t>();
  std::vector<std::pair<torch::Tensor, torch::Tensor>> out;
  auto make = [&](int64_t first_window, int64_t rows, int64_t len) {
    torch::Tensor inputs = torch::empty({rows, len}, torch::kInt64);
    torch::Tensor targets = torch::empty({rows, len}, torch::kInt64);
    const size_t row_bytes = static_cast<size_t>(len) * sizeof(int64_t);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t off = (first_window + r) * context;
      std::memcpy(inputs.data_ptr<int64_t>() + r * len, src + off, row_bytes);
      std::memcpy(targets.data_ptr<int64_t>() + r * len, src + off + 1, row_bytes);
    }
    out.emplace_back(inputs, targets);
  };
  for (int64_t w = 0; w < full; w += batch) make(w, std::min(batch, full - w), context);
  const int64_t tail = (n - 1) - full * context;
  if (include_tail && tail > 0) make(full, 1, tail);
  return out;
}

}  // namespace nino::trainer
