#!/usr/bin/env python3
"""Plots of longctx runs, sweeps and evaluations (matplotlib, written to PNG files).

  plot.py losses --out loss.png RUN_DIR...        training loss vs step, one line per run
  plot.py sweep --out-dir DIR report.jsonl         every plot a sweep report supports
  plot.py ppl --out ppl.png EVAL.jsonl...          loss and perplexity per position bucket
  plot.py passkey --out passkey.png EVAL.jsonl...  passkey accuracy over length x depth

EVAL.jsonl: one JSON object per line; the last object whose "task" is the task is used, or the
eval.TASK object of the last metrics.jsonl eval line that holds it. Lines are labelled by their
file or run directory, less the part all of them share. Each written plot is reported on stdout
as "wrote PATH: WHAT". Errors name the file and the field and exit 2.
"""
import argparse
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402


class PlotError(Exception):
    pass


def read_jsonl(path):
    """The JSON objects of a file, one per non-blank line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError as e:
        raise PlotError(f"cannot read '{path}': {e.strerror}")
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            # A run killed while writing may leave a partial last line: skip it, refuse others.
            if i == len(lines):
                continue
            raise PlotError(f"'{path}' line {i} is not JSON: {e.msg}")
        if isinstance(obj, dict):
            rows.append(obj)
    return rows


def labels_for(paths):
    """Short labels: each path less the directories all paths share (a run dir's metrics.jsonl
    reads as the run's name)."""
    parts = []
    for p in paths:
        p = os.path.normpath(p)
        if os.path.basename(p) == "metrics.jsonl":
            p = os.path.dirname(p)
        parts.append(p.split(os.sep))
    if len(parts) == 1:
        return [parts[0][-1]]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    return ["/".join(p[common:]) for p in parts]


def train_curve(run_dir):
    """(steps, losses) of the train lines of RUN_DIR/metrics.jsonl."""
    rows = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    pts = [(r["step"], r["loss"]) for r in rows if "eval" not in r and "loss" in r and "step" in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def find_task(path, task):
    """The last result of `task` in an EVAL.jsonl or metrics.jsonl file."""
    found = None
    for obj in read_jsonl(path):
        if obj.get("task") == task:
            found = obj
        elif isinstance(obj.get("eval"), dict) and isinstance(obj["eval"].get(task), dict):
            found = obj["eval"][task]
    if found is None:
        raise PlotError(f"'{path}' holds no '{task}' result (an object with \"task\": "
                        f"\"{task}\", or a metrics line with eval.{task})")
    return found


def field(obj, key, path, task):
    if key not in obj:
        raise PlotError(f"'{path}': the {task} result has no '{key}' field")
    return obj[key]


def save(fig, out, what):
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    tmp = out + ".tmp.png"  # written whole, then renamed: never a half-written plot
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, out)
    print(f"wrote {out}: {what}")


def plot_losses(run_dirs, labels, out, variants=None, points=None):
    """Loss curves; with variants (and grid points) given, one colour per variant and one line
    style per grid point, so that many runs stay tellable apart."""
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.get_cmap("tab10" if len(set(variants or labels)) <= 10 else "tab20")
    styles = ["-", "--", ":", "-."]
    order_v = list(dict.fromkeys(variants or labels))
    order_p = list(dict.fromkeys(points or [""]))
    drawn = []
    for k, (run_dir, label) in enumerate(zip(run_dirs, labels)):
        steps, losses = train_curve(run_dir)
        if not steps:
            continue
        v = order_v.index(variants[k] if variants else label)
        p = order_p.index(points[k]) if points else 0
        ax.plot(steps, losses, label=label, color=colours(v % colours.N),
                linestyle=styles[p % len(styles)])
        drawn += losses
    if not drawn:
        plt.close(fig)
        raise PlotError("no run has train lines in its metrics.jsonl: nothing to plot")
    if min(drawn) > 0 and max(drawn) / min(drawn) > 10:
        ax.set_yscale("log")  # the late differences between runs would be flat lines otherwise
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    save(fig, out, "training loss vs step, every run")


def plot_ppl(paths, labels, out):
    results = [(find_task(p, "ppl"), p, label) for p, label in zip(paths, labels)]
    fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=(11, 4.5))
    for res, path, label in results:
        buckets = field(res, "buckets", path, "ppl")
        if not buckets:
            raise PlotError(f"'{path}': the ppl result has no buckets")
        for b in buckets:
            for key in ("start", "end", "loss", "ppl"):
                if key not in b:
                    raise PlotError(f"'{path}': a ppl bucket has no '{key}' field")
        centres = [(b["start"] + b["end"]) / 2 for b in buckets]
        # A bucket without targets has null loss and ppl: a gap in the line.
        nan = float("nan")
        ax_loss.plot(centres, [nan if b["loss"] is None else b["loss"] for b in buckets],
                     marker="o", label=label)
        ax_ppl.plot(centres, [nan if b["ppl"] is None else b["ppl"] for b in buckets],
                    marker="o", label=label)
    for ax, name in ((ax_loss, "loss (nats per token)"), (ax_ppl, "perplexity")):
        ax.set_xlabel("position in the sequence (bucket centre)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    save(fig, out, "validation loss and perplexity per position bucket")


def plot_passkey(paths, labels, out):
    results = [(find_task(p, "passkey"), p, label) for p, label in zip(paths, labels)]
    n = len(results)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False,
                             layout="constrained")  # leaves room for the shared colour bar
    image = None
    for k, (res, path, label) in enumerate(results):
        lengths = field(res, "lengths", path, "passkey")
        depths = field(res, "depths", path, "passkey")
        grid = field(res, "grid", path, "passkey")
        if len(grid) != len(lengths) or any(len(row) != len(depths) for row in grid):
            raise PlotError(f"'{path}': the passkey grid must be {len(lengths)} rows (lengths) "
                            f"of {len(depths)} values (depths)")
        ax = axes[k // cols][k % cols]
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="lower")
        ax.set_xticks(range(len(depths)), [f"{d:g}" for d in depths])
        ax.set_yticks(range(len(lengths)), [str(x) for x in lengths])
        ax.set_xlabel("depth of the key")
        ax.set_ylabel("context length")
        acc = res.get("accuracy")
        ax.set_title(label if acc is None else f"{label} (acc {acc:.2f})", fontsize="small")
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.5 else "black")
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.colorbar(image, ax=axes.ravel().tolist(), label="accuracy")
    save(fig, out, "passkey retrieval accuracy over context length x depth")


