#!/usr/bin/env python3
"""PyTorch's attention timed on the grid of `longctx bench attention --device cuda --sweep`.

For each n, head dim (64, 128), bidirectional and causal, and pattern: torch's
scaled_dot_product_attention in bf16 on random inputs, the forward alone and forward+backward,
medians of --repeats runs after one warm-up (torch.cuda.Event on the GPU). The shape follows
the same rule as longctx's sweep: batch x heads = 65536 / n, heads = min(16, that), MHA.

  full        the flash backend forced (sdpa_kernel(FLASH_ATTENTION)), is_causal for causal;
              the math backend on the CPU
  longformer  a boolean attn_mask (window, dilation and global tokens as longctx's),
  bigbird     through the memory-efficient backend, for n <= --mask-max-n only: it computes
  strided     every score and masks it, so these rows say what a dense kernel with a mask
              costs, not what a block-sparse one does. BigBird's random blocks are drawn
              here, not by longctx, one draw for every head: the same number per query
              block, not the same blocks.

TFLOP/s count the allowed scores: 4*D FLOPs each forward, fwd+bwd 3.5x that (backward 2.5x
forward, FlashAttention's convention), as longctx counts. Errors are relative L2 norms against
float64 math SDPA on the same device: the forward on 32 rows of head 0 of sample 0, the
gradients (max of dq, dk, dv) of that head for n <= --ref-max-n.

Writes one JSON object per row (--jsonl FILE, or --json for stdout only) with longctx's keys,
so that rows join on (pattern, causal, head_dim, n). Exit status: 0 ok, 1 when a case failed,
2 when PyTorch or the device is missing (or bad arguments).
"""
import argparse
import json
import math
import statistics
import sys
import time

from torch_common import import_torch

SAMPLED_ROWS = 32
PATTERNS = ("full", "longformer", "bigbird", "strided")


def int_list(text):
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of integers, got '{text}'")
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--n", type=int_list, default=[1024, 2048, 4096, 8192, 16384],
                   help="sequence lengths (default 1024,2048,4096,8192,16384)")
    p.add_argument("--head-dims", type=int_list, default=[64, 128], help="default 64,128")
    p.add_argument("--pattern", default=",".join(PATTERNS),
                   help="comma-separated: full, longformer, bigbird, strided (default all)")
    p.add_argument("--causal", choices=("both", "no", "yes"), default="both")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (5)")
    p.add_argument("--block-size", type=int, default=64, help="bigbird's block (64)")
    p.add_argument("--window", type=int, default=512, help="longformer: one-sided window (512)")
    p.add_argument("--dilation", type=int, default=1, help="longformer: dilation (1)")
    p.add_argument("--global-tokens", default="0", help="longformer: positions, or 'none' (0)")
    p.add_argument("--window-blocks", type=int, default=1, help="bigbird (1)")
    p.add_argument("--global-blocks", type=int, default=1, help="bigbird (1)")
    p.add_argument("--random-blocks", type=int, default=3, help="bigbird (3)")
    p.add_argument("--stride", default="auto", help="strided: stride or auto = round(sqrt(n))")
    p.add_argument("--mask-max-n", type=int, default=8192,
                   help="longest n for the masked (sparse) rows (8192)")
    p.add_argument("--ref-max-n", type=int, default=4096,
                   help="longest n whose gradients are checked against float64 (4096)")
    p.add_argument("--time-budget", type=float, default=0,
                   help="seconds; cases that would start later are reported skipped (0: none)")
    p.add_argument("--jsonl", help="also write one JSON object per row to this file")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout, nothing else")
    a = p.parse_args()
    a.pattern = a.pattern.split(",")
    for name in a.pattern:
        if name not in PATTERNS:
            p.error(f"--pattern: unknown pattern '{name}' (expected {', '.join(PATTERNS)})")
    if a.repeats < 1 or a.block_size < 1 or a.window < 0 or a.dilation < 1:
        p.error("--repeats, --block-size and --dilation must be >= 1, --window >= 0")
    try:
        a.global_tokens = [] if a.global_tokens == "none" else [int(x) for x in a.global_tokens.split(",")]
        a.stride = 0 if a.stride == "auto" else int(a.stride)
    except ValueError:
        p.error("--global-tokens and --stride take integers")
    return a


