// The NiNo horizon schedule (shared/spec/NINO_SPEC.md section 5.3).
#ifndef NINO_COMMON_NINO_SCHEDULE_H_
#define NINO_COMMON_NINO_SCHEDULE_H_

#include <cstdint>
#include <vector>

namespace nino {

// k_i = round((40^(1/p) + (1 - 40^(1/p)) * i/(n-1))^p), i = 0..n-1, n = max(1, max_steps/period),
// rounding half to even; n = 1 gives {seq_len}.
std::vector<int> HorizonSchedule(int64_t max_train_steps, int64_t period, double p = 2.0,
                                 int seq_len = 40);

// k for the NiNo step taken at 0-based step index `step_idx`.
int HorizonAt(const std::vector<int>& schedule, int64_t step_idx, int64_t period);

}  // namespace nino

#endif  // NINO_COMMON_NINO_SCHEDULE_H_
