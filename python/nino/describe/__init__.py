"""describe_model: the model description (docs/GRAPH_DESCRIPTION.md, versions 1-4) of a PyTorch
model, derived by tracing it with torch.fx and running ShapeProp on an example input.

The description says how the parameters connect (which layer's output units feed which layer's
inputs, through which structural op), so that the nowcaster builds the right NiNo graph for
CNNs with pooling and flatten, residual blocks with BatchNorm and concatenations, not only for
strict chains of layers. Mapping (every parameter must appear in exactly one op):

  nn.Linear, nn.Conv2d, F.linear, F.conv2d                         -> dense
                                   (grouped / depthwise convs: dense with groups, version 3)
  BatchNorm1d/2d, LayerNorm over the unit axis, GroupNorm (affine)  -> norm (alias without params)
  activations, dropout, identity, max/avg/adaptive pooling, mean over spatial axes -> alias
  torch.flatten / nn.Flatten / x.view(B, -1) / x.reshape(B, -1) (start_dim 1) -> flatten
                                               (positions from the traced shape; 1 -> alias)
  `+` / torch.add / add_ of two tensors of equal shape             -> add
  `*` / torch.mul of two tensors of equal shape (a gated MLP)       -> multiply (version 4)
  tensor * number, x * f(x) (f parameter-free)                      -> alias
  torch.cat along the unit axis                                    -> concat

A parameter-free flatten of a model input before any layer uses it (an MLP that flattens the
image) folds into the input group: its units are the flattened size. Anything else raises
ValueError naming the fx node, the op and the module path.

`description_to_proto` fills a nino.v1.ModelDescription; `check_description` validates a
description (structure, unit counts and, given the parameter shapes, that every parameter
appears exactly once with a consistent shape).

Modules: _tables (the fx -> op mapping tables), _trace (torch.fx tracing, shapes, source
lines), _values (traced values and unit groups: the axis of the units), _base (the describer's
state, helpers and errors), _layers (the ops of images and flat features), _describer (the
dispatch over the traced graph), _check (validation of the JSON form), _proto (the protocol
message), _llama (describe_llama: the HF Llama layout with grouped-query attention and its gated
MLP, written from the parameter names, not traced).
"""

import torch

from ._check import (DESCRIPTION_VERSION, OPS, check_description, lowest_version,
                     normalize_description)
from ._describer import Describer
from ._llama import describe_llama
from ._proto import description_to_proto
from ._tables import SUPPORTED
from ._trace import named_parameters, propagate_shapes, trace, unwrap

__all__ = ["DESCRIPTION_VERSION", "OPS", "SUPPORTED", "check_description", "describe_llama",
           "describe_model", "description_to_proto", "normalize_description"]


def describe_model(model, example_input):
    """The model description (JSON form, a dict: {"version": 1, "ops": [...]}) of `model`,
    traced with torch.fx and shaped by running it once on `example_input` (a tensor, or a tuple
    of tensors for a forward with several inputs; e.g. one batch). The model is left unchanged
    (run in eval mode under no_grad, on clones of the inputs).

    Raises ValueError, naming the fx node, its op and module path, for what the description
    cannot express (cross-attention, attention written by hand, reshapes other than flatten
    and patch tokens, broadcasting additions, parameters used twice or by other ops, control
    flow on tensor values). Code that reads shapes (`n, c, h, w = x.shape`) is traced with the
    example input's shapes when plain torch.fx tracing fails on it."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError("model must be a torch.nn.Module, got %s" % type(model).__name__)
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    if not inputs or not all(isinstance(x, torch.Tensor) for x in inputs):
        raise TypeError("example_input must be a tensor or a tuple of tensors, got %s" %
                        type(example_input).__name__)
    module = unwrap(model)
    named = named_parameters(module)
    if not named:
        raise ValueError("describe_model: the model has no parameters")
    gm = trace(module, inputs)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(inputs):
        raise ValueError("describe_model: forward takes %d inputs (%s), example_input has %d" %
                         (len(placeholders), ", ".join(n.name for n in placeholders),
                          len(inputs)))
    propagate_shapes(gm, module, inputs)
    describer = Describer(gm, {id(p): n for n, p in named})
    ops = describer.run()
    missing = [n for n, _ in named if n not in describer.used]
    if missing:
        raise ValueError("describe_model: parameter(s) %s are not used by the traced forward "
                         "(every parameter must appear in exactly one op). %s." %
                         (", ".join("'%s'" % n for n in missing), SUPPORTED))
    description = {"version": lowest_version(ops), "ops": ops}
    check_description(description, [(n, tuple(p.shape)) for n, p in named])
    return description
