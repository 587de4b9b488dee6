#!/usr/bin/env python3
"""The Hugging Face side of scripts/bench_vs_transformers.sh: trains MistralForCausalLM built
from a config.json (random init, random tokens) for warm-up + N steps, as `dus bench train` does:
forward with labels (transformers' loss), backward, clip_grad_norm_ (1.0), torch.optim.AdamW
(betas 0.9/0.95, eps 1e-8, weight decay 0.1 on >= 2-D non-embedding weights, as dus), zero_grad.

Precision: fp32, or bf16 the way transformers' Trainer does it on a CPU (`bf16=True`):
torch.autocast("cpu", bfloat16) around the forward, fp32 weights and optimizer (--bf16-mode
autocast, the default); --bf16-mode pure casts the model to bf16 instead (no fp32 masters).

Prints the median step time and one line for the script:
  result tokens_per_s=... best_tokens_per_s=... peak_rss_mib=...   (peak = ru_maxrss)
"""

import argparse
import contextlib
import json
import resource
import statistics
import sys
import time

import torch
from transformers import MistralConfig, MistralForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="config.json (MistralForCausalLM)")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--bf16-mode", choices=["autocast", "pure"], default="autocast")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.95)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with open(args.config) as f:
        cfg = json.load(f)
    cfg.pop("dtype", None)
    config = MistralConfig(**cfg)
    model = MistralForCausalLM(config)
    pure_bf16 = args.precision == "bf16" and args.bf16_mode == "pure"
    if pure_bf16:
        model = model.to(torch.bfloat16)
    model.train()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "embed_tokens" not in name else no_decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16)
                if args.precision == "bf16" and not pure_bf16 else contextlib.nullcontext())

    print(f"transformers train: {sum(p.numel() for p in model.parameters()):,} parameters, batch "
          f"{args.batch} x {args.seq}, {args.precision}"
          f"{' (' + args.bf16_mode + ')' if args.precision == 'bf16' else ''}, "
          f"{torch.get_num_threads()} threads, attention {model.config._attn_implementation}", flush=True)
    times = []
    loss = None
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        ids = torch.randint(0, config.vocab_size, (args.batch, args.seq))
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_value = loss.item()
        t = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(t)
    step = statistics.median(times)
    tok_s = args.batch * args.seq / step
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(f"tokens/s {tok_s:.0f} (median of {args.steps} steps, {step * 1e3:.1f} ms/step), "
          f"last loss {loss_value:.4f}, peak RSS {peak_mib:.0f} MiB")
    best = args.batch * args.seq / min(times)  # contention only ever slows a step down
    print(f"result tokens_per_s={tok_s:.1f} best_tokens_per_s={best:.1f} peak_rss_mib={peak_mib:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
