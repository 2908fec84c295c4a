#!/usr/bin/env python3
"""Times one OFFICIAL NiNo step (SamsungSAILMontreal/nino @ 84fb0cf, in ../shared/reference/official_nino, run
through ../shared/reference/cpu_shim) on the benchmark models of nino_bench: fm16 (the official FM-16 Net), mlp512
(nn.Sequential 784-512-512-512-10, the same 932,362 parameters and 934,696 edges as nino_bench's mlp512), gpt2-3-64
(GPT-2 3 layers, d 64, 4 heads, vocabulary 50257, context 1024) and llama-tiny (4 layers, d 128, 4 heads, 2 KV
heads, SwiGLU 344, vocabulary 8192, untied lm_head). For measurement only: nothing here is official code, and nothing
of the official code is copied into the project; it is imported from the shared folder at run time.

For fm16 and mlp512 the step is set up and timed as ../shared/reference/official_bench/time_official_step.py does
(same models, same synthetic states base + 0.01 i noise, NiNo.step() at step 1000 of 10,000, k = 40); this script
also reports the process CPU time of each step (time.process_time), which, unlike the wall time, is not inflated
when other processes share the machine (at one thread).

The shim has no HuggingFace models (its `transformers` is a stub with marker classes), so the model here is a plain
nn.Module whose parameters carry the HF names and shapes (GPT-2 Conv1D layout: [in, out]; Llama: nn.Linear
[out, in]) and that is also an instance of the stub's GPT2PreTrainedModel / LlamaPreTrainedModel with the config
fields NiNo.set_model reads (n_head; num_attention_heads, num_key_value_heads), so the official code picks its own
NeuralGraphGPT / NeuralGraphLlama exactly as for a real HF model. Timed as time_official_step.py times FM-16: one
NiNo.step() at step 1000 of 10,000 (k = 40), after a warm-up; graph + LPE build reported separately.

Usage: /usr/bin/python3 tools/official_step.py --model fm16|mlp512|gpt2-3-64|llama-tiny [--threads 1] [--reps 1]
Prints one line 'RESULT {json}'.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get('NINO_SHARED_DIR', os.path.join(ROOT, '..', 'shared'))
REF = os.path.join(SHARED, 'reference')
ap = argparse.ArgumentParser()
ap.add_argument('--model', default='gpt2-3-64', choices=['fm16', 'mlp512', 'gpt2-3-64', 'llama-tiny'])
ap.add_argument('--threads', type=int, default=1)
ap.add_argument('--reps', type=int, default=1)
ap.add_argument('--warmup', type=int, default=1)
ap.add_argument('--ckpt', default='nino_no_posw')
A = ap.parse_args()

sys.path.insert(0, os.path.join(REF, 'cpu_shim'))
sys.path.insert(0, os.path.join(REF, 'official_nino'))
import torch  # noqa: E402

torch.set_num_threads(A.threads)
torch.set_num_interop_threads(1)
import torch113_compat  # noqa: E402
import transformers  # noqa: E402  (the shim's stub)

torch113_compat.apply()
from optim import NiNo  # noqa: E402


def gpt2_shapes(vocab, ctx, d, layers):
    s = [('transformer.wte.weight', (vocab, d)), ('transformer.wpe.weight', (ctx, d))]
    for i in range(layers):
        p = f'transformer.h.{i}.'
        s += [(p + 'ln_1.weight', (d,)), (p + 'ln_1.bias', (d,)),
              (p + 'attn.c_attn.weight', (d, 3 * d)), (p + 'attn.c_attn.bias', (3 * d,)),
              (p + 'attn.c_proj.weight', (d, d)), (p + 'attn.c_proj.bias', (d,)),
              (p + 'ln_2.weight', (d,)), (p + 'ln_2.bias', (d,)),
              (p + 'mlp.c_fc.weight', (d, 4 * d)), (p + 'mlp.c_fc.bias', (4 * d,)),
              (p + 'mlp.c_proj.weight', (4 * d, d)), (p + 'mlp.c_proj.bias', (d,))]
    s += [('transformer.ln_f.weight', (d,)), ('transformer.ln_f.bias', (d,))]
    return s


def llama_shapes(vocab, d, layers, heads, kv, ffn):
    hd = d // heads
    s = [('model.embed_tokens.weight', (vocab, d))]
    for i in range(layers):
        p = f'model.layers.{i}.'
        s += [(p + 'self_attn.q_proj.weight', (heads * hd, d)), (p + 'self_attn.k_proj.weight', (kv * hd, d)),
              (p + 'self_attn.v_proj.weight', (kv * hd, d)), (p + 'self_attn.o_proj.weight', (d, heads * hd)),
              (p + 'mlp.gate_proj.weight', (ffn, d)), (p + 'mlp.up_proj.weight', (ffn, d)),
              (p + 'mlp.down_proj.weight', (d, ffn)),
              (p + 'input_layernorm.weight', (d,)), (p + 'post_attention_layernorm.weight', (d,))]
    s += [('model.norm.weight', (d,)), ('lm_head.weight', (vocab, d))]
    return s


class Config:
    pass


def make_model(base_cls, shapes, config):
    class NamedParams(torch.nn.Module, base_cls):  # the stub's marker class: NiNo picks the official graph class
        pass

    root = NamedParams()
    root.config = config
    g = torch.Generator().manual_seed(0)
    for name, shape in shapes:
        *path, leaf = name.split('.')
        m = root
        for part in path:
            if not hasattr(m, part):
                m.add_module(part, torch.nn.Module())
            m = getattr(m, part)
        w = torch.ones(shape) if len(shape) == 1 else torch.randn(shape, generator=g) * 0.02
        m.register_parameter(leaf, torch.nn.Parameter(w))
    assert [n for n, _ in root.named_parameters()] == [n for n, _ in shapes], 'parameter order differs'
    return root


cfg = Config()
torch.manual_seed(0)
if A.model == 'fm16':
    from utils import Net, VISION_TASKS  # noqa: E402  (official, imported at run time)
    model = Net(**VISION_TASKS['FM-16']['net_args'])
elif A.model == 'mlp512':
    nn = torch.nn
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 10))
elif A.model == 'gpt2-3-64':
    cfg.n_head = 4
    model = make_model(transformers.GPT2PreTrainedModel, gpt2_shapes(50257, 1024, 64, 3), cfg)
else:
    cfg.num_attention_heads, cfg.num_key_value_heads = 4, 2
    model = make_model(transformers.LlamaPreTrainedModel, llama_shapes(8192, 128, 4, 4, 2, 344), cfg)
P = sum(p.numel() for p in model.parameters())

t0 = time.perf_counter()
opt = NiNo(base_opt=None, model=model, ckpt=os.path.join(REF, 'checkpoints', A.ckpt + '.pt'), period=1000,
           max_train_steps=10000, verbose=0)
t_build = time.perf_counter() - t0
E = int(opt.graph.pyg_graph.edge_index.shape[1])
N = int(opt.graph.pyg_graph.num_nodes)
print(f'graph: {type(opt.graph).__name__}, {N} nodes, {E} edges, built in {t_build:.1f} s', file=sys.stderr, flush=True)

base = torch.cat([q.data.view(-1) for q in model.parameters()]).clone()
noise = torch.randn(P, generator=torch.Generator().manual_seed(1))
ctx = [base + 0.01 * i * noise for i in range(5)]


def set_flat(flat):
    i = 0
    for p in model.parameters():
        n = p.numel()
        p.data = flat[i:i + n].view_as(p).clone()
        i += n


times, cpu = [], []
with torch.no_grad():
    for rep in range(A.warmup + A.reps):
        set_flat(ctx[4])
        opt.states = [s.clone() for s in ctx[:4]]
        opt.step_idx = 999
        t = time.perf_counter()
        c = time.process_time()
        opt.step()
        dt = time.perf_counter() - t
        dc = time.process_time() - c
        assert opt.states == [] and opt.step_idx == 1000, 'NiNo step did not fire'
        if A.model not in ('fm16',):
            print(f'step {rep}: {dt:.2f} s', file=sys.stderr, flush=True)
        if rep >= A.warmup:
            times.append(dt)
            cpu.append(dc)
pred = torch.cat([q.data.view(-1) for q in model.parameters()])
res = dict(case=A.model, ckpt=A.ckpt, graph=type(opt.graph).__name__, threads=torch.get_num_threads(), params=P,
           nodes=N, edges=E, graph_build_incl_lpe_s=round(t_build, 3), step_s_median=round(statistics.median(times), 5),
           step_cpu_s_median=round(statistics.median(cpu), 5), step_s=[round(v, 5) for v in times], warmup=A.warmup,
           peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
           pred_finite=bool(torch.isfinite(pred).all()), load_avg=os.getloadavg())
print('RESULT ' + json.dumps(res), flush=True)
