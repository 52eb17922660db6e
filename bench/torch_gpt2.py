#!/usr/bin/env python3
"""PyTorch reference throughput for configs/gpt2_124m.yaml on one CUDA GPU.

The same shape as that config (12 layers, d_model 768, 12 heads, vocabulary 50257, 1024
positions): pre-LayerNorm blocks, tanh-GELU MLP, learned positions, the LM head tied to the
token embedding, linear layers without biases (as longctx's), AdamW. Eager PyTorch (no
torch.compile) under bf16 autocast, attention through scaled_dot_product_attention(is_causal)
with the flash backend where it is available. Trains on random tokens: the point is the step
time, a yardstick for `longctx bench train configs/gpt2_124m.yaml`.

Reports the median step time after a warm-up, tokens/s, MFU and the peak of allocated GPU
memory. MFU counts 6·N + 6·L·d·T FLOPs per token (N: non-embedding parameters, so the tied LM
head is not counted; 6·L·d·T: causal attention scores, half of the 12·L·d·T of full attention)
against the GPU's nominal dense bf16 peak. mfu_with_lm_head adds the head's 6·V·d, which is how
`longctx bench train` counts.

Exit status: 0 ok, 2 when PyTorch or a CUDA device is missing (or bad arguments).
"""
import argparse
import json
import statistics
import sys
import time

from torch_common import import_torch

N_LAYER, D_MODEL, N_HEAD, D_FF, VOCAB, SEQ_LEN = 12, 768, 12, 3072, 50257, 1024

# Nominal dense bf16 tensor-core peaks (TFLOP/s) by the vendor's datasheets, matched against
# torch.cuda.get_device_name(); the first entry whose words all occur in the name wins.
PEAK_BF16_TFLOPS = [
    (("H100", "PCIe"), 756.0),
    (("H100", "NVL"), None),  # its datasheet differs from the SXM part's: ask for the number
    (("H100",), 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    (("H200",), 989.0),
    (("A100",), 312.0),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=8, help="micro-batch (sequences per step, default 8)")
    p.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the GPU's dense bf16 peak for MFU (default: from the device name)")
    p.add_argument("--json", action="store_true", help="print one JSON object, nothing else")
    a = p.parse_args()
    if a.batch < 1 or a.steps < 1 or a.warmup < 0:
        p.error("--batch and --steps must be >= 1, --warmup >= 0")
    return a


def nominal_peak(name):
    for words, tflops in PEAK_BF16_TFLOPS:
        if all(w in name for w in words):
            return tflops
    return None


def build_model(torch):
    nn = torch.nn
    F = torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(D_MODEL)
            self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL, bias=False)
            self.proj = nn.Linear(D_MODEL, D_MODEL, bias=False)
            self.ln2 = nn.LayerNorm(D_MODEL)
            self.fc = nn.Linear(D_MODEL, D_FF, bias=False)
            self.fc_out = nn.Linear(D_FF, D_MODEL, bias=False)

        def forward(self, x):  # x: [B, T, C]
            B, T, C = x.shape
            # [B, T, 3C] -> three [B, H, T, C/H]
            q, k, v = (t.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2)
                       for t in self.qkv(self.ln1(x)).split(C, dim=2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.fc_out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(VOCAB, D_MODEL)
            self.wpe = nn.Embedding(SEQ_LEN, D_MODEL)
            self.blocks = nn.ModuleList(Block() for _ in range(N_LAYER))
            self.ln_f = nn.LayerNorm(D_MODEL)
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)

        def forward(self, idx, targets):  # idx, targets: [B, T] token ids
            pos = torch.arange(idx.shape[1], device=idx.device)
            x = self.wte(idx) + self.wpe(pos)
            for b in self.blocks:
                x = b(x)
            logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head: [B, T, V]
            return F.cross_entropy(logits.view(-1, VOCAB).float(), targets.reshape(-1))

    return GPT()


