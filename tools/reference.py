#!/usr/bin/env python3
"""Float64 NumPy forward pass of a longctx model, written from the model's definition.

Reads an export of `longctx ckpt export CKPT --out DIR` (DIR/model.safetensors, parsed here by
hand, and DIR/config.json) and prints the logits [T, V] of one token sequence, as an oracle
independent of the C++ code:

    tools/reference.py DIR --tokens 1,2,3 [--out logits.npy | --json]

Covers causal_lm with full attention (pattern dense or flash: the same math), heads
mha/gqa/mqa, position rope/learned/none, norm layernorm/rmsnorm, activation gelu/swiglu, tied
or untied LM head. Other settings are refused. Needs only numpy.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

EPS = 1e-5  # both norms (model/norm.cpp)
ROPE_BASE = 10000.0


def fail(msg):
    sys.exit(f"reference.py: {msg}")


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        fail(f"'{path}' is too short for safetensors")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        fail(f"'{path}': header length {n} runs past the end of the file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            fail(f"'{path}': tensor {name} has dtype {t['dtype']}, expected F32")
        lo, hi = t["data_offsets"]
        shape = tuple(t["shape"])
        if hi - lo != 4 * int(np.prod(shape, dtype=np.int64)) or base + hi > len(data):
            fail(f"'{path}': tensor {name} has offsets {lo}..{hi} for shape {list(shape)}")
        arr = np.frombuffer(data, dtype="<f4", count=(hi - lo) // 4, offset=base + lo)
        tensors[name] = arr.reshape(shape).astype(np.float64)
    return tensors


def check_supported(cfg):
    model, attn = cfg["model"], cfg["attention"]
    problems = []
    if cfg.get("objective", "causal_lm") != "causal_lm":
        problems.append(f"objective {cfg['objective']} (only causal_lm)")
    if attn["pattern"] not in ("dense", "flash"):
        problems.append(f"attention.pattern {attn['pattern']} (only dense and flash)")
    if attn["heads"] not in ("mha", "gqa", "mqa"):
        problems.append(f"attention.heads {attn['heads']} (only mha, gqa and mqa)")
    if model["norm"] not in ("layernorm", "rmsnorm"):
        problems.append(f"model.norm {model['norm']}")
    if model["activation"] not in ("gelu", "swiglu"):
        problems.append(f"model.activation {model['activation']}")
    if model["position"] not in ("rope", "learned", "none"):
        problems.append(f"model.position {model['position']}")
    if problems:
        fail("this reference does not implement " + "; ".join(problems))


def norm(x, p, prefix, kind):
    if kind == "layernorm":
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + EPS) * p[prefix + ".w"] + p[prefix + ".b"]
    rms = np.sqrt((x * x).mean(axis=-1, keepdims=True) + EPS)
    return x / rms * p[prefix + ".w"]


def gelu(x):  # the tanh approximation (model/activation.cpp)
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def rope(x, positions):
    """Rotate-half RoPE on x [T, heads, D]: dimension i pairs with i + D/2, theta_i = base^(-2i/D)."""
    d = x.shape[-1]
    half = d // 2
    theta = ROPE_BASE ** (-2.0 * np.arange(half) / d)
    angle = positions[:, None] * theta[None, :]  # [T, half]
    c, s = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
    a, b = x[..., :half], x[..., half:2 * half]
    out = x.copy()
    out[..., :half] = a * c - b * s
    out[..., half:2 * half] = b * c + a * s
    return out


def attention(x, p, prefix, model, attn):
    t, c = x.shape
    h = model["n_head"]
    d = c // h
    if attn["heads"] == "mqa":
        hkv = 1
    else:
        hkv = attn.get("n_kv_head", 0) or h
    q = (x @ p[prefix + ".wq"]).reshape(t, h, d)
    k = (x @ p[prefix + ".wk"]).reshape(t, hkv, d)
    v = (x @ p[prefix + ".wv"]).reshape(t, hkv, d)
    if model["position"] == "rope":
        pos = np.arange(t, dtype=np.float64)
        q, k = rope(q, pos), rope(k, pos)
    group = h // hkv
    causal = np.tril(np.ones((t, t), dtype=bool))
    out = np.empty((t, h, d))
    for head in range(h):
        kh, vh = k[:, head // group], v[:, head // group]  # query head h reads kv head h / group
        scores = q[:, head] @ kh.T / np.sqrt(d)
        scores = np.where(causal, scores, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        out[:, head] = probs @ vh
    return out.reshape(t, h * d) @ p[prefix + ".wo"]


def mlp(x, p, prefix, activation):
    if activation == "gelu":
        return gelu(x @ p[prefix + ".w_fc"]) @ p[prefix + ".w_proj"]
    gate = x @ p[prefix + ".w_gate"]
    silu = gate / (1.0 + np.exp(-gate))
    return (silu * (x @ p[prefix + ".w_up"])) @ p[prefix + ".w_proj"]


def forward(p, cfg, tokens):
    """Logits [T, V] of one sequence: embed, N pre-norm blocks, final norm, LM head."""
    model, attn = cfg["model"], cfg["attention"]
    tokens = np.asarray(tokens, dtype=np.int64)
    t = len(tokens)
    if t == 0 or t > model["max_seq_len"]:
        fail(f"{t} tokens: need 1 to model.max_seq_len = {model['max_seq_len']}")
    if tokens.min() < 0 or tokens.max() >= model["vocab_size"]:
        fail(f"token ids must lie in [0, {model['vocab_size']})")
    x = p["wte"][tokens]
    if model["position"] == "learned":
        x = x + p["wpe"][:t]
    for layer in range(model["n_layer"]):
        b = f"blocks.{layer}"
        x = x + attention(norm(x, p, b + ".ln1", model["norm"]), p, b + ".attn", model, attn)
        x = x + mlp(norm(x, p, b + ".ln2", model["norm"]), p, b + ".mlp", model["activation"])
    x = norm(x, p, "ln_f", model["norm"])
    head = p["wte"] if model["tie_embeddings"] else p["lm_head"]
    return x @ head.T


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export_dir", help="a directory written by `longctx ckpt export`")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    out = ap.add_mutually_exclusive_group()
    out.add_argument("--out", help="write the logits [T, V] as float64 .npy here")
    out.add_argument("--json", action="store_true", help="print {\"logits\": [[...], ...]}")
    args = ap.parse_args()

    try:
        tokens = [int(s) for s in args.tokens.split(",") if s.strip()]
    except ValueError:
        fail(f"--tokens expects comma-separated integers, got '{args.tokens}'")
    cfg_path = os.path.join(args.export_dir, "config.json")
    st_path = os.path.join(args.export_dir, "model.safetensors")
    for f in (cfg_path, st_path):
        if not os.path.isfile(f):
            fail(f"'{f}' does not exist (write it with `longctx ckpt export CKPT --out DIR`)")
    with open(cfg_path) as f:
        cfg = json.load(f)
    check_supported(cfg)
    params = load_safetensors(st_path)
    try:
        logits = forward(params, cfg, tokens)
    except KeyError as e:
        fail(f"'{st_path}' has no tensor {e} that the config's model needs")
    if args.out:
        np.save(args.out, logits)
    elif args.json:
        print(json.dumps({"logits": logits.tolist()}))
    else:
        np.set_printoptions(precision=6, suppress=True, linewidth=120)
        print(logits)


if __name__ == "__main__":
    main()
