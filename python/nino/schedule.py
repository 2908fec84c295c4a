"""The NiNo horizon schedule, exactly as common/nino/schedule.cc (NINO_SPEC.md 5.3)."""

import math


def horizon_schedule(max_train_steps, period, p=2.0, seq_len=40):
    """k_i = round((40^(1/p) + (1 - 40^(1/p)) * i/(n-1))^p), i = 0..n-1,
    n = max(1, max_train_steps // period), rounding half to even; n = 1 gives [seq_len]."""
    n = max(1, max_train_steps // period if period > 0 else 1)
    start = math.pow(float(seq_len), 1.0 / p)
    out = []
    for i in range(n):
        # numpy.linspace(start, 1, n): start + i * step, with the last point exactly 1.
        if n == 1:
            x = start
        elif i == n - 1:
            x = 1.0
        else:
            step = (1.0 - start) / float(n - 1)
            x = start + float(i) * step
        out.append(int(round(math.pow(x, p))))  # round(): half to even, as std::nearbyint
    return out


def horizon_at(schedule, step_idx, period):
    """k of the NiNo step taken at 0-based optimizer call index `step_idx`."""
    if not schedule:
        return 1
    i = min(len(schedule) - 1, step_idx // period if period > 0 else 0)
    return schedule[max(0, i)]
