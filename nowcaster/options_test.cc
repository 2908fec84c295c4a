#include "nowcaster/options.h"

#include <gtest/gtest.h>

namespace nino::nowcaster {
namespace {

TEST(Options, DefaultsAreValid) {
  NowcasterOptions o;
  EXPECT_TRUE(ValidateOptions(o).ok()) << ValidateOptions(o);
  EXPECT_EQ(o.address, "0.0.0.0:50051");
  EXPECT_EQ(o.max_chunk_bytes, 4 << 20);
  EXPECT_EQ(o.metrics_port, 0);
  EXPECT_LE(kDefaultPredictChunkBytes + kChunkHeaderBytes, 4 << 20);
}

TEST(Options, BadValuesNameTheField) {
  struct Case {
    std::function<void(NowcasterOptions&)> set;
    const char* field;
  };
  const Case cases[] = {
      {[](NowcasterOptions& o) { o.address = "localhost"; }, "address"},
      {[](NowcasterOptions& o) { o.address = "h:70000"; }, "address"},
      {[](NowcasterOptions& o) { o.metrics_port = -2; }, "metrics_port"},
      {[](NowcasterOptions& o) { o.device = "tpu"; }, "device"},
      {[](NowcasterOptions& o) { o.memory_budget_bytes = 0; }, "memory_budget_bytes"},
      {[](NowcasterOptions& o) { o.queue_length = 0; }, "queue_length"},
      {[](NowcasterOptions& o) { o.workers = 0; }, "workers"},
      {[](NowcasterOptions& o) { o.max_chunk_bytes = 0; }, "max_chunk_bytes"},
      {[](NowcasterOptions& o) { o.max_message_bytes = o.max_chunk_bytes; }, "max_message_bytes"},
      {[](NowcasterOptions& o) {
         o.models = {{"a", "x"}, {"a", "y"}};
       },
       "models"},
  };
  for (const Case& c : cases) {
    NowcasterOptions o;
    c.set(o);
    absl::Status s = ValidateOptions(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(s.message().find(c.field), absl::string_view::npos) << s;
  }
}

TEST(Options, ParseModelSpecs) {
  auto specs = ParseModelSpecs({"a=/x/a.pt,/y/nino_mlp.pt", "c=c.pt"});
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 3u);
  EXPECT_EQ((*specs)[0].name, "a");
  EXPECT_EQ((*specs)[0].path, "/x/a.pt");
  EXPECT_EQ((*specs)[1].name, "nino_mlp");
  EXPECT_EQ((*specs)[2].path, "c.pt");
  EXPECT_EQ(ParseModelSpecs({"a=x,a=y"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseModelSpecs({"=x"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ParseModelSpecs({})->empty());
}

}  // namespace
}  // namespace nino::nowcaster
