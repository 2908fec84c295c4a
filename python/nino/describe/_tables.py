"""The fx -> description mapping tables: which modules, functions and tensor methods map to
which op (by canonical name), the modules refused with a specific reason, and the text that
lists what is supported (every refusal ends with it)."""

import operator

import torch

SUPPORTED = ("Supported (docs/GRAPH_DESCRIPTION.md, model description versions 1 to 4): "
             "nn.Linear, nn.Conv2d (grouped and depthwise too; and F.linear / F.conv2d), "
             "BatchNorm1d/2d, "
             "LayerNorm over the last (unit) axis, GroupNorm, activations, dropout, identity, "
             "max/avg/adaptive pooling, mean over spatial axes, flatten from dim 1 "
             "(torch.flatten, nn.Flatten, x.view(B, -1), x.reshape(B, -1)), addition of two "
             "tensors of equal shape, their product (a gated MLP: silu(gate(x)) * up(x)), "
             "a tensor times a number, torch.cat along the channel axis; for transformers "
             "x.flatten(2).transpose(1, 2) of a conv output (patch tokens), a class-token "
             "parameter concatenated along the token axis, a position table added to the tokens, "
             "nn.Embedding (token ids; torch.arange ids: positions), nn.MultiheadAttention "
             "(self-attention), x[:, 0] and a mean over the tokens; every parameter used exactly "
             "once")

# The refusal of attention written with matmul / softmax (or of the reshapes it needs).
HAND_ATTENTION = ("attention written by hand (matmul / softmax of projected tokens, heads split "
                  "by reshapes) is not mapped: use nn.MultiheadAttention, or pass "
                  "model_description=")

_F = torch.nn.functional
_nn = torch.nn

# Parameter-free modules that keep the shape: alias kind.
ELEMENTWISE_MODULES = {
    _nn.ReLU: "relu", _nn.ReLU6: "relu6", _nn.LeakyReLU: "leaky_relu", _nn.GELU: "gelu",
    _nn.SiLU: "silu", _nn.Sigmoid: "sigmoid", _nn.Tanh: "tanh", _nn.ELU: "elu", _nn.SELU: "selu",
    _nn.CELU: "celu", _nn.Softplus: "softplus", _nn.Mish: "mish", _nn.Hardswish: "hardswish",
    _nn.Hardsigmoid: "hardsigmoid", _nn.Hardtanh: "hardtanh", _nn.Softmax: "softmax",
    _nn.LogSoftmax: "log_softmax", _nn.Dropout: "dropout", _nn.Dropout2d: "dropout2d",
    _nn.Dropout3d: "dropout3d", _nn.AlphaDropout: "alpha_dropout", _nn.Identity: "identity",
}
# Pooling modules: units on axis 1, spatial axes shrink.
POOL_MODULES = {
    _nn.MaxPool1d: "max_pool1d", _nn.MaxPool2d: "max_pool2d", _nn.AvgPool1d: "avg_pool1d",
    _nn.AvgPool2d: "avg_pool2d", _nn.AdaptiveAvgPool1d: "adaptive_avg_pool1d",
    _nn.AdaptiveAvgPool2d: "adaptive_avg_pool2d", _nn.AdaptiveMaxPool1d: "adaptive_max_pool1d",
    _nn.AdaptiveMaxPool2d: "adaptive_max_pool2d",
}
# Functions and tensor methods (by name) that keep the shape.
ELEMENTWISE_NAMES = {
    "relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "gelu", "silu", "sigmoid", "sigmoid_",
    "tanh", "tanh_", "elu", "elu_", "selu", "celu", "softplus", "mish", "hardswish",
    "hardsigmoid", "hardtanh", "hardtanh_", "softmax", "log_softmax", "dropout", "dropout2d",
    "dropout3d", "alpha_dropout", "feature_alpha_dropout", "contiguous", "clone", "identity",
}
POOL_NAMES = {"max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
              "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d"}
RESHAPE_NAMES = {"flatten", "view", "reshape", "squeeze"}
REDUCE_NAMES = {"mean", "amax"}
ADD_NAMES = {"add", "add_", "iadd", "__add__", "__iadd__", "__radd__"}
MUL_NAMES = {"mul", "mul_", "imul", "__mul__", "__imul__", "__rmul__", "multiply"}
CAT_NAMES = {"cat", "concat"}
# Calls that return shapes or metadata, not tensors: skipped.
QUERY_NAMES = {"size", "dim", "numel", "getattr", "getitem", "ndimension"}

# Ops on integer ids that keep them ids (token ids stay token ids, positions stay positions).
IDS_NAMES = {"unsqueeze", "squeeze", "expand", "expand_as", "repeat", "view", "reshape",
             "contiguous", "clone", "long", "int", "to", "getitem"}
# Views of a parameter that a class token goes through before torch.cat.
PARAM_VIEW_NAMES = {"expand", "expand_as", "repeat"}
TRANSPOSE_NAMES = {"transpose", "permute", "swapaxes", "swapdims"}
# Products of two traced tensors: attention written by hand.
MATMUL_NAMES = {"matmul", "bmm", "baddbmm", "einsum", "mm", "__matmul__"}

# Specific refusals: what the op is, so that the message says why.
_LAYER = ("is traced as one module, whose attention fx cannot see: write the block with "
          "nn.MultiheadAttention, nn.LayerNorm and nn.Linear, or pass model_description=")
REFUSED_MODULES = (
    (_nn.TransformerEncoderLayer, "nn.TransformerEncoderLayer " + _LAYER),
    (_nn.TransformerDecoderLayer, "nn.TransformerDecoderLayer " + _LAYER),
    (_nn.Transformer, "nn.Transformer " + _LAYER),
    (_nn.TransformerEncoder, "nn.TransformerEncoder " + _LAYER),
    (_nn.TransformerDecoder, "nn.TransformerDecoder " + _LAYER),
    (_nn.EmbeddingBag, "nn.EmbeddingBag (a sum or mean of rows per bag) has no description op; "
                       "nn.Embedding has"),
)


def _function_names():
    """call_function targets -> canonical names."""
    names = {operator.add: "add", operator.iadd: "add", torch.add: "add", torch.cat: "cat",
             operator.mul: "mul", operator.imul: "mul", torch.mul: "mul",
             operator.getitem: "getitem", getattr: "getattr", torch.flatten: "flatten",
             torch.reshape: "reshape", torch.squeeze: "squeeze", torch.mean: "mean",
             torch.amax: "amax", _F.linear: "linear", _F.conv2d: "conv2d",
             torch.arange: "arange", torch.transpose: "transpose", torch.permute: "permute",
             torch.matmul: "matmul", operator.matmul: "matmul", torch.bmm: "bmm",
             torch.einsum: "einsum", torch.baddbmm: "baddbmm", torch.mm: "mm"}
    if hasattr(torch, "concat"):
        names[torch.concat] = "cat"
    for name in ELEMENTWISE_NAMES | POOL_NAMES:
        for ns in (_F, torch):
            fn = getattr(ns, name, None)
            if callable(fn):
                names.setdefault(fn, name)
    return names


FUNCTION_NAMES = _function_names()