def sweep_batch_heads(n):
    """longctx's sweep_batch_heads (bench/attention_bench_cuda.h): B*H*n = 65536."""
    bh = max(1, 65536 // n)
    heads = min(16, bh)
    return bh // heads, heads


def stride_of(args, n):
    return args.stride if args.stride > 0 else max(1, int(math.floor(math.sqrt(n) + 0.5)))


def pattern_params(args, pattern, n):
    """The members longctx's bench writes for the pattern."""
    if pattern == "longformer":
        return {"window": args.window, "dilation": args.dilation,
                "global_tokens": args.global_tokens}
    if pattern == "bigbird":
        return {"window_blocks": args.window_blocks, "global_blocks": args.global_blocks,
                "random_blocks": args.random_blocks}
    if pattern == "strided":
        return {"stride": stride_of(args, n)}
    return {}


def bigbird_min_blocks(args, causal):
    g, w, r = args.global_blocks, args.window_blocks, args.random_blocks
    return g + w + 1 + r if causal else 2 * g + 2 * w + 1 + r


def bigbird_blocks(torch, args, n, causal, seed):
    """[nb, nb] bool: the key blocks each query block sees (longctx's attention/bigbird.cpp
    rule; the random blocks drawn with torch's generator)."""
    bs, g, w = args.block_size, args.global_blocks, args.window_blocks
    nb = (n + bs - 1) // bs
    gen = torch.Generator().manual_seed(seed)
    blocks = torch.zeros(nb, nb, dtype=torch.bool)

    def is_global(b):
        return b < g or (not causal and b >= nb - g)

    for qb in range(nb):
        last = qb if causal else nb - 1
        if is_global(qb):
            blocks[qb, : last + 1] = True
            continue
        listed = set(range(g)) | set(range(max(0, qb - w), min(last, qb + w) + 1))
        if not causal:
            listed |= set(range(nb - g, nb))
        hi = max(0, qb - w) if causal else nb
        free = [b for b in range(hi) if b not in listed]
        pick = torch.randperm(len(free), generator=gen)[: args.random_blocks].tolist()
        listed |= {free[i] for i in pick}
        blocks[qb, sorted(listed)] = True
    return blocks


def allowed_mask(torch, args, pattern, n, causal, device):
    """[n, n] bool, True where query i may see key j; None for full attention."""
    if pattern == "full":
        return None
    i = torch.arange(n, device=device).view(n, 1)
    j = torch.arange(n, device=device).view(1, n)
    d = (i - j).abs()
    if pattern == "longformer":
        ok = (d <= args.window) & (d % args.dilation == 0)
        if args.global_tokens:
            bad = [t for t in args.global_tokens if not 0 <= t < n]
            if bad:
                raise ValueError(f"--global-tokens {bad} outside [0, {n})")
            glob = torch.zeros(n, dtype=torch.bool, device=device)
            glob[torch.tensor(args.global_tokens, device=device)] = True
            ok = ok | glob.view(n, 1) | glob.view(1, n)
    elif pattern == "strided":
        s = stride_of(args, n)
        ok = (d < s) | (d % s == 0)
    else:
        bs = args.block_size
        blocks = bigbird_blocks(torch, args, n, causal, seed=1).to(device)
        ok = blocks.repeat_interleave(bs, 0).repeat_interleave(bs, 1)[:n, :n]
    if causal:
        ok = ok & (j <= i)
    return ok


def allowed_per_head(pattern, n, causal, mask):
    if mask is not None:
        return int(mask.sum().item())
    return n * (n + 1) // 2 if causal else n * n


def rel_error(x, ref):
    x, ref = x.double(), ref.double()
    return float((x - ref).norm() / ref.norm().clamp_min(1e-300))


class Timer:
    """Median milliseconds of f() over `repeats` runs after one warm-up."""

    def __init__(self, torch, device):
        self.torch, self.cuda = torch, device.type == "cuda"

    def median_ms(self, repeats, f):
        torch = self.torch
        f()
        times = []
        for _ in range(repeats):
            if self.cuda:
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                f()
                b.record()
                b.synchronize()
                times.append(a.elapsed_time(b))
            else:
                t0 = time.perf_counter()
                f()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)


