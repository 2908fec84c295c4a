#include "common/nino/schedule.h"

#include <algorithm>
#include <cfenv>
#include <cmath>

namespace nino {

std::vector<int> HorizonSchedule(int64_t max_train_steps, int64_t period, double p, int seq_len) {
  const int64_t n = std::max<int64_t>(1, period > 0 ? max_train_steps / period : 1);
  const double start = std::pow(static_cast<double>(seq_len), 1.0 / p);
  std::vector<int> out;
  out.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    // numpy.linspace(start, 1, n): start + i * step, with the last point exactly 1.
    double x;
    if (n == 1) {
      x = start;
    } else if (i == n - 1) {
      x = 1.0;
    } else {
      const double step = (1.0 - start) / static_cast<double>(n - 1);
      x = start + static_cast<double>(i) * step;
    }
    // k lies in [1, seq_len]; where an extreme p takes start or x^p beyond the doubles (NaN or
    // Inf), k is seq_len, the limit for p -> 0 (the last point is exactly 1^p = 1).
    double k = std::nearbyint(std::pow(x, p));  // half to even
    if (!std::isfinite(k) || k > seq_len) k = seq_len;
    out.push_back(static_cast<int>(std::max(k, 1.0)));
  }
  return out;
}

int HorizonAt(const std::vector<int>& schedule, int64_t step_idx, int64_t period) {
  if (schedule.empty()) return 1;
  const int64_t i = std::min<int64_t>(static_cast<int64_t>(schedule.size()) - 1,
                                      period > 0 ? step_idx / period : 0);
  return schedule[std::max<int64_t>(0, i)];
}

}  // namespace nino
