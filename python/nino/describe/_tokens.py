"""The ops of token sequences (version 2): patch tokens (to_tokens), class tokens and position
tables (embedding ops into the sequence's group), nn.Embedding, nn.MultiheadAttention
(attention + dense), selecting a token, a mean over the tokens, integer ids and parameter
views. A token sequence has its units on the last axis and its tokens on axis 1 (B, T, d) or
axis 0 (T, B, d); model inputs and embeddings of (B, T) ids are taken as batch-first."""

import torch

from ._base import DescriberBase
from ._tables import HAND_ATTENTION, IDS_NAMES
from ._values import AttentionResult, Const, Ids, Param, Pending, Value

_FULL = slice(None, None, None)


class TokenOps(DescriberBase):
    """Maps one fx node each; returns the node's value (or fails naming it)."""

    # ----- layouts -----

    def transpose(self, node, value, kind, out):
        """(B, C, L) -> (B, L, C) or (L, B, C): alias 'to_tokens'; (B, T, d) <-> (T, B, d):
        alias 'transpose'. Anything else moves the units."""
        nd = len(value.shape)
        perm = self._permutation(node, kind, nd)
        axis = perm.index(value.axis)
        if nd == 3 and value.tokens is None and value.axis == 1 and axis == 2:
            return self.alias(value, "to_tokens", out, 2, perm.index(2))
        if nd == 3 and value.tokens is not None and axis == 2:
            return self.alias(value, "transpose", out, 2, perm.index(value.tokens))
        self.fail("%s %s of shape %s moves the units from axis %d to axis %d (only (B, C, L) -> "
                  "(B, L, C) patch tokens and swapping the batch and token axes are mapped)%s" %
                  (kind, perm, list(value.shape), value.axis, axis,
                   "; " + HAND_ATTENTION if value.tokens is not None else ""))

    def _permutation(self, node, kind, nd):
        """The axis permutation of a transpose / permute node (out axis i = in axis perm[i])."""
        args = list(node.args[1:])
        if kind == "permute":
            dims = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
            dims = list(node.kwargs.get("dims", dims))
            if sorted(d % nd for d in dims) != list(range(nd)):
                self.fail("permute %s is not a permutation of %d axes" % (dims, nd))
            return [d % nd for d in dims]
        a = node.kwargs.get("dim0", args[0] if args else None)
        b = node.kwargs.get("dim1", args[1] if len(args) > 1 else None)
        if not isinstance(a, int) or not isinstance(b, int):
            self.fail("%s of axes that are not constants (%r, %r)" % (kind, a, b))
        perm = list(range(nd))
        perm[a % nd], perm[b % nd] = perm[b % nd], perm[a % nd]
        return perm

    def select(self, node, value, out):
        """x[:, 0] of (B, T, d) or x[0] of (T, B, d): alias 'select_token' (B, d)."""
        index = node.args[1]
        items = list(index) if isinstance(index, tuple) else [index]
        while items and (items[-1] is Ellipsis or items[-1] == _FULL):
            items.pop()
        t = value.tokens
        if t is None or len(items) != t + 1 or any(i != _FULL for i in items[:t]) or \
                isinstance(items[t], bool) or not isinstance(items[t], int):
            self.fail("indexing or slicing a tensor has no description op (only selecting one "
                      "token, x[:, 0] of (B, T, d) or x[0] of (T, B, d), has)")
        return self.alias(value, "select_token", out, value.axis - 1, None)

    def token_mean(self, value, kind, keep, out):
        """A mean (or max) over the token axis: alias 'token_mean'."""
        axis = value.axis if keep else value.axis - (value.tokens < value.axis)
        if out[axis] != value.shape[value.axis]:
            self.fail("%s over the tokens changes the unit count" % kind)
        return self.alias(value, "token_" + kind, out, axis, None)

    # ----- class tokens and position tables -----

    def class_tokens(self, values, dim, out):
        """torch.cat([cls.expand(B, -1, -1), x], dim=1): an `embedding` op (kind "token") per
        parameter, into x's group."""
        seqs = [v for v in values if isinstance(v, Value)]
        params = [v for v in values if isinstance(v, Param)]
        if len(seqs) != 1 or len(seqs) + len(params) != len(values):
            self.fail("torch.cat of parameters with %d traced tensors (a class token is one "
                      "parameter, or several, concatenated to one token sequence)" % len(seqs))
        x = seqs[0]
        nd = len(x.shape)
        if x.tokens is None or dim % nd != x.tokens:
            self.fail("parameter '%s' is concatenated along dim %d, not along the token axis of "
                      "a token sequence (shape %s, tokens on axis %s)" %
                      (params[0].name, dim, list(x.shape), x.tokens))
        src = self.groups[x.group]
        self.consume(x)
        group = x.group
        for i, p in enumerate(params):
            shape = p.shape or tuple(p.tensor.shape)
            rows = p.tensor.numel() // max(p.tensor.shape[-1], 1) if p.tensor.dim() else 0
            if len(shape) != nd or p.tensor.shape[-1] != src.units or shape[x.tokens] != rows:
                self.fail("parameter '%s' %s (seen as %s) does not add %s token(s) of %d units "
                          "(one per row of the table)" %
                          (p.name, list(p.tensor.shape), list(shape), rows, src.units))
            name = self.node.name if i == len(params) - 1 else "%s.%d" % (self.node.name, i)
            op = {"op": "embedding", "inputs": [group],
                  "weight": self.take_param(p.tensor, "class token"), "kind": "token"}
            self.emit(op, src.units, src.root, name)
            group = name
        return Value(self.node.name, x.axis, out, x.tokens)

    def position(self, values, out):
        """x + pos (a (1, T, d) parameter, or nn.Embedding of torch.arange ids): an `embedding`
        op (kind "position") into x's group."""
        x = next(v for v in values if isinstance(v, Value))
        p = next(v for v in values if not isinstance(v, Value))
        table = p.tensor if isinstance(p, Param) else p.weight
        what = ("parameter '%s'" % p.name if isinstance(p, Param) else
                "the position embedding '%s'" % p.node_name)
        if x.tokens is None:
            self.fail("%s is added to a tensor that is not a token sequence (shape %s; only a "
                      "position table added to a (B, T, d) sequence is an 'embedding' op, and "
                      "tensor + tensor of equal shape an 'add' op)" % (what, list(x.shape)))
        shape = tuple(p.shape or table.shape) if isinstance(p, Param) else p.shape
        nd = len(x.shape)
        padded = (1,) * (nd - len(shape)) + shape
        # The units and tokens as x's; the batch axis 1 (a parameter) or x's (positions looked
        # up for every sequence).
        batch = (1,) if isinstance(p, Param) else (1, x.shape[3 - x.axis - x.tokens])
        if len(shape) > nd or tuple(out) != x.shape or any(
                padded[k] != x.shape[k] if k in (x.axis, x.tokens) else padded[k] not in batch
                for k in range(nd)):
            self.fail("%s of shape %s does not broadcast over the batch of the token sequence "
                      "%s as one row per token" % (what, list(shape), list(x.shape)))
        src = self.groups[x.group]
        self.consume(x)
        op = {"op": "embedding", "inputs": [x.group],
              "weight": self.take_param(table, "position table"), "kind": "position"}
        self.emit(op, src.units, src.root)
        return Value(self.node.name, x.axis, out, x.tokens)

    # ----- modules -----

    def embedding_module(self, node, m, out):
        """nn.Embedding of token ids: an `embedding` op (kind "token") creating a group; of
        torch.arange ids: a position table waiting for its addition (Pending)."""
        arg = node.args[0] if node.args else node.kwargs.get("input")
        ids = self.values.get(arg) if isinstance(arg, torch.fx.Node) else None
        if not isinstance(ids, Ids):
            self.fail("nn.Embedding reads %s; its ids must be an integer model input (token ids) "
                      "or torch.arange (positions), possibly through unsqueeze / expand / view / "
                      "indexing" % ("a tensor that carries units" if isinstance(ids, Value)
                                    else "ids computed by other ops"))
        if ids.arange:
            return Pending(node.name, m.weight, out)
        if len(out) not in (2, 3):
            self.fail("nn.Embedding of ids of shape %s: ids (B,) or (B, T) are mapped" %
                      list(out[:-1]))
        self.emit({"op": "embedding", "weight": self.take_param(m.weight, "weight"),
                   "kind": "token"}, m.embedding_dim)
        return Value(node.name, len(out) - 1, out, 1 if len(out) == 3 else None)

    def attention_module(self, node, m):
        """nn.MultiheadAttention (self-attention): `attention` (packed in_proj) + `dense`
        (out_proj), whose group is the module's result."""
        names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
        args = dict(zip(names, node.args), **node.kwargs)
        q, k, v = (args.get(n) for n in names[:3])
        if not m._qkv_same_embed_dim:
            self.fail("nn.MultiheadAttention with kdim / vdim (%d / %d) != embed_dim (%d) is not "
                      "mapped" % (m.kdim, m.vdim, m.embed_dim))
        if not (isinstance(q, torch.fx.Node) and q is k and k is v):
            self.fail("cross-attention (query, key and value are not the same tensor: %s) is not "
                      "mapped; only self-attention is" %
                      ", ".join(getattr(a, "name", repr(a)) for a in (q, k, v)))
        for n in ("key_padding_mask", "attn_mask"):
            mask = self.values.get(args.get(n)) if isinstance(args.get(n), torch.fx.Node) else None
            if isinstance(mask, (Value, Param, Pending, AttentionResult)):
                self.fail("its %s carries units or parameters (a mask is an integer / bool "
                          "model input, a buffer or computed from those)" % n)
        if m.bias_k is not None or m.bias_v is not None:
            self.fail("nn.MultiheadAttention with add_bias_kv=True is not mapped")
        x = self.values.get(q)
        if not isinstance(x, Value):
            self.refuse_special("nn.MultiheadAttention", x)
            self.fail("nn.MultiheadAttention is not applied to a traced tensor")
        want = 1 if m.batch_first else 0
        if len(x.shape) != 3 or x.axis != 2 or x.tokens != want:
            self.fail("nn.MultiheadAttention(batch_first=%s) reads %s, but its input has shape "
                      "%s with units on axis %d and tokens on axis %s (model inputs and "
                      "embeddings are taken as (B, T, d); x.transpose(0, 1) swaps)" %
                      (m.batch_first, "(B, T, d)" if want else "(T, B, d)", list(x.shape),
                       x.axis, x.tokens))
        if self.groups[x.group].units != m.embed_dim:
            self.fail("nn.MultiheadAttention(embed_dim=%d) reads a group of %d units" %
                      (m.embed_dim, self.groups[x.group].units))
        self.consume(x)
        qkv = "%s.attention" % node.name
        op = {"op": "attention", "inputs": [x.group], "heads": m.num_heads,
              "weight": self.take_param(m.in_proj_weight, "in_proj_weight")}
        if m.in_proj_bias is not None:
            op["bias"] = self.take_param(m.in_proj_bias, "in_proj_bias")
        self.emit(op, m.embed_dim, name=qkv)
        op = {"op": "dense", "inputs": [qkv], "weight": self.take_param(m.out_proj.weight,
                                                                        "out_proj.weight")}
        if m.out_proj.bias is not None:
            op["bias"] = self.take_param(m.out_proj.bias, "out_proj.bias")
        self.emit(op, m.out_proj.out_features)
        shapes = node.meta.get("nino_shapes") or (x.shape,)
        return AttentionResult(Value(node.name, 2, shapes[0], x.tokens))

    def attention_item(self, node, result, out):
        """[0] of nn.MultiheadAttention's result: alias 'attention_output'; [1], the weights,
        only when unused (`out, _ = attn(h, h, h)`)."""
        if node.args[1] != 0 and not node.users:
            return None
        if node.args[1] != 0:
            self.fail("the attention weights ([1] of nn.MultiheadAttention's result) have no "
                      "description op; use [0] (need_weights=False skips computing them)")
        return self.alias(result.value, "attention_output", out)

    # ----- values without neurons -----

    def no_neurons(self, node, name, args):
        """A call none of whose inputs carries neurons: torch.arange -> position ids; ids
        through a view stay ids; anything else is a constant (a mask)."""
        if name == "arange":
            return Ids(node.name, arange=True)
        ids = [v for v in args if isinstance(v, Ids)]
        if ids and name in IDS_NAMES:
            return Ids(ids[0].name, ids[0].arange)
        return Const(node.name)

    def param_view(self, node, name, param, out):
        """cls.expand(B, -1, -1) / cls.repeat(...) / cls.expand_as(x): still the parameter."""
        for n, v in self.tensor_args(node)[1:]:
            if isinstance(v, (Param, Pending, AttentionResult)) or (
                    isinstance(v, Value) and name != "expand_as"):
                self.fail("parameter '%s' is used by '%s' with '%s'" % (param.name, name, n.name))
        return Param(param.name, param.tensor, out)

    def matmul(self, name):
        self.fail("'%s' of two traced tensors: %s" % (name, HAND_ATTENTION))

