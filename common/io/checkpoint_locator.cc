#include "common/io/checkpoint_locator.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/env/write_file_atomically.h"

namespace nino::io {
namespace {

constexpr char kOfficialRawBase[] =
    "https://github.com/SamsungSAILMontreal/nino/raw/main/checkpoints/";

// libcurl limits. The connect timeout makes "offline" fail fast; the overall limit is generous
// (the largest official checkpoint is ~2 MB) and a stalled transfer is cut by the speed limit.
constexpr long kConnectTimeoutS = 15;
constexpr long kTotalTimeoutS = 600;
constexpr long kLowSpeedBytesPerS = 1;
constexpr long kLowSpeedWindowS = 60;
constexpr long kMaxRedirects = 10;

constexpr size_t kHashChunkBytes = 1 << 16;

std::string GetEnv(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

std::string ToHex(const unsigned char* bytes, unsigned int length) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kDigits[bytes[i] >> 4]);
    hex.push_back(kDigits[bytes[i] & 0xf]);
  }
  return hex;
}

struct EvpMdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter>;

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f != nullptr) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

bool IsSha256Hex(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// A checkpoint name becomes a file name inside the cache and shared folders, so it must not
// be able to point anywhere else.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

std::string KnownNames() {
  std::vector<std::string> names;
  for (const KnownCheckpoint& c : OfficialCheckpoints()) names.push_back(c.name);
  return absl::StrJoin(names, ", ");
}

// Result of checking one candidate file against the expected checksum.
enum class Verdict { kMissing, kMatch, kMismatch, kUnreadable };

Verdict CheckCandidate(Env* env, const std::string& path, const std::string& expected_sha256,
                       std::string* detail) {
  if (!env->FileExists(path)) return Verdict::kMissing;
  absl::StatusOr<std::string> got = Sha256File(path);
  if (!got.ok()) {
    *detail = std::string(got.status().message());
    return Verdict::kUnreadable;
  }
  if (*got != expected_sha256) {
    *detail = *got;
    return Verdict::kMismatch;
  }
  return Verdict::kMatch;
}

// The whole file, for a download that is verified and then published from memory (so the
// bytes checked are the bytes written). NOT_FOUND / INTERNAL naming the file.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  FilePtr file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) {
    const int err = errno;
    std::string msg = absl::StrCat("cannot open ", path, ": ", std::strerror(err));
    if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(msg);
    return absl::InternalError(msg);
  }
  std::string bytes;
  std::vector<char> buffer(kHashChunkBytes);
  size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), file.get())) > 0) {
    bytes.append(buffer.data(), n);
  }
  if (std::ferror(file.get())) {
    return absl::InternalError(absl::StrCat("error reading ", path, ": ", std::strerror(errno)));
  }
  return bytes;
}

size_t WriteToFile(char* data, size_t size, size_t nmemb, void* userdata) {
  // A short count makes libcurl stop with CURLE_WRITE_ERROR.
  return std::fwrite(data, size, nmemb, static_cast<std::FILE*>(userdata));
}

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

const std::vector<KnownCheckpoint>& OfficialCheckpoints() {
  static const auto* const kCheckpoints = new std::vector<KnownCheckpoint>{
      {"nino_no_posw.pt", absl::StrCat(kOfficialRawBase, "nino_no_posw.pt"),
       "2e2186e4a0e50193080eb9074648786ef25cd5ac3149a7df790127fe41101620"},
      {"nino_mlp.pt", absl::StrCat(kOfficialRawBase, "nino_mlp.pt"),
       "34d9ff3703274fa07615e27937dac8ea07f375ed95b5bde6d39abd8c41c06f52"},
      {"nino_mlp_h32.pt", absl::StrCat(kOfficialRawBase, "nino_mlp_h32.pt"),
       "389e4d51e79a72bb9d780812504c98146073cc2a96da38be3b72d8abe0b6fd7d"},
  };
  return *kCheckpoints;
}