def run_case(torch, args, row, device, timer):
    F = torch.nn.functional
    from torch.nn.attention import SDPBackend, sdpa_kernel

    B, H, n, D, causal = row["batch"], row["heads"], row["n"], row["head_dim"], row["causal"]
    pattern = row["pattern"]
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    mask = allowed_mask(torch, args, pattern, n, causal, device)
    row["allowed_scores"] = B * H * allowed_per_head(pattern, n, causal, mask)
    if device.type == "cpu":
        backend = SDPBackend.MATH
    else:
        backend = SDPBackend.FLASH_ATTENTION if mask is None else SDPBackend.EFFICIENT_ATTENTION

    gen = torch.Generator(device=device).manual_seed(1234 + n + D)
    q, k, v, dout = (torch.randn(B, H, n, D, device=device, generator=gen).to(dtype)
                     for _ in range(4))
    q.requires_grad_(True)
    k.requires_grad_(True)
    v.requires_grad_(True)
    scale = 1.0 / math.sqrt(D)

    def attend(q_, k_, v_, m):
        if m is None:
            return F.scaled_dot_product_attention(q_, k_, v_, is_causal=causal, scale=scale)
        # The causal cut is in the mask already.
        return F.scaled_dot_product_attention(q_, k_, v_, attn_mask=m, scale=scale)

    result = {}
    with sdpa_kernel(backend):
        def fwd():
            with torch.no_grad():
                result["out"] = attend(q, k, v, mask)

        def fwd_bwd():
            out = attend(q, k, v, mask)
            result["grads"] = torch.autograd.grad(out, (q, k, v), dout)

        row["fwd_ms"] = timer.median_ms(args.repeats, fwd)
        row["fwd_bwd_ms"] = timer.median_ms(args.repeats, fwd_bwd)

    # float64 math SDPA on head 0 of sample 0.
    rows = [0] if n == 1 else [x * (n - 1) // (min(n, SAMPLED_ROWS) - 1)
                               for x in range(min(n, SAMPLED_ROWS))]
    rows_t = torch.tensor(rows, device=device)
    q0, k0, v0 = (t.detach()[0:1, 0:1].double() for t in (q, k, v))
    with sdpa_kernel(SDPBackend.MATH):
        if n <= args.ref_max_n:
            q0.requires_grad_(True)
            k0.requires_grad_(True)
            v0.requires_grad_(True)
            ref = attend(q0, k0, v0, mask)
            dq, dk, dv = torch.autograd.grad(ref, (q0, k0, v0), dout[0:1, 0:1].double())
            ref_rows = ref.detach()[0, 0, rows_t]
            got = result["grads"]
            errs = [rel_error(g[0, 0], r[0, 0]) for g, r in zip(got, (dq, dk, dv))]
            row.update(dq_err=errs[0], dk_err=errs[1], dv_err=errs[2], grad_err=max(errs))
        else:
            # The sampled rows alone, with their rows of the mask (causal made explicit: the
            # rows are not the first ones).
            m = mask[rows_t] if mask is not None else None
            if mask is None and causal:
                m = torch.arange(n, device=device).view(1, n) <= rows_t.view(-1, 1)
            ref_rows = attend(q0[:, :, rows_t], k0, v0, m)[0, 0]
    row["fwd_err"] = rel_error(result["out"][0, 0, rows_t], ref_rows)


def tflops(row, ms, factor):
    return factor * 4.0 * row["head_dim"] * row["allowed_scores"] / (ms * 1e9) if ms > 0 else 0.0


