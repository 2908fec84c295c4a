#!/usr/bin/env python3
"""Loss curves of nino_metatrain runs (gnuplot, PNG; matplotlib is not installed here).

usage: plot_metatrain.py OUT.png LABEL=OUT_DIR [LABEL=OUT_DIR ...] [--eval EVAL.jsonl]
Reads OUT_DIR/metrics.jsonl: the training loss per step (moving average over 25 steps) and the
validation L1 lines (points). --eval: lines printed by `nino_metatrain --eval_ckpts` (one JSON
per checkpoint) are drawn as horizontal lines (validation L1 of other checkpoints, and of the
"no change" prediction). Uses only the standard library and gnuplot.
"""
import json
import os
import subprocess
import sys
import tempfile


def moving_average(values, n):
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= n:
            acc -= values[i - n]
        out.append(acc / min(i + 1, n))
    return out


def main(argv):
    args = argv[1:]
    evals = []
    if "--eval" in args:
        i = args.index("--eval")
        with open(args[i + 1]) as f:
            evals = [json.loads(l) for l in f if l.strip()]
        del args[i:i + 2]
    if len(args) < 2:
        sys.stderr.write(__doc__)
        return 2
    out, runs = args[0], args[1:]
    tmp = tempfile.mkdtemp(prefix="nino_metaplot_")
    plots = []
    for k, spec in enumerate(runs):
        label, run = spec.split("=", 1)
        steps, loss, vsteps, vl1 = [], [], [], []
        with open(os.path.join(run, "metrics.jsonl")) as f:
            for line in f:
                j = json.loads(line)
                if "loss" in j:
                    steps.append(j["step"])
                    loss.append(j["loss"])
                if "val_l1" in j:
                    vsteps.append(j["step"])
                    vl1.append(j["val_l1"])
        tr = os.path.join(tmp, f"train{k}.dat")
        with open(tr, "w") as f:
            for s, v in zip(steps, moving_average(loss, 25)):
                f.write(f"{s} {v}\n")
        plots.append(f"'{tr}' using 1:2 with lines lw 2 title '{label}: train loss (avg 25)'")
        if vsteps:
            va = os.path.join(tmp, f"val{k}.dat")
            with open(va, "w") as f:
                for s, v in zip(vsteps, vl1):
                    f.write(f"{s} {v}\n")
            plots.append(f"'{va}' using 1:2 with linespoints pt 7 ps 1.2 title '{label}: held-out L1'")
    for j in evals:
        name = os.path.basename(j["ckpt"])
        plots.append(f"{j['val_l1']} with lines dt 2 lw 2 title 'held-out L1, {name}'")
    if evals:
        plots.append(f"{evals[0]['val_l1_no_change']} with lines dt 3 lw 2 lc rgb 'black' "
                     "title 'held-out L1, no change'")
    script = os.path.join(tmp, "plot.gp")
    with open(script, "w") as f:
        f.write("set terminal pngcairo size 1100,650 font ',11'\n")
        f.write(f"set output '{out}'\n")
        f.write("set termoption noenhanced\n")
        f.write("set title 'NiNo meta-training (masked L1, scaled space)'\n")
        f.write("set xlabel 'step'\nset ylabel 'L1'\nset grid\nset key top right\n")
        f.write("plot " + ", \\\n  ".join(plots) + "\n")
    r = subprocess.run(["gnuplot", script])
    if r.returncode != 0:
        # Older gnuplot builds without cairo: the plain png terminal.
        with open(script) as f:
            text = f.read().replace("pngcairo size 1100,650 font ',11'", "png size 1100,650")
        with open(script, "w") as f:
            f.write(text)
        r = subprocess.run(["gnuplot", script])
    return r.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
