"""nino: NiNo steps for PyTorch training through a nino_nowcaster service.

    opt = nino.NowcastOptimizer(torch.optim.Adam(model.parameters(), lr=1e-3), model,
                                nowcaster="127.0.0.1:50051", max_train_steps=10000)

See python/README.md.
"""

import pkgutil

# A source checkout finds the generated nino.v1 stubs in bazel-bin/python/nino too
# (PYTHONPATH=python:bazel-bin/python); see nino/v1/__init__.py.
__path__ = pkgutil.extend_path(__path__, __name__)

from .describe import describe_llama, describe_model
from .optimizer import NowcastOptimizer, NowcasterRefused, StepOutcome
from .schedule import horizon_at, horizon_schedule

__all__ = ["NowcastOptimizer", "NowcasterRefused", "StepOutcome", "describe_llama",
           "describe_model", "horizon_at", "horizon_schedule"]
__version__ = "0.1.0"
