// Tests for trainer/data/fashion_mnist.h: the real Debian files (values measured once with
// python3's gzip module and hard-coded), and broken folders / files built in TEST_TMPDIR (each
// must give an error that names the file and what was wrong).
#include "trainer/data/fashion_mnist.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace nino::trainer {
namespace {

// ---- helpers -------------------------------------------------------------------------------

std::string NewTempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp",
                                  "/fmnist_XXXXXX");
  EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

bool RealDataPresent() {
  struct stat st;
  const std::string dir = DefaultFashionMnistDir();
  return ::stat(absl::StrCat(dir, "/", FashionMnistImagesFile(true)).c_str(), &st) == 0;
}

#define SKIP_WITHOUT_REAL_DATA()                                                         \
  if (!RealDataPresent()) {                                                              \
    GTEST_SKIP() << "Fashion-MNIST not found in " << DefaultFashionMnistDir()            \
                 << " (install dataset-fashion-mnist or set NINO_FASHION_MNIST_DIR)"; \
  }

void WriteGzip(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

std::string Be32(uint32_t v) {
  return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
}

std::string LabelsIdx(const std::vector<uint8_t>& labels, uint32_t magic = 2049) {
  std::string s = Be32(magic) + Be32(static_cast<uint32_t>(labels.size()));
  for (uint8_t l : labels) s.push_back(static_cast<char>(l));
  return s;
}

// n images of rows x cols; pixel (i, p) = (i * 31 + p) % 256.
std::string ImagesIdx(uint32_t n, uint32_t rows = 28, uint32_t cols = 28,
                      uint32_t magic = 2051) {
  std::string s = Be32(magic) + Be32(n) + Be32(rows) + Be32(cols);
  for (uint32_t i = 0; i < n; ++i) {
    for (uint32_t p = 0; p < rows * cols; ++p) s.push_back(static_cast<char>((i * 31 + p) % 256));
  }
  return s;
}

// A folder with synthetic t10k files.
std::string SyntheticDir(const std::string& images, const std::string& labels) {
  const std::string dir = NewTempDir();
  WriteGzip(absl::StrCat(dir, "/", FashionMnistImagesFile(false)), images);
  WriteGzip(absl::StrCat(dir, "/", FashionMnistLabelsFile(false)), labels);
  return dir;
}

void ExpectError(const absl::StatusOr<ImageDataset>& r, absl::StatusCode code,
                 const std::string& must_name, const std::string& must_say) {
  ASSERT_FALSE(r.ok()) << "expected an error naming " << must_name;
  EXPECT_EQ(r.status().code(), code) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), must_name)) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), must_say)) << r.status();
}

// ---- the real files ------------------------------------------------------------------------

// Loaded once for the tests below (decompressing 26 MB takes a fraction of a second).
const absl::StatusOr<ImageDataset>& RealTrain() {
  static const auto* ds = new absl::StatusOr<ImageDataset>(
      LoadFashionMnist(DefaultFashionMnistDir(), /*train=*/true));
  return *ds;
}

TEST(FashionMnistReal, TrainSplit) {
  SKIP_WITHOUT_REAL_DATA();
  const auto& r = RealTrain();
  ASSERT_TRUE(r.ok()) << r.status();
  const ImageDataset& ds = *r;
  EXPECT_EQ(ds.images.sizes(), (std::vector<int64_t>{60000, 1, 28, 28}));
  EXPECT_EQ(ds.images.scalar_type(), torch::kFloat32);
  EXPECT_EQ(ds.labels.sizes(), (std::vector<int64_t>{60000}));
  EXPECT_EQ(ds.labels.scalar_type(), torch::kInt64);
  EXPECT_EQ(ds.size(), 60000);
  // First labels of train-labels-idx1-ubyte.gz (python3 gzip).
  const std::vector<int64_t> first = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9, 5, 5, 7, 9, 1, 0, 6, 4};
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(ds.labels[i].item<int64_t>(), first[i]) << "label " << i;
  }
  // Balanced: 6000 of each class.
  const torch::Tensor counts = torch::bincount(ds.labels);
  ASSERT_EQ(counts.numel(), 10);
  for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[c].item<int64_t>(), 6000) << "class " << c;
  // Normalised mean over all pixels: raw mean 0.2860406 -> (0.2860406 - 0.1307) / 0.3081.
  EXPECT_NEAR(ds.images.mean().item<double>(), 0.5041889, 1e-4);
  // Exact per-pixel normalisation: image 0 raw pixel sum 76247, centre pixel (14, 14) = 217.
  const double raw_sum = ((ds.images[0] * kMnistStd + kMnistMean) * 255.0).sum().item<double>();
  EXPECT_NEAR(raw_sum, 76247.0, 0.5);
  EXPECT_FLOAT_EQ(ds.images[0][0][14][14].item<float>(), (217.0f / 255.0f - 0.1307f) / 0.3081f);
  EXPECT_FLOAT_EQ(ds.images.min().item<float>(), -0.1307f / 0.3081f);
  EXPECT_FLOAT_EQ(ds.images.max().item<float>(), (1.0f - 0.1307f) / 0.3081f);
}