def flash_usable(torch, device):
    """True when the flash SDPA backend runs a small bf16 causal case on this device."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    q = torch.randn(1, N_HEAD, 64, D_MODEL // N_HEAD, device=device, dtype=torch.bfloat16)
    try:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
        torch.cuda.synchronize()
        return True
    except RuntimeError:
        return False


def main():
    args = parse_args()
    torch = import_torch("cuda")
    import contextlib
    from torch.nn.attention import SDPBackend, sdpa_kernel

    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    peak = args.peak_tflops if args.peak_tflops is not None else nominal_peak(name)
    if peak is None:
        print(f"torch_gpt2.py: no nominal bf16 peak known for '{name}': pass --peak-tflops for MFU",
              file=sys.stderr)

    torch.manual_seed(1234)
    model = build_model(torch).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    n_non_embedding = n_params - model.wte.weight.numel() - model.wpe.weight.numel()
    # Weight decay on matrices only, as usual for GPT training; fused AdamW is PyTorch's fastest
    # eager optimizer step.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), fused=True)

    flash = flash_usable(torch, device)
    attention_ctx = sdpa_kernel(SDPBackend.FLASH_ATTENTION) if flash else contextlib.nullcontext()

    def step():
        tokens = torch.randint(0, VOCAB, (args.batch, SEQ_LEN + 1), device=device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    torch.cuda.reset_peak_memory_stats(device)
    times_ms = []
    with attention_ctx:
        for _ in range(args.warmup):
            step()
        for _ in range(args.steps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            loss = step()
            torch.cuda.synchronize()
            times_ms.append((time.perf_counter() - t0) * 1e3)

    step_ms = statistics.median(times_ms)
    tokens_per_s = args.batch * SEQ_LEN / (step_ms / 1e3)
    flops_per_token = 6.0 * n_non_embedding + 6.0 * N_LAYER * D_MODEL * SEQ_LEN
    flops_with_head = flops_per_token + 6.0 * VOCAB * D_MODEL
    achieved_tflops = flops_per_token * tokens_per_s / 1e12
    out = {
        "impl": "pytorch",
        "torch": torch.__version__,
        "device": name,
        "n_layer": N_LAYER, "d_model": D_MODEL, "n_head": N_HEAD, "vocab_size": VOCAB,
        "seq_len": SEQ_LEN, "micro_batch": args.batch,
        "params": n_params,
        "non_embedding_params": n_non_embedding,
        "attention_backend": "flash" if flash else "default",
        "warmup": args.warmup, "steps": args.steps,
        "step_ms": step_ms,
        "step_ms_min": min(times_ms), "step_ms_max": max(times_ms),
        "tokens_per_s": tokens_per_s,
        "flops_per_token": flops_per_token,
        "tflops": achieved_tflops,
        "peak_tflops": peak,
        "mfu": achieved_tflops / peak if peak else None,
        "mfu_with_lm_head": flops_with_head * tokens_per_s / 1e12 / peak if peak else None,
        "peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20,
        "final_loss": float(loss),
    }
    if args.json:
        print(json.dumps(out))
        return
    mfu = f"{100 * out['mfu']:.1f}%" if peak else "n/a (pass --peak-tflops)"
    print(f"torch_gpt2: {name}, torch {torch.__version__}, {n_params / 1e6:.1f}M parameters "
          f"({n_non_embedding / 1e6:.1f}M non-embedding), batch {args.batch} x {SEQ_LEN}, "
          f"attention {out['attention_backend']}")
    print(f"  step {step_ms:.1f} ms (median of {args.steps}) | {tokens_per_s:.0f} tokens/s | "
          f"{achieved_tflops:.1f} TFLOP/s | MFU {mfu} | peak memory {out['peak_mem_mb']:.0f} MiB | "
          f"loss {out['final_loss']:.3f}")


if __name__ == "__main__":
    main()