const KnownCheckpoint* FindOfficialCheckpoint(const std::string& name) {
  for (const KnownCheckpoint& c : OfficialCheckpoints()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

absl::StatusOr<std::string> Sha256File(const std::string& path) {
  FilePtr file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) {
    int err = errno;
    std::string msg = absl::StrCat("cannot open ", path, ": ", std::strerror(err));
    if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(msg);
    return absl::InternalError(msg);
  }
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("cannot initialise OpenSSL SHA-256");
  }
  std::vector<unsigned char> buffer(kHashChunkBytes);
  for (;;) {
    size_t n = std::fread(buffer.data(), 1, buffer.size(), file.get());
    if (n > 0 && EVP_DigestUpdate(ctx.get(), buffer.data(), n) != 1) {
      return absl::InternalError("OpenSSL SHA-256 update failed");
    }
    if (n < buffer.size()) {
      if (std::ferror(file.get())) {
        return absl::InternalError(
            absl::StrCat("error reading ", path, ": ", std::strerror(errno)));
      }
      break;  // EOF
    }
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest, &digest_len) != 1) {
    return absl::InternalError("OpenSSL SHA-256 final failed");
  }
  return ToHex(digest, digest_len);
}

std::string Sha256Hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  // EVP_Digest only fails on allocation failure; abort rather than return a wrong hash.
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &digest_len, EVP_sha256(), nullptr) != 1) {
    std::abort();
  }
  return ToHex(digest, digest_len);
}

