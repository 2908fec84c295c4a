// "(d0, d1, ...)": how the library's error messages print a tensor shape.
#ifndef NINO_COMMON_NINO_SHAPE_STRING_H_
#define NINO_COMMON_NINO_SHAPE_STRING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace nino {

inline std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

}  // namespace nino

#endif  // NINO_COMMON_NINO_SHAPE_STRING_H_
