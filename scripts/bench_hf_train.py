#!/usr/bin/env python3
"""The Hugging Face side of scripts/bench_vs_transformers.sh: trains MistralForCausalLM built
from a config.json (random init, random tokens) for warm-up + N steps, as `dus bench train` does:
forward with labels (transformers' loss), backward, clip_grad_norm_ (1.0), torch.optim.AdamW
(betas 0.9/0.95, eps 1e-8, weight decay 0.1 on >= 2-D non-embedding weights, as dus), zero_grad.

Precision: fp32, or bf16 the way transformers' Trainer does it (`bf16=True`):
torch.autocast(DEVICE, bfloat16) around the forward, fp32 weights and optimizer (--bf16-mode
autocast, the default); --bf16-mode pure casts the model to bf16 instead (no fp32 masters).

--device cuda builds the model on the GPU (random init there) and draws the tokens there; each
step is timed between torch.cuda.synchronize() calls, and AdamW is the fused one (transformers'
Trainer default optimizer on CUDA, `adamw_torch_fused`). --layers L overrides the config's
num_hidden_layers. --compile wraps the model in torch.compile (inductor, default mode; or
--compile-backend): the forward, the loss and, through AOTAutograd, the backward; the optimizer
stays eager. The compilation happens in the warm-up steps (the first one's time is printed as
compile_s). A sliding window no shorter than --seq is dropped (the same attention, causal).

Prints the median step time and one line for the script:
  result tokens_per_s=... best_tokens_per_s=... peak_rss_mib=... [peak_cuda_mib=... compile_s=...]
  (peak_rss = ru_maxrss; peak_cuda = torch.cuda.max_memory_allocated over the whole run)
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
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--layers", type=int, default=0, help="num_hidden_layers (0: the config's)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend (aot_eager: the same tracing, no code generation)")
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
    cfg.pop("torch_dtype", None)  # the compute dtype is --precision's, not the checkpoint's
    if args.layers > 0:
        cfg["num_hidden_layers"] = args.layers
    if cfg.get("sliding_window") and args.seq <= cfg["sliding_window"]:
        # No key falls outside the window: plain causal attention, the path dus takes too
        # (model/transformer.cpp), instead of sdpa with a materialised mask.
        cfg["sliding_window"] = None
    config = MistralConfig(**cfg)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("bench_hf_train: --device cuda but torch sees no CUDA device")
    # Built on the device: initialising billions of parameters on the CPU first would take
    # longer than the whole timed run.
    with device:
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
        lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps, **({"fused": True} if cuda else {}))
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                if args.precision == "bf16" and not pure_bf16 else contextlib.nullcontext())
    step_model = torch.compile(model, backend=args.compile_backend) if args.compile else model
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    print(f"transformers train: {sum(p.numel() for p in model.parameters()):,} parameters, batch "
          f"{args.batch} x {args.seq}, {args.precision}"
          f"{' (' + args.bf16_mode + ')' if args.precision == 'bf16' else ''}, "
          f"{torch.get_num_threads()} threads, attention {model.config._attn_implementation}, device "
          f"{torch.cuda.get_device_name(device) if cuda else 'cpu'}{', torch.compile' if args.compile else ''}",
          flush=True)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    loss = None
    first_step_s = 0.0
    for i in range(args.warmup + args.steps):
        sync()
        t0 = time.perf_counter()
        ids = torch.randint(0, config.vocab_size, (args.batch, args.seq), device=device)
        with autocast:
            loss = step_model(input_ids=ids, labels=ids).loss
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_value = loss.item()
        sync()  # .item() waited for the loss only; the optimizer's kernels may still run
        t = time.perf_counter() - t0
        if i == 0:
            first_step_s = t
        if i >= args.warmup:
            times.append(t)
    step = statistics.median(times)
    tok_s = args.batch * args.seq / step
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    extra = ""
    if cuda:
        peak_cuda_mib = torch.cuda.max_memory_allocated(device) / 2**20
        extra += f" peak_cuda_mib={peak_cuda_mib:.1f}"
    if args.compile:
        # The first step: tracing, code generation and the step itself.
        extra += f" compile_s={first_step_s:.1f} compile_backend={args.compile_backend}"
    print(f"tokens/s {tok_s:.0f} (median of {args.steps} steps, {step * 1e3:.1f} ms/step), "
          f"last loss {loss_value:.4f}, peak RSS {peak_mib:.0f} MiB, first step {first_step_s:.1f} s")
    best = args.batch * args.seq / min(times)  # contention only ever slows a step down
    print(f"result tokens_per_s={tok_s:.1f} best_tokens_per_s={best:.1f} peak_rss_mib={peak_mib:.1f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