TEST(FashionMnistReal, TrainLimitKeepsTheFirst55000) {
  SKIP_WITHOUT_REAL_DATA();
  const auto& full = RealTrain();
  ASSERT_TRUE(full.ok()) << full.status();
  const int64_t n = 60000;
  const int64_t keep = n - n / 12;
  ASSERT_EQ(keep, 55000);
  auto r = LoadFashionMnist(DefaultFashionMnistDir(), /*train=*/true, keep);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->images.sizes(), (std::vector<int64_t>{55000, 1, 28, 28}));
  EXPECT_EQ(r->labels.sizes(), (std::vector<int64_t>{55000}));
  EXPECT_TRUE(torch::equal(r->labels, full->labels.narrow(0, 0, keep)));
  EXPECT_TRUE(torch::equal(r->images[keep - 1], full->images[keep - 1]));
  EXPECT_NEAR(r->images.mean().item<double>(), 0.5034642, 1e-4);
}

TEST(FashionMnistReal, TestSplit) {
  SKIP_WITHOUT_REAL_DATA();
  auto r = LoadFashionMnist(DefaultFashionMnistDir(), /*train=*/false);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->images.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_EQ(r->labels.sizes(), (std::vector<int64_t>{10000}));
  const std::vector<int64_t> first = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5, 7, 3, 4, 1, 2, 4, 8, 0};
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(r->labels[i].item<int64_t>(), first[i]) << "label " << i;
  }
  EXPECT_NEAR(r->images.mean().item<double>(), 0.5068136, 1e-4);
  const double raw_sum = ((r->images[0] * kMnistStd + kMnistMean) * 255.0).sum().item<double>();
  EXPECT_NEAR(raw_sum, 33456.0, 0.5);
}

TEST(FashionMnistReal, LimitLargerThanTheFileIsAnError) {
  SKIP_WITHOUT_REAL_DATA();
  auto r = LoadFashionMnist(DefaultFashionMnistDir(), /*train=*/false, 10001);
  ExpectError(r, absl::StatusCode::kInvalidArgument, FashionMnistImagesFile(false), "10001");
}

// ---- defaults ------------------------------------------------------------------------------

TEST(FashionMnist, DefaultDirHonoursTheEnvironment) {
  const char* old = std::getenv("NINO_FASHION_MNIST_DIR");
  const std::string saved = old != nullptr ? old : "";
  ::unsetenv("NINO_FASHION_MNIST_DIR");
  EXPECT_EQ(DefaultFashionMnistDir(), "/usr/share/datasets/fashion-mnist");
  ::setenv("NINO_FASHION_MNIST_DIR", "/somewhere/else", 1);
  EXPECT_EQ(DefaultFashionMnistDir(), "/somewhere/else");
  ::setenv("NINO_FASHION_MNIST_DIR", "", 1);
  EXPECT_EQ(DefaultFashionMnistDir(), "/usr/share/datasets/fashion-mnist");
  if (old != nullptr) {
    ::setenv("NINO_FASHION_MNIST_DIR", saved.c_str(), 1);
  } else {
    ::unsetenv("NINO_FASHION_MNIST_DIR");
  }
}

TEST(FashionMnist, FileNames) {
  EXPECT_EQ(FashionMnistImagesFile(true), "train-images-idx3-ubyte.gz");
  EXPECT_EQ(FashionMnistLabelsFile(true), "train-labels-idx1-ubyte.gz");
  EXPECT_EQ(FashionMnistImagesFile(false), "t10k-images-idx3-ubyte.gz");
  EXPECT_EQ(FashionMnistLabelsFile(false), "t10k-labels-idx1-ubyte.gz");
}

