#include "trainer/data/fashion_mnist.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace nino::trainer {
namespace {

constexpr char kDefaultDir[] = "/usr/share/datasets/fashion-mnist";
constexpr char kInstallHint[] =
    "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
    "or point NINO_FASHION_MNIST_DIR at a folder with the four *-ubyte.gz files";
constexpr uint32_t kLabelsMagic = 0x00000801;  // 2049: unsigned byte, 1 dimension
constexpr uint32_t kImagesMagic = 0x00000803;  // 2051: unsigned byte, 3 dimensions
constexpr unsigned kChunkBytes = 1u << 20;
constexpr size_t kMaxRead = 4u << 20;        // bytes per gzread into reserved space
constexpr uint64_t kMaxSizeHint = 1u << 30;  // never reserve more than 1 GiB from a hint
constexpr uint64_t kMaxDeflateRatio = 1032;  // deflate cannot expand data more than this

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return absl::StrCat(dir, "/", name);
}

struct GzCloser {
  void operator()(gzFile_s* f) const {
    if (f != nullptr) gzclose(f);
  }
};

// The ISIZE field of a gzip file (last 4 bytes, little-endian: uncompressed size mod 2^32), or 0
// if the file is not gzip or cannot be read.
uint64_t GzipSizeHint(const std::string& path, const struct stat& st) {
  if (st.st_size < 18) return 0;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return 0;
  unsigned char head[2] = {0, 0};
  unsigned char tail[4] = {0, 0, 0, 0};
  const bool ok = std::fread(head, 1, 2, f) == 2 && head[0] == 0x1f && head[1] == 0x8b &&
                  std::fseek(f, -4, SEEK_END) == 0 && std::fread(tail, 1, 4, f) == 4;
  std::fclose(f);
  if (!ok) return 0;
  return uint64_t{tail[0]} | (uint64_t{tail[1]} << 8) | (uint64_t{tail[2]} << 16) |
         (uint64_t{tail[3]} << 24);
}

// The whole decompressed content of a gzip file (zlib also passes plain files through).
absl::StatusOr<std::string> ReadGzip(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat("Fashion-MNIST file ", path, " not found; ", kInstallHint));
    }
    return absl::NotFoundError(
        absl::StrCat("cannot stat Fashion-MNIST file ", path, ": ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::NotFoundError(
        absl::StrCat("Fashion-MNIST file ", path, " is not a regular file; ", kInstallHint));
  }
  errno = 0;
  std::unique_ptr<gzFile_s, GzCloser> file(gzopen(path.c_str(), "rb"));
  if (file == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot open Fashion-MNIST file ", path, ": ",
                                            errno != 0 ? std::strerror(errno) : "gzopen failed"));
  }
  gzbuffer(file.get(), 1u << 17);
  std::string out;
  // Reserve the uncompressed size the gzip trailer announces (a hint: it is the size mod 2^32
  // and a truncated / corrupt file may lie, so it is capped, only reserved (pages are touched
  // as data arrives) and the loop below still grows as needed). Avoids reallocating a 47 MB
  // buffer several times, which costs about as much as the inflate itself.
  if (const uint64_t hint = GzipSizeHint(path, st); hint > 0) {
    const uint64_t cap =
        std::min<uint64_t>(kMaxSizeHint, static_cast<uint64_t>(st.st_size) * kMaxDeflateRatio);
    out.reserve(static_cast<size_t>(std::min<uint64_t>(hint, cap)) + 1);
  }
  for (;;) {
    const size_t old = out.size();
    // Fill the reserved space first (resize within capacity does not reallocate); grow in
    // chunks once it is used up.
    const size_t room = out.capacity() - old;
    const unsigned want = static_cast<unsigned>(room > 0 ? std::min<size_t>(room, kMaxRead)
                                                         : kChunkBytes);
    out.resize(old + want);
    const int got = gzread(file.get(), out.data() + old, want);
    int err = Z_OK;
    const char* msg = gzerror(file.get(), &err);
    if (got < 0 || (err != Z_OK && err != Z_STREAM_END)) {
      // Z_BUF_ERROR: "unexpected end of file" (truncated); Z_DATA_ERROR: corrupt / bad CRC.
      return absl::DataLossError(absl::StrCat(
          "Fashion-MNIST file ", path, " is truncated or corrupt (zlib: ",
          msg != nullptr ? msg : "unknown error", ") after ", old + (got > 0 ? got : 0),
          " decompressed bytes"));
    }
    out.resize(old + static_cast<size_t>(got));
    if (got == 0) break;
  }
  return out;
}

uint32_t BigEndian32(const std::string& bytes, size_t offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data()) + offset;
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

absl::Status CheckMagic(const std::string& path, const std::string& bytes, size_t header_bytes,
                        uint32_t want, const char* what) {
  if (bytes.size() < header_bytes) {
    return absl::DataLossError(absl::StrCat("Fashion-MNIST file ", path, " has only ",
                                            bytes.size(), " bytes, less than the ", header_bytes,
                                            "-byte IDX header of a ", what, " file"));
  }
  const uint32_t magic = BigEndian32(bytes, 0);
  if (magic != want) {
    return absl::DataLossError(absl::StrCat("Fashion-MNIST file ", path, " has magic number ",
                                            magic, ", expected ", want, " (IDX ", what,
                                            " file); wrong or corrupt file"));
  }
  return absl::OkStatus();
}

