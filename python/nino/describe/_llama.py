"""describe_llama: the model description (version 4) of a Hugging Face Llama layout with the
model's real connectivity: grouped-query attention and the gated MLP (SwiGLU). The same
description as the C++ DescribeLlama (common/nino/llama_description.h); both are checked against
one fixture (common/nino/testdata/llama_tiny_description.json).

The graph kind "llama" (chosen from the parameter names when no description is given) stays the
official NeuralGraphLlama graph, which reproduces the official code's quirks; pass this
description (model_description=) for the model's own connectivity instead."""

import re

from ._check import check_description

_LAYER = ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
          "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
          "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight")


def _layers(names):
    """The number of decoder layers (1 + the largest index of model.layers.<i>.*)."""
    indices = [int(m.group(1)) for n in names for m in [re.match(r"model\.layers\.(\d+)\.", n)]
               if m]
    if not indices:
        raise ValueError("describe_llama: no decoder layers (no parameter "
                         "'model.layers.0.self_attn.q_proj.weight')")
    return max(indices) + 1


def _ops(layers, heads, kv_heads, untied):
    ops = [{"op": "embedding", "output": "embed_tokens", "weight": "model.embed_tokens.weight",
            "kind": "token"}]
    x = "embed_tokens"
    for i in range(layers):
        p, g = "model.layers.%d." % i, "layers.%d." % i
        attention = {"op": "attention", "output": g + "self_attn",
                     "inputs": [g + "input_layernorm"], "heads": heads,
                     "query": p + "self_attn.q_proj.weight", "key": p + "self_attn.k_proj.weight",
                     "value": p + "self_attn.v_proj.weight"}
        if kv_heads < heads:
            attention["kv_heads"] = kv_heads
        ops += [
            {"op": "norm", "output": g + "input_layernorm", "inputs": [x],
             "weight": p + "input_layernorm.weight"},
            attention,
            {"op": "dense", "output": g + "o_proj", "inputs": [g + "self_attn"],
             "weight": p + "self_attn.o_proj.weight"},
            {"op": "add", "output": g + "attention_residual", "inputs": [x, g + "o_proj"]},
            {"op": "norm", "output": g + "post_attention_layernorm",
             "inputs": [g + "attention_residual"], "weight": p + "post_attention_layernorm.weight"},
            {"op": "dense", "output": g + "gate_proj", "inputs": [g + "post_attention_layernorm"],
             "weight": p + "mlp.gate_proj.weight"},
            {"op": "alias", "output": g + "act_fn", "inputs": [g + "gate_proj"], "kind": "silu"},
            {"op": "dense", "output": g + "up_proj", "inputs": [g + "post_attention_layernorm"],
             "weight": p + "mlp.up_proj.weight"},
            {"op": "multiply", "output": g + "gated", "inputs": [g + "act_fn", g + "up_proj"]},
            {"op": "dense", "output": g + "down_proj", "inputs": [g + "gated"],
             "weight": p + "mlp.down_proj.weight"},
            {"op": "add", "output": g + "mlp_residual",
             "inputs": [g + "attention_residual", g + "down_proj"]},
        ]
        x = g + "mlp_residual"
    ops.append({"op": "norm", "output": "norm", "inputs": [x], "weight": "model.norm.weight"})
    if untied:
        ops.append({"op": "dense", "output": "lm_head", "inputs": ["norm"],
                    "weight": "lm_head.weight"})
    return ops


def describe_llama(model, num_heads, num_kv_heads=None):
    """The description (JSON form, a dict) of `model`, a torch.nn.Module with HF
    LlamaForCausalLM's parameter names (model.embed_tokens.weight, model.layers.<i>.{self_attn.
    {q,k,v,o}_proj, mlp.{gate,up,down}_proj, input_layernorm, post_attention_layernorm}.weight,
    model.norm.weight, lm_head.weight unless tied), or its list of (name, shape) pairs.
    num_kv_heads: key / value heads (None: num_heads). ValueError, naming the parameter, for
    another layout (a bias, a missing or misshapen weight)."""
    if isinstance(model, (list, tuple)):
        named = [(n, tuple(s)) for n, s in model]
    else:
        named = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    kv = num_heads if num_kv_heads in (None, 0) else num_kv_heads
    if not isinstance(num_heads, int) or num_heads < 1 or not isinstance(kv, int) or kv < 1 or \
            num_heads % kv:
        raise ValueError("describe_llama: num_kv_heads %r does not divide num_heads %r" %
                         (num_kv_heads, num_heads))
    names = [n for n, _ in named]
    layers = _layers(names)
    expected = ["model.embed_tokens.weight"] + \
        ["model.layers.%d.%s" % (i, s) for i in range(layers) for s in _LAYER] + \
        ["model.norm.weight"]
    untied = "lm_head.weight" in names
    if untied:
        expected.append("lm_head.weight")
    if names != expected:
        extra = [n for n in names if n not in expected]
        missing = [n for n in expected if n not in names]
        raise ValueError("describe_llama: not the HF Llama layout in named_parameters order "
                         "(unexpected: %s; missing: %s)" % (extra or "none", missing or "none"))
    description = {"version": 4, "ops": _ops(layers, num_heads, kv, untied)}
    check_description(description, named)  # shapes: d, heads, kv heads and ffn consistent
    return description