// ---- synthetic files -----------------------------------------------------------------------

TEST(FashionMnistSynthetic, LoadsAndNormalisesExactly) {
  const std::string dir = SyntheticDir(ImagesIdx(3), LabelsIdx({7, 0, 9}));
  auto r = LoadFashionMnist(dir, /*train=*/false);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->images.sizes(), (std::vector<int64_t>{3, 1, 28, 28}));
  EXPECT_EQ(r->labels[0].item<int64_t>(), 7);
  EXPECT_EQ(r->labels[1].item<int64_t>(), 0);
  EXPECT_EQ(r->labels[2].item<int64_t>(), 9);
  // Same float32 arithmetic as torchvision ToTensor + Normalize, computed with torch here.
  for (int i = 0; i < 3; ++i) {
    std::vector<float> raw(784);
    for (int p = 0; p < 784; ++p) raw[p] = static_cast<float>((i * 31 + p) % 256);
    torch::Tensor want = torch::from_blob(raw.data(), {1, 28, 28}, torch::kFloat32).clone();
    want = want.div(255.0f).sub(0.1307f).div(0.3081f);
    EXPECT_TRUE(torch::equal(r->images[i], want)) << "image " << i;
  }
  // limit 0 and limit 2.
  auto none = LoadFashionMnist(dir, false, 0);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->size(), 0);
  auto two = LoadFashionMnist(dir, false, 2);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->size(), 2);
  EXPECT_TRUE(torch::equal(two->images, r->images.narrow(0, 0, 2)));
}

TEST(FashionMnistErrors, MissingFolder) {
  const std::string dir = NewTempDir() + "/not_there";
  auto r = LoadFashionMnist(dir, true);
  ExpectError(r, absl::StatusCode::kNotFound, dir, "dataset-fashion-mnist");
}

TEST(FashionMnistErrors, MissingFiles) {
  const std::string dir = NewTempDir();
  auto r = LoadFashionMnist(dir, true);
  ExpectError(r, absl::StatusCode::kNotFound, dir + "/train-labels-idx1-ubyte.gz",
              "dataset-fashion-mnist");
  WriteGzip(dir + "/train-labels-idx1-ubyte.gz", LabelsIdx({1, 2}));
  r = LoadFashionMnist(dir, true);
  ExpectError(r, absl::StatusCode::kNotFound, dir + "/train-images-idx3-ubyte.gz",
              "dataset-fashion-mnist");
}

TEST(FashionMnistErrors, TruncatedGzipCopyOfTheRealLabels) {
  SKIP_WITHOUT_REAL_DATA();
  const std::string dir = NewTempDir();
  const std::string real = ReadFile(DefaultFashionMnistDir() + "/t10k-labels-idx1-ubyte.gz");
  ASSERT_GT(real.size(), 4000u);
  const std::string labels = dir + "/t10k-labels-idx1-ubyte.gz";
  WriteFile(labels, real.substr(0, real.size() / 2));
  ASSERT_EQ(::symlink((DefaultFashionMnistDir() + "/t10k-images-idx3-ubyte.gz").c_str(),
                      (dir + "/t10k-images-idx3-ubyte.gz").c_str()),
            0);
  auto r = LoadFashionMnist(dir, false);
  ExpectError(r, absl::StatusCode::kDataLoss, labels, "truncated");
}

TEST(FashionMnistErrors, TruncatedGzipCopyOfTheRealImages) {
  SKIP_WITHOUT_REAL_DATA();
  const std::string dir = NewTempDir();
  const std::string real = ReadFile(DefaultFashionMnistDir() + "/t10k-images-idx3-ubyte.gz");
  const std::string images = dir + "/t10k-images-idx3-ubyte.gz";
  WriteFile(images, real.substr(0, 200000));
  ASSERT_EQ(::symlink((DefaultFashionMnistDir() + "/t10k-labels-idx1-ubyte.gz").c_str(),
                      (dir + "/t10k-labels-idx1-ubyte.gz").c_str()),
            0);
  auto r = LoadFashionMnist(dir, false);
  ExpectError(r, absl::StatusCode::kDataLoss, images, "truncated");
}