absl::Status CheckPayloadSize(const std::string& path, const std::string& bytes,
                              size_t header_bytes, uint64_t count, uint64_t per_item) {
  const uint64_t want = header_bytes + count * per_item;
  if (bytes.size() != want) {
    return absl::DataLossError(absl::StrCat(
        "Fashion-MNIST file ", path, " has ", bytes.size(), " decompressed bytes, expected ",
        want, " for ", count, " items (", bytes.size() < want ? "truncated" : "trailing bytes",
        ")"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string DefaultFashionMnistDir() {
  const char* env = std::getenv("NINO_FASHION_MNIST_DIR");
  if (env != nullptr && *env != '\0') return env;
  return kDefaultDir;
}

std::string FashionMnistImagesFile(bool train) {
  return train ? "train-images-idx3-ubyte.gz" : "t10k-images-idx3-ubyte.gz";
}
std::string FashionMnistLabelsFile(bool train) {
  return train ? "train-labels-idx1-ubyte.gz" : "t10k-labels-idx1-ubyte.gz";
}

absl::StatusOr<ImageDataset> LoadFashionMnist(const std::string& dir, bool train,
                                              int64_t limit) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(
        absl::StrCat("Fashion-MNIST folder ", dir, " does not exist; ", kInstallHint));
  }
  if (limit < -1) {
    return absl::InvalidArgumentError(absl::StrCat("Fashion-MNIST limit must be >= 0 or -1 "
                                                   "(all), got ",
                                                   limit));
  }
  const std::string labels_path = JoinPath(dir, FashionMnistLabelsFile(train));
  const std::string images_path = JoinPath(dir, FashionMnistImagesFile(train));

  // Labels first: small, so a broken folder fails fast.
  absl::StatusOr<std::string> labels_bytes = ReadGzip(labels_path);
  if (!labels_bytes.ok()) return labels_bytes.status();
  const std::string& lb = *labels_bytes;
  if (absl::Status s = CheckMagic(labels_path, lb, 8, kLabelsMagic, "labels"); !s.ok()) return s;
  const uint64_t n_labels = BigEndian32(lb, 4);
  if (absl::Status s = CheckPayloadSize(labels_path, lb, 8, n_labels, 1); !s.ok()) return s;
  const auto* label_data = reinterpret_cast<const unsigned char*>(lb.data()) + 8;
  for (uint64_t i = 0; i < n_labels; ++i) {
    if (label_data[i] >= kMnistClasses) {
      return absl::DataLossError(absl::StrCat("Fashion-MNIST file ", labels_path, ": label ", i,
                                              " is ", int{label_data[i]}, ", outside [0, ",
                                              kMnistClasses, ")"));
    }
  }

  absl::StatusOr<std::string> images_bytes = ReadGzip(images_path);
  if (!images_bytes.ok()) return images_bytes.status();
  const std::string& ib = *images_bytes;
  if (absl::Status s = CheckMagic(images_path, ib, 16, kImagesMagic, "images"); !s.ok()) return s;
  const uint64_t n_images = BigEndian32(ib, 4);
  const uint32_t rows = BigEndian32(ib, 8);
  const uint32_t cols = BigEndian32(ib, 12);
  if (rows != kMnistRows || cols != kMnistCols) {
    return absl::DataLossError(absl::StrCat("Fashion-MNIST file ", images_path, " has ", rows,
                                            "x", cols, " images, expected ", kMnistRows, "x",
                                            kMnistCols));
  }
  const uint64_t pixels = uint64_t{rows} * cols;
  if (absl::Status s = CheckPayloadSize(images_path, ib, 16, n_images, pixels); !s.ok()) return s;
  if (n_images != n_labels) {
    return absl::DataLossError(absl::StrCat("Fashion-MNIST files disagree: ", images_path,
                                            " has ", n_images, " images but ", labels_path,
                                            " has ", n_labels, " labels"));
  }

  const int64_t n_all = static_cast<int64_t>(n_images);
  if (limit > n_all) {
    return absl::InvalidArgumentError(absl::StrCat("Fashion-MNIST limit ", limit,
                                                   " exceeds the ", n_all, " examples in ",
                                                   images_path));
  }
  const int64_t n = limit < 0 ? n_all : limit;

  // float32 arithmetic exactly as torchvision: ToTensor (x / 255) then Normalize ((x - m) / s).
  std::array<float, 256> lut;
  for (int v = 0; v < 256; ++v) {
    const float x = static_cast<float>(v) / 255.0f;
    lut[v] = (x - kMnistMean) / kMnistStd;
  }
  ImageDataset ds;
  ds.images = torch::empty({n, 1, kMnistRows, kMnistCols}, torch::kFloat32);
  float* dst = ds.images.data_ptr<float>();
  const auto* src = reinterpret_cast<const unsigned char*>(ib.data()) + 16;
  const int64_t total = n * static_cast<int64_t>(pixels);
  for (int64_t i = 0; i < total; ++i) dst[i] = lut[src[i]];
  ds.labels = torch::empty({n}, torch::kInt64);
  int64_t* lab = ds.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) lab[i] = label_data[i];
  return ds;
}

}  // namespace nino::trainer