def plot_vs_seq_len(rows, key, ylabel, out, what):
    """One line per variant of `key` against seq_len; False when no run has the value."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    variants = []
    for r in rows:
        if r["variant"] not in variants:
            variants.append(r["variant"])
    drawn = 0
    for v in variants:
        pts = sorted((r["seq_len"], r[key]) for r in rows
                     if r["variant"] == v and r.get(key) is not None)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=v)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return False
    lens = sorted({r["seq_len"] for r in rows})
    if lens[-1] >= 4 * lens[0]:
        ax.set_xscale("log", base=2)
    ax.set_xticks(lens, [str(x) for x in lens])
    ax.set_xlabel("seq_len")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    save(fig, out, what)
    return True


def sweep(report, out_dir):
    rows = read_jsonl(report)
    if not rows:
        raise PlotError(f"'{report}' holds no runs")
    for i, r in enumerate(rows, 1):
        for key in ("name", "variant", "run_dir", "seq_len"):
            if key not in r:
                raise PlotError(f"'{report}' line {i} has no '{key}' field")
        # Runs are found where the report says, else next to the report (a moved out_dir).
        if not os.path.isdir(r["run_dir"]):
            r["run_dir"] = os.path.join(os.path.dirname(os.path.abspath(report)), r["name"])
    # Runs left out of this sweep ("not run") may hold results of another config.
    rows = [r for r in rows if r.get("status") != "not run"]
    with_metrics = [r for r in rows
                    if os.path.isfile(os.path.join(r["run_dir"], "metrics.jsonl"))]
    if with_metrics:
        plot_losses([r["run_dir"] for r in with_metrics],
                    [r["name"] + (" (failed)" if r.get("status") == "failed" else "")
                     for r in with_metrics],
                    os.path.join(out_dir, "loss.png"),
                    variants=[r["variant"] for r in with_metrics],
                    points=[r["name"][len(r["variant"]):] for r in with_metrics])
    if len({r["seq_len"] for r in rows}) > 1:
        plot_vs_seq_len(rows, "tokens_per_s", "tokens/s (median step)",
                        os.path.join(out_dir, "tokens_per_s.png"), "training tokens/s vs seq_len")
        plot_vs_seq_len(rows, "peak_rss_mb", "peak RSS (MB)",
                        os.path.join(out_dir, "peak_memory.png"), "peak memory (RSS) vs seq_len")
        plot_vs_seq_len(rows, "peak_gpu_mb", "peak GPU memory (MB)",
                        os.path.join(out_dir, "peak_gpu_memory.png"), "peak GPU memory vs seq_len")
    for task, plot in (("ppl", plot_ppl), ("passkey", plot_passkey)):
        have = []
        for r in with_metrics:
            path = os.path.join(r["run_dir"], "metrics.jsonl")
            try:
                find_task(path, task)
                have.append((path, r["name"]))
            except PlotError:
                pass
        if have:
            plot([p for p, _ in have], [n for _, n in have], os.path.join(out_dir, f"{task}.png"))


def main(argv):
    parser = argparse.ArgumentParser(prog="plot.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("losses", help="training loss vs step of every run")
    p.add_argument("--out", required=True)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p = sub.add_parser("sweep", help="the plots of a sweep's report.jsonl")
    p.add_argument("--out-dir", required=True)
    p.add_argument("report", metavar="report.jsonl")
    for name, what in (("ppl", "loss and perplexity per position bucket"),
                       ("passkey", "passkey accuracy heatmap over length x depth")):
        p = sub.add_parser(name, help=what)
        p.add_argument("--out", required=True)
        p.add_argument("files", nargs="+", metavar="EVAL.jsonl")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "losses":
            for d in args.run_dirs:
                if not os.path.isfile(os.path.join(d, "metrics.jsonl")):
                    raise PlotError(f"'{d}' is not a run directory (no metrics.jsonl)")
            plot_losses(args.run_dirs, labels_for(args.run_dirs), args.out)
        elif args.cmd == "sweep":
            sweep(args.report, args.out_dir)
        elif args.cmd == "ppl":
            plot_ppl(args.files, labels_for(args.files), args.out)
        else:
            plot_passkey(args.files, labels_for(args.files), args.out)
    except PlotError as e:
        print(f"plot.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