absl::Status CurlFetch(const std::string& url, const std::string& dest_path) {
  InitCurlOnce();
  FilePtr out(std::fopen(dest_path.c_str(), "wb"));
  if (out == nullptr) {
    return absl::InternalError(absl::StrCat("could not download ", url, ": cannot open ", dest_path,
                                            " for writing: ", std::strerror(errno)));
  }
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
  if (curl == nullptr) {
    std::remove(dest_path.c_str());
    return absl::InternalError(absl::StrCat("could not download ", url, ": curl_easy_init failed"));
  }
  char error_buffer[CURL_ERROR_SIZE] = {0};
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, kMaxRedirects);
#if LIBCURL_VERSION_NUM >= 0x075500  // 7.85.0
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https,file");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(h, CURLOPT_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS | CURLPROTO_FILE);
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS);
#endif
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, kConnectTimeoutS);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, kTotalTimeoutS);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, kLowSpeedBytesPerS);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, kLowSpeedWindowS);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // no SIGALRM for DNS timeouts: thread-safe
  curl_easy_setopt(h, CURLOPT_USERAGENT, "nino-checkpoint-locator/1");
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &WriteToFile);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, out.get());

  CURLcode rc = curl_easy_perform(h);
  long http_code = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http_code);
  bool close_failed = std::fclose(out.release()) != 0;
  if (rc != CURLE_OK) {
    std::remove(dest_path.c_str());
    std::string detail = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(rc);
    return absl::UnavailableError(absl::StrCat("could not download ", url, ": ", detail,
                                               " (curl error ", static_cast<int>(rc), ")"));
  }
  if (close_failed) {
    std::remove(dest_path.c_str());
    return absl::InternalError(absl::StrCat("could not download ", url, ": writing ", dest_path,
                                            " failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::string DefaultCacheDir() {
  std::string dir = GetEnv("NINO_CACHE_DIR");
  if (!dir.empty()) return dir;
  // The XDG base directory spec says relative values are invalid and must be ignored.
  std::string xdg = GetEnv("XDG_CACHE_HOME");
  if (!xdg.empty() && xdg.front() == '/') return JoinPath(xdg, "nino");
  std::string home = GetEnv("HOME");
  if (!home.empty()) return JoinPath(home, ".cache/nino");
  return "";
}

std::string DefaultSharedDir() {
  std::string dir = GetEnv("NINO_SHARED_DIR");
  if (!dir.empty()) return dir;
#ifdef NINO_SHARED_DIR_DEFAULT
  return NINO_SHARED_DIR_DEFAULT;
#else
  return "";
#endif
}

absl::StatusOr<LocatedCheckpoint> LocateCheckpoint(const LocatorOptions& options) {
  LocatedCheckpoint result;
  std::vector<std::string>& notes = result.notes;
  Env* const env = options.env != nullptr ? options.env : Env::Default();

  // 1. Explicit path: used as given (it may be a checkpoint of the user's own, so no checksum).
  if (!options.explicit_path.empty()) {
    const std::string& path = options.explicit_path;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat("checkpoint given by --nino_ckpt does not exist: ",
                                              path, " (", std::strerror(errno), ")"));
    }
    if (S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint given by --nino_ckpt is a directory, not a file: ", path));
    }
    if (::access(path.c_str(), R_OK) != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("checkpoint given by --nino_ckpt is not readable: ", path, " (",
                       std::strerror(errno), ")"));
    }
    result.path = path;
    result.source = "explicit";
    return result;
  }

  const std::string& name = options.name;
  if (!IsPlainFileName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint name must be a plain file name (no '/'), got '", name, "'"));
  }
  const KnownCheckpoint* known = FindOfficialCheckpoint(name);
  std::string url = !options.url_override.empty() ? options.url_override
                    : known != nullptr            ? known->url
                                                  : "";
  std::string sha256 = !options.sha256_override.empty() ? options.sha256_override
                       : known != nullptr               ? known->sha256
                                                        : "";
  sha256 = absl::AsciiStrToLower(sha256);
  if (sha256.empty()) {
    // Without a checksum nothing but an explicit path can be trusted.
    return absl::NotFoundError(absl::StrCat("unknown checkpoint '", name,
                                            "': the official checkpoints are ", KnownNames(),
                                            "; for any other file pass --nino_ckpt PATH"));
  }
  if (!IsSha256Hex(sha256)) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected sha256 must be 64 hex digits, got '", sha256, "'"));
  }

  // 2. Per-user cache.
  const std::string cache_dir = !options.cache_dir.empty() ? options.cache_dir : DefaultCacheDir();
  const std::string cache_path = cache_dir.empty() ? "" : JoinPath(cache_dir, name);
  if (cache_dir.empty()) {
    notes.push_back("cache: no cache directory (NINO_CACHE_DIR, XDG_CACHE_HOME and HOME unset)");
  } else {
    std::string detail;
    switch (CheckCandidate(env, cache_path, sha256, &detail)) {
      case Verdict::kMatch:
        result.path = cache_path;
        result.source = "cache";
        return result;
      case Verdict::kMissing:
        notes.push_back(absl::StrCat("cache: ", cache_path, " does not exist"));
        break;
      case Verdict::kUnreadable:
        notes.push_back(absl::StrCat("cache: ", cache_path, " ignored: ", detail));
        break;
      case Verdict::kMismatch:
        notes.push_back(absl::StrCat("cache: ", cache_path, " ignored: sha256 mismatch (expected ",
                                     sha256, ", got ", detail, ")"));
        break;
    }
  }

  // 3. Download into a temporary file, verified, then published with WriteFileAtomically.
  if (!options.allow_download) {
    notes.push_back("download: disabled");
  } else if (url.empty()) {
    notes.push_back(absl::StrCat("download: no download URL is known for ", name));
  } else if (cache_dir.empty()) {
    notes.push_back("download: skipped, no cache directory to download into");
  } else {
    std::error_code ec;
    std::filesystem::create_directories(cache_dir, ec);
    std::string tmp_path = JoinPath(cache_dir, "." + name + ".download-XXXXXX");
    int fd = ec ? -1 : ::mkstemp(tmp_path.data());
    if (ec) {
      notes.push_back(
          absl::StrCat("download: cannot create cache directory ", cache_dir, ": ", ec.message()));
    } else if (fd < 0) {
      notes.push_back(absl::StrCat("download: cannot create a temporary file in ", cache_dir, ": ",
                                   std::strerror(errno)));
    } else {
      ::close(fd);
      const Fetcher& fetch = options.fetcher ? options.fetcher : Fetcher(&CurlFetch);
      absl::Status fetched = fetch(url, tmp_path);
      if (!fetched.ok()) {
        std::remove(tmp_path.c_str());
        notes.push_back(absl::StrCat("download: ", fetched.message()));
      } else {
        absl::StatusOr<std::string> bytes = ReadWholeFile(tmp_path);
        std::remove(tmp_path.c_str());
        const std::string got = bytes.ok() ? Sha256Hex(*bytes) : "";
        if (!bytes.ok()) {
          notes.push_back(absl::StrCat("download: ", bytes.status().message()));
        } else if (got != sha256) {
          // The official file is not what this build expects (corrupted transfer, tampering,
          // or a new upstream version): stop here rather than silently use something else.
          notes.push_back(absl::StrCat("download: sha256 mismatch for ", url));
          return absl::DataLossError(absl::StrCat(
              "downloaded checkpoint ", name, " from ", url, " has the wrong sha256: expected ",
              sha256, ", got ", got, "; the temporary file was deleted. Tried:\n  ",
              absl::StrJoin(notes, "\n  "), "\nPut a verified copy at ", cache_path,
              " or pass --nino_ckpt PATH."));
        } else if (absl::Status published = WriteFileAtomically(env, cache_path, *bytes);
                   !published.ok()) {
          notes.push_back(
              absl::StrCat("download: cannot publish ", cache_path, ": ", published.message()));
        } else {
          result.path = cache_path;
          result.source = "download";
          return result;
        }
      }
    }
  }

  // 4. Offline fallback: the read-only shared folder.
  const std::string shared_dir =
      !options.shared_dir.empty() ? options.shared_dir : DefaultSharedDir();
  if (shared_dir.empty()) {
    notes.push_back("shared: no shared directory (NINO_SHARED_DIR unset, no compiled-in default)");
  } else {
    const std::string shared_path = JoinPath(shared_dir, "reference/checkpoints/" + name);
    std::string detail;
    switch (CheckCandidate(env, shared_path, sha256, &detail)) {
      case Verdict::kMatch:
        result.path = shared_path;
        result.source = "shared";
        return result;
      case Verdict::kMissing:
        notes.push_back(absl::StrCat("shared: ", shared_path, " does not exist"));
        break;
      case Verdict::kUnreadable:
        notes.push_back(absl::StrCat("shared: ", shared_path, " ignored: ", detail));
        break;
      case Verdict::kMismatch:
        notes.push_back(absl::StrCat("shared: ", shared_path,
                                     " ignored: sha256 mismatch (expected ", sha256, ", got ",
                                     detail, ")"));
        break;
    }
  }

  // 5. Nothing usable: say exactly how to get the file.
  std::string how;
  const std::string target = cache_path.empty() ? "<cache dir>/" + name : cache_path;
  if (!url.empty()) {
    how = absl::StrCat("Download ", url, "\n  (sha256 ", sha256, ") and put it at ", target,
                       ", e.g.\n    curl -fL --create-dirs -o ", target, " ", url,
                       "\n    sha256sum ", target,
                       "\nor pass --nino_ckpt PATH to use a copy "
                       "elsewhere.");
  } else {
    how = absl::StrCat("No download URL is known for ", name, "; put a file with sha256 ", sha256,
                       " at ", target, ", or pass --nino_ckpt PATH.");
  }
  return absl::NotFoundError(absl::StrCat("checkpoint ", name, " not found. Tried:\n  ",
                                          absl::StrJoin(notes, "\n  "), "\n", how));
}

}  // namespace nino::io
