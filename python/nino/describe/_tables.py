"""The fx -> description mapping tables: which modules, functions and tensor methods map to
which op (by canonical name), the modules refused with a specific reason, and the text that
lists what is supported (every refusal ends with it)."""

import operator

import torch

SUPPORTED = ("Supported in model description version 1 (docs/GRAPH_DESCRIPTION.md): nn.Linear, "
             "nn.Conv2d with groups=1 (and F.linear / F.conv2d), BatchNorm1d/2d, LayerNorm over "
             "the last (unit) axis, GroupNorm, activations, dropout, identity, max/avg/adaptive "
             "pooling, mean over spatial axes, flatten from dim 1 (torch.flatten, nn.Flatten, "
             "x.view(B, -1), x.reshape(B, -1)), addition of two tensors of equal shape, "
             "torch.cat along the channel axis; every parameter used exactly once")

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
CAT_NAMES = {"cat", "concat"}
# Calls that return shapes or metadata, not tensors: skipped.
QUERY_NAMES = {"size", "dim", "numel", "getattr", "getitem", "ndimension"}

# Specific refusals: what the op is, so that the message says why.
REFUSED_MODULES = (
    (_nn.MultiheadAttention, "attention is not in description version 1 (the 'gpt2' and "
                             "'llama' graph kinds cover those layouts)"),
    (_nn.TransformerEncoderLayer, "attention is not in description version 1"),
    (_nn.TransformerDecoderLayer, "attention is not in description version 1"),
    (_nn.Transformer, "attention is not in description version 1"),
    (_nn.TransformerEncoder, "attention is not in description version 1"),
    (_nn.TransformerDecoder, "attention is not in description version 1"),
    (_nn.Embedding, "embeddings are not in description version 1"),
    (_nn.EmbeddingBag, "embeddings are not in description version 1"),
)


def _function_names():
    """call_function targets -> canonical names."""
    names = {operator.add: "add", operator.iadd: "add", torch.add: "add", torch.cat: "cat",
             operator.getitem: "getitem", getattr: "getattr", torch.flatten: "flatten",
             torch.reshape: "reshape", torch.squeeze: "squeeze", torch.mean: "mean",
             torch.amax: "amax", _F.linear: "linear", _F.conv2d: "conv2d"}
    if hasattr(torch, "concat"):
        names[torch.concat] = "cat"
    for name in ELEMENTWISE_NAMES | POOL_NAMES:
        for ns in (_F, torch):
            fn = getattr(ns, name, None)
            if callable(fn):
                names.setdefault(fn, name)
    return names


FUNCTION_NAMES = _function_names()
