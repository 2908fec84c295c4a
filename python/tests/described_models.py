"""Models of the describe_model tests (an MLP on images, the FM-16 CNN, LeNet-5, a small ResNet,
the benchmark's ViT, a token model, a gated MLP and a tiny Llama with grouped-query attention) and
two helpers: the chain form of a description and the
graph size its contract gives (docs/GRAPH_DESCRIPTION.md, "Invariants" and "Version 2")."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def Mlp():  # noqa: N802  a model class in the tests' eyes
    """784-32-16-10 on 28x28 images (fc.1, fc.3, fc.5): the flatten of the input folds into the
    input group."""
    return _Seq(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                nn.Linear(16, 10))


def fm16():
    """The official FM-16 CNN (trainer/models.cc; python/bench/bench_client.py): fc.0.weight,
    fc.0.bias, ..., fc.8.bias."""
    return _Seq(nn.Conv2d(1, 16, 3, stride=2), nn.ReLU(),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


class _Seq(nn.Module):
    """A module whose layers are `fc.<i>`."""

    def __init__(self, *layers):
        super().__init__()
        self.fc = nn.Sequential(*layers)

    def forward(self, x):
        return self.fc(x)


class LeNet5(nn.Module):
    """conv5x5 1->6, maxpool, conv5x5 6->16, maxpool, flatten 16*4*4, fc 120, 84, 10."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class BasicBlock(nn.Module):
    """The ResNet basic block: two 3x3 convs with BatchNorm; an identity shortcut, or a 1x1
    conv + BatchNorm projection when the shape changes."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """Stem 1->8, a block 8->8 (identity shortcut), a block 8->16 stride 2 (projection), global
    average pool, fc 16->10."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.layer1 = BasicBlock(8, 8, 1)
        self.layer2 = BasicBlock(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class ViTBlock(nn.Module):
    """A pre-norm transformer block (python/bench/vision_steps_to_target.py)."""

    def __init__(self, d, heads, batch_first=True):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=batch_first)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    """The ViT of python/bench/vision_steps_to_target.py (copied, not imported): patch 7 (16
    patches of 28x28), d 64, 2 pre-norm blocks, 4 heads, a class token that the linear head
    reads, learned positions."""

    def __init__(self, d=64, depth=2, heads=4, patch=7):
        super().__init__()
        n = (28 // patch) ** 2
        self.patch = nn.Conv2d(1, d, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
        self.blocks = nn.Sequential(*[ViTBlock(d, heads) for _ in range(depth)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)  # (B, 16, d)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.blocks(x)
        return self.head(self.ln(x[:, 0]))


class SeqFirstViT(nn.Module):
    """The ViT with batch_first=False attention: (T, B, d) tokens (permute(2, 0, 1) of the
    patches, a (1, 1, d) class token and (T, 1, d) positions), the class token read as x[0];
    one block."""

    def __init__(self, d=16, heads=2, patch=7):
        super().__init__()
        n = (28 // patch) ** 2
        self.patch = nn.Conv2d(1, d, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(n + 1, 1, d) * 0.02)
        self.block = ViTBlock(d, heads, batch_first=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).permute(2, 0, 1)  # (16, B, d)
        x = torch.cat([self.cls.expand(-1, x.shape[1], -1), x], dim=0) + self.pos
        return self.head(self.block(x)[0])


class TokenModel(nn.Module):
    """Token ids (B, T) -> nn.Embedding + position nn.Embedding of torch.arange, one
    attention block with a padding mask, the mean over the tokens, an untied head."""

    def __init__(self, vocab=20, d=16, heads=2, max_len=12):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(max_len, d)
        self.block = ViTBlock(d, heads)
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, ids):
        pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        x = self.wte(ids) + self.wpe(pos)
        h = self.block.ln1(x)
        x = x + self.block.attn(h, h, h, key_padding_mask=ids == 0)[0]
        x = x + self.block.mlp(self.block.ln2(x))
        return self.head(self.ln(x).mean(1))


def vit_graph_size(d=64, depth=2, heads=4, patch=7, classes=10):
    """(nodes, edges) of the ViT's graph, the contract's closed form written out for ViT(d,
    depth, heads, patch) on 28x28 images: n = (28 / patch)^2 patches + 1 class token."""
    tokens = (28 // patch) ** 2 + 1
    block_nodes = (2 +                       # ln1 gain and shift (on the sequence's group)
                   heads + 2 + 1 + 2 * d +   # heads, q / v bias, key bias; query, value units
                   (d + 1) +                 # out_proj units and bias
                   2 +                       # ln2
                   (4 * d + 1) + (d + 1))    # MLP
    nodes = (1 + (d + 1) + 1 + tokens +      # input, patch conv + bias, class token, positions
             depth * block_nodes + 2 + (classes + 1))  # blocks, final LayerNorm, head
    block_edges = (2 * d +                             # ln1
                   3 * d * d + 2 * d + 3 * d +         # q, k, v weights, head ties, biases
                   d * d + d +                         # out_proj
                   d +                                 # residual add
                   2 * d +                             # ln2
                   4 * d * d + 4 * d +                 # MLP: fc 1 and its bias
                   4 * d * d + d +                     # fc 2 and its bias
                   d)                                  # residual add
    edges = (d + d +                  # patch conv: one edge per (in, out) pair, its bias
             d + tokens * d +         # class-token row, position rows
             depth * block_edges + 2 * d + classes * d + classes)
    return nodes, edges + nodes       # + one self-loop per node


def chain_form(description):
    """The description as a strict chain [("input", units), ("dense", weight, bias),
    ("norm", weight, bias), ("flatten", positions), ...] with the aliases resolved;
    AssertionError if it is no chain."""
    chain, where = [], {}
    for op in description["ops"]:
        kind = op["op"]
        if kind == "alias":
            where[op["output"]] = where[op["inputs"][0]]
            continue
        if kind == "input":
            assert not chain, "a second input"
            chain.append(("input", op["units"]))
        elif kind in ("dense", "norm", "flatten"):
            assert where[op["inputs"][0]] == len(chain) - 1, "%s does not read the previous " \
                "op" % op["output"]
            chain.append((kind, op["positions"]) if kind == "flatten" else
                         (kind, op.get("weight"), op.get("bias")))
        else:
            raise AssertionError("a %s op is not in a chain" % kind)
        where[op["output"]] = len(chain) - 1
    return chain


class DepthwiseSeparable(nn.Module):
    """A MobileNet-style network: stem conv, a depthwise 3x3 + pointwise 1x1 block, a grouped
    3x3 conv (groups 4), global pooling, a linear head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pw = nn.Conv2d(8, 16, 1)
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.bn0(self.stem(x)))
        x = F.relu(self.bn1(self.dw(x)))
        x = F.relu(self.grouped(self.pw(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def graph_size(description, model):
    """(nodes, edges) of the graph built from the description (the contract's closed form):
    nodes = input units + units of dense and flatten groups + one per 1-D parameter + one per
    embedding row + units of embeddings without an input + per attention op heads + 2 D (query
    and value units); edges = parameter numels (conv: out * in) + flatten ties + residual
    edges + 2 D head edges per attention op + one self-loop per node."""
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    units, nodes, edges = {}, 0, 0
    for op in description["ops"]:
        kind, ins = op["op"], op.get("inputs", [])
        if kind == "input":
            units[op["output"]] = op["units"]
            nodes += op["units"]
        elif kind == "dense":
            w = shapes[op["weight"]]
            units[op["output"]] = w[0]
            nodes += w[0]
            edges += w[0] * w[1]
            if op.get("bias"):
                nodes += 1
                edges += w[0]
        elif kind == "norm":
            units[op["output"]] = units[ins[0]]
            for role in ("weight", "bias"):
                if op.get(role):
                    nodes += 1
                    edges += units[ins[0]]
        elif kind == "flatten":
            units[op["output"]] = units[ins[0]] * op["positions"]
            nodes += units[op["output"]]
            edges += units[op["output"]]
        elif kind in ("add", "multiply"):
            units[op["output"]] = units[ins[0]]
            edges += units[ins[0]]
        elif kind == "concat":
            units[op["output"]] = sum(units[x] for x in ins)
        elif kind == "embedding":
            w = shapes[op["weight"]]
            numel = math.prod(w)
            nodes += numel // w[-1]  # one node per row
            edges += numel
            units[op["output"]] = w[-1]
            if not ins:
                nodes += w[-1]
        elif kind == "attention" and "query" in op:  # split, kv_heads (version 4) or not
            (D, d), (D_kv, _) = shapes[op["query"]], shapes[op["key"]]
            repeat = D if D_kv < D else 0  # the per-head outputs of grouped-query attention
            units[op["output"]] = D
            nodes += op["heads"] + D + D_kv + repeat
            edges += d * (D + 2 * D_kv) + 2 * D + repeat
            for role in ("query_bias", "key_bias", "value_bias"):
                if op.get(role):
                    nodes += 1
                    edges += shapes[op[role]][0]
        elif kind == "attention":  # packed (3 D, d) weight, as nn.MultiheadAttention
            d3, d = shapes[op["weight"]]
            units[op["output"]] = d3 // 3
            nodes += op["heads"] + 2 * (d3 // 3)
            edges += d3 * d + 2 * (d3 // 3)
            if op.get("bias"):
                nodes += 3  # the q- and v-bias nodes, the key bias on the input group
                edges += d3
        else:
            units[op["output"]] = units[ins[0]]
    return nodes, edges + nodes


class GatedMlp(nn.Module):
    """A SwiGLU MLP on flat features: down(silu(gate(x)) * up(x)), then a head."""

    def __init__(self, d=12, ff=20):
        super().__init__()
        self.gate = nn.Linear(d, ff, bias=False)
        self.up = nn.Linear(d, ff, bias=False)
        self.down = nn.Linear(ff, d, bias=False)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        return self.head(x + self.down(F.silu(self.gate(x)) * self.up(x)))


class _RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


class _LlamaLayer(nn.Module):
    def __init__(self, d, heads, kv_heads, ff):
        super().__init__()
        hd = d // heads
        self.heads, self.kv_heads, self.hd = heads, kv_heads, hd
        self.self_attn = nn.Module()
        self.self_attn.q_proj = nn.Linear(d, heads * hd, bias=False)
        self.self_attn.k_proj = nn.Linear(d, kv_heads * hd, bias=False)
        self.self_attn.v_proj = nn.Linear(d, kv_heads * hd, bias=False)
        self.self_attn.o_proj = nn.Linear(heads * hd, d, bias=False)
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(d, ff, bias=False)
        self.mlp.up_proj = nn.Linear(d, ff, bias=False)
        self.mlp.down_proj = nn.Linear(ff, d, bias=False)
        self.input_layernorm = _RMSNorm(d)
        self.post_attention_layernorm = _RMSNorm(d)

    def attention(self, x):
        b, t, _ = x.shape
        a = self.self_attn
        q = a.q_proj(x).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = a.k_proj(x).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        v = a.v_proj(x).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.hd)
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)
        out = scores.masked_fill(mask, float("-inf")).softmax(-1) @ v
        return a.o_proj(out.transpose(1, 2).reshape(b, t, -1))

    def forward(self, x):
        x = x + self.attention(self.input_layernorm(x))
        m = self.mlp
        h = self.post_attention_layernorm(x)
        return x + m.down_proj(F.silu(m.gate_proj(h)) * m.up_proj(h))


class TinyLlama(nn.Module):
    """HF LlamaForCausalLM's parameter names and computation in small (no rotary embedding:
    it has no parameters and does not change the graph): grouped-query attention with kv_heads
    key / value heads, RMSNorm, SwiGLU MLP, untied lm_head unless `tie`."""

    def __init__(self, vocab=6, d=8, layers=2, heads=4, kv_heads=2, ff=12, tie=False):
        super().__init__()
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(vocab, d)
        self.model.layers = nn.ModuleList(_LlamaLayer(d, heads, kv_heads, ff)
                                          for _ in range(layers))
        self.model.norm = _RMSNorm(d)
        self.tie = tie
        if not tie:
            self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x)
        x = self.model.norm(x)
        return x @ self.model.embed_tokens.weight.t() if self.tie else self.lm_head(x)