def cases(args, device_name, torch_version):
    for n in args.n:
        batch, heads = sweep_batch_heads(n)
        for D in args.head_dims:
            for causal in {"both": (False, True), "no": (False,), "yes": (True,)}[args.causal]:
                for pattern in args.pattern:
                    impl = "sdpa_math" if args.device == "cpu" else "sdpa_flash"
                    if pattern != "full":
                        impl = "sdpa_math_mask" if args.device == "cpu" else "sdpa_efficient_mask"
                    row = {"device": device_name, "torch": torch_version, "dtype": args.dtype,
                           "impl": impl, "pattern": pattern, "heads_scheme": "mha", "n": n,
                           "batch": batch, "heads": heads, "n_kv_head": heads, "head_dim": D,
                           "causal": causal}
                    row.update(pattern_params(args, pattern, n))
                    yield row


def print_row(row):
    head = (f"{row['impl']:<20} {row['pattern']:<10} {'causal' if row['causal'] else 'bidir':<6} "
            f"{row['head_dim']:4d} {row['batch']:3d} {row['heads']:3d} {row['n']:6d}")
    if "skipped" in row or "error" in row:
        why = "skipped" if "skipped" in row else "error"
        print(f"{head}  {why}: {row[why]}", flush=True)
        return
    grad = f"{row['grad_err']:.2e}" if "grad_err" in row else "-"
    print(f"{head} {row['fwd_ms']:9.3f} {row['fwd_bwd_ms']:10.3f} {row['fwd_tflops']:8.3g} "
          f"{row['fwd_bwd_tflops']:8.3g} {row['fwd_err']:9.2e} {grad:>9}", flush=True)


def main():
    args = parse_args()
    torch = import_torch(args.device)
    device = torch.device(args.device)
    device_name = torch.cuda.get_device_name(device) if args.device == "cuda" else "cpu"
    timer = Timer(torch, device)
    out = open(args.jsonl, "w") if args.jsonl else None
    if not args.json:
        print(f"torch {torch.__version__} scaled_dot_product_attention on {device_name} "
              f"({args.dtype}): batch x heads = 65536 / n (heads = min(16, that)). TFLOP/s over "
              f"the allowed scores: fwd 4*D per score, fwd+bwd 3.5x fwd. Errors: relative L2 "
              f"against float64 math SDPA (fwd on {SAMPLED_ROWS} rows of head 0, grads of head 0 "
              f"for n <= {args.ref_max_n}).")
        print(f"{'impl':<20} {'pattern':<10} {'mask':<6} {'D':>4} {'B':>3} {'H':>3} {'n':>6} "
              f"{'fwd_ms':>9} {'fwd_bwd_ms':>10} {'fwd_TF':>8} {'f+b_TF':>8} {'fwd_err':>9} "
              f"{'grad_err':>9}", flush=True)
    t0 = time.monotonic()
    status = 0
    for row in cases(args, device_name, torch.__version__):
        n, pattern = row["n"], row["pattern"]
        if args.time_budget > 0 and time.monotonic() - t0 > args.time_budget:
            row["skipped"] = f"time budget of {args.time_budget:g} s spent"
        elif pattern != "full" and n > args.mask_max_n:
            row["skipped"] = f"boolean masks only up to n = {args.mask_max_n}"
        elif pattern == "bigbird" and (n + args.block_size - 1) // args.block_size < \
                bigbird_min_blocks(args, row["causal"]):
            need = (bigbird_min_blocks(args, row["causal"]) - 1) * args.block_size + 1
            row["skipped"] = f"bigbird needs at least {need} tokens"
        else:
            try:
                run_case(torch, args, row, device, timer)
                row["flops"] = "fwd 4*D*allowed_scores, fwd_bwd 3.5*fwd"
                row["fwd_tflops"] = tflops(row, row["fwd_ms"], 1.0)
                row["fwd_bwd_tflops"] = tflops(row, row["fwd_bwd_ms"], 3.5)
            except (RuntimeError, ValueError) as e:  # e.g. no kernel for this shape, out of memory
                for key in ("allowed_scores", "fwd_ms", "fwd_bwd_ms", "fwd_err"):
                    row.pop(key, None)
                row["error"] = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                status = 1
            if device.type == "cuda":
                torch.cuda.empty_cache()
        line = json.dumps(row)
        if args.json:
            print(line, flush=True)
        else:
            print_row(row)
        if out:
            out.write(line + "\n")
            out.flush()
    if out:
        out.close()
    sys.exit(status)


if __name__ == "__main__":
    main()
