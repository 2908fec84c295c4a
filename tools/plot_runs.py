#!/usr/bin/env python3
"""Plots validation curves of nino_train runs on one chart (gnuplot, PNG).

usage: plot_runs.py OUT.png LABEL=RUN [LABEL=RUN ...] [--title T]
RUN is a nino_train run directory (reads RUN/metrics.jsonl: val_acc or val_ppl against steps, and
the target from RUN/summary.json when present) or FILE.jsonl@MODEL/OPTIMIZER/SEED[/NINO_MODEL]:
the record of python/bench/vision_steps_to_target.py in FILE with those fields (its test
accuracy every eval_every steps, in %, and its target). Uses only the standard library and
gnuplot.
"""
import json
import os
import subprocess
import sys
import tempfile


def read_run_dir(run):
    """(rows, metric, target) of a nino_train run directory."""
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.exists(path):
        raise ValueError(f"{path} does not exist")
    rows, metric = [], None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            for key in ("val_acc", "val_ppl"):
                if key in r:
                    metric = key
                    rows.append((r["step"], r[key]))
    summary = os.path.join(run, "summary.json")
    target = json.load(open(summary)).get("target") if os.path.exists(summary) else None
    return rows, metric, target


def read_bench_record(spec):
    """(rows, "val_acc", target) of FILE.jsonl@MODEL/OPTIMIZER/SEED[/NINO_MODEL]: the last
    matching record of vision_steps_to_target.py, accuracies in %."""
    path, _, key = spec.partition("@")
    fields = key.split("/")
    if len(fields) not in (3, 4):
        raise ValueError(f"expected FILE.jsonl@MODEL/OPTIMIZER/SEED[/NINO_MODEL], got {spec}")
    found = None
    with open(path) as f:
        for line in f:
            r = json.loads(line) if line.strip() else {}
            if ("evals" in r and [r["model"], r["optimizer"], str(r["seed"])] == fields[:3]
                    and (len(fields) == 3 or r.get("nino_model") == fields[3])):
                found = r
    if found is None:
        raise ValueError(f"no record {key} in {path}")
    rows = [(step, 100 * acc) for step, acc in found["evals"]]
    return rows, "val_acc", round(100 * found["target"], 2)


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    title = "validation metric vs steps"
    if "--title" in argv:
        title = argv[argv.index("--title") + 1]
        args.remove(title)
    if len(args) < 2:
        sys.stderr.write(__doc__)
        return 2
    out, runs = args[0], args[1:]
    tmp = tempfile.mkdtemp(prefix="nino_plot_")
    plots, metric, target = [], None, None
    for i, spec in enumerate(runs):
        if "=" not in spec:
            sys.stderr.write(f"error: expected LABEL=RUN_DIR, got {spec}\n")
            return 2
        label, run = spec.split("=", 1)
        read = read_bench_record if "@" in run else read_run_dir
        try:
            rows, metric, run_target = read(run)
        except (OSError, ValueError) as e:
            sys.stderr.write(f"error: {e}\n")
            return 1
        target = run_target if run_target is not None else target
        dat = os.path.join(tmp, f"run{i}.dat")
        with open(dat, "w") as f:
            for s, v in rows:
                f.write(f"{s} {v}\n")
        plots.append(f"'{dat}' using 1:2 with lines lw 2 title '{label}'")
    if metric is None:
        sys.stderr.write("error: no validation metric in the runs\n")
        return 1
    if target is not None:
        plots.append(f"{target} with lines dt 2 lc rgb 'gray' title 'target {target}'")
    script = "\n".join([
        "set terminal pngcairo size 900,540 noenhanced",  # labels hold underscores
        f"set output '{out}'",
        f"set title '{title}'",
        "set xlabel 'training step'",
        f"set ylabel '{'test accuracy (%)' if metric == 'val_acc' else 'validation perplexity'}'",
        "set grid",
        "set key bottom right" if metric == "val_acc" else "set key top right",
        ("set yrange [80:*]" if metric == "val_acc" else "set logscale y"),
        "plot " + ", ".join(plots),
    ])
    subprocess.run(["gnuplot"], input=script.encode(), check=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