TEST(FashionMnistErrors, CorruptGzipBody) {
  // Flip bytes in the middle of the deflate stream: zlib reports a data / CRC error.
  std::string gz;
  {
    const std::string dir = SyntheticDir(ImagesIdx(20), LabelsIdx(std::vector<uint8_t>(20, 1)));
    gz = ReadFile(dir + "/t10k-images-idx3-ubyte.gz");
  }
  ASSERT_GT(gz.size(), 100u);
  for (size_t i = gz.size() / 2; i < gz.size() / 2 + 8; ++i) gz[i] = static_cast<char>(~gz[i]);
  const std::string dir = NewTempDir();
  WriteGzip(dir + "/t10k-labels-idx1-ubyte.gz", LabelsIdx(std::vector<uint8_t>(20, 1)));
  WriteFile(dir + "/t10k-images-idx3-ubyte.gz", gz);
  auto r = LoadFashionMnist(dir, false);
  ExpectError(r, absl::StatusCode::kDataLoss, dir + "/t10k-images-idx3-ubyte.gz", "corrupt");
}

TEST(FashionMnistErrors, WrongMagic) {
  // Labels with the images magic.
  std::string dir = SyntheticDir(ImagesIdx(2), LabelsIdx({1, 2}, /*magic=*/2051));
  auto r = LoadFashionMnist(dir, false);
  ExpectError(r, absl::StatusCode::kDataLoss, dir + "/t10k-labels-idx1-ubyte.gz", "magic");
  // Images with a wrong magic.
  dir = SyntheticDir(ImagesIdx(2, 28, 28, /*magic=*/0x12345678), LabelsIdx({1, 2}));
  r = LoadFashionMnist(dir, false);
  ExpectError(r, absl::StatusCode::kDataLoss, dir + "/t10k-images-idx3-ubyte.gz", "magic");
}

TEST(FashionMnistErrors, WrongDimensions) {
  const std::string dir = SyntheticDir(ImagesIdx(2, 32, 32), LabelsIdx({1, 2}));
  auto r = LoadFashionMnist(dir, false);
  ExpectError(r, absl::StatusCode::kDataLoss, dir + "/t10k-images-idx3-ubyte.gz", "32x32");
}

TEST(FashionMnistErrors, CountsThatDoNotMatchTheData) {
  // Header says 5 images, data holds 4.
  std::string images = ImagesIdx(4);
  images.replace(4, 4, Be32(5));
  std::string dir = SyntheticDir(images, LabelsIdx({1, 2, 3, 4, 5}));
  auto r = LoadFashionMnist(dir, false);
  ExpectError(r, absl::StatusCode::kDataLoss, dir + "/t10k-images-idx3-ubyte.gz", "truncated");
  // Trailing bytes after the labels.
  dir = SyntheticDir(ImagesIdx(2), LabelsIdx({1, 2}) + "xx");
  r = LoadFashionMnist(dir, false);
  ExpectError(r, absl::StatusCode::kDataLoss, dir + "/t10k-labels-idx1-ubyte.gz", "trailing");
  // Shorter than the header.
  dir = SyntheticDir(ImagesIdx(2), std::string("\x00\x00\x08", 3));
  r = LoadFashionMnist(dir, false);
  ExpectError(r, absl::StatusCode::kDataLoss, dir + "/t10k-labels-idx1-ubyte.gz", "header");
}

TEST(FashionMnistErrors, ImageAndLabelCountsDisagree) {
  const std::string dir = SyntheticDir(ImagesIdx(3), LabelsIdx({1, 2}));
  auto r = LoadFashionMnist(dir, false);
  ExpectError(r, absl::StatusCode::kDataLoss, dir + "/t10k-images-idx3-ubyte.gz", "2 labels");
}

TEST(FashionMnistErrors, LabelOutOfRange) {
  const std::string dir = SyntheticDir(ImagesIdx(3), LabelsIdx({1, 10, 2}));
  auto r = LoadFashionMnist(dir, false);
  ExpectError(r, absl::StatusCode::kDataLoss, dir + "/t10k-labels-idx1-ubyte.gz",
              "label 1 is 10");
}

TEST(FashionMnistErrors, NegativeLimit) {
  const std::string dir = SyntheticDir(ImagesIdx(1), LabelsIdx({1}));
  auto r = LoadFashionMnist(dir, false, -5);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
}

}  // namespace
}  // namespace nino::trainer
