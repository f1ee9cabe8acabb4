#!/usr/bin/env python3
"""Unfused PyTorch lm_head + GRPO (PPO clip + K3 KL) forward and backward, timed against corl's fused, chunked
version in the same run: N = 8192 tokens (16 x 512), H = 2048, V = 102400, bf16 weights and hidden states.

The PyTorch path materialises the N x V logits (bf16), their fp32 log-softmax and the gradients, which is what the
fused kernel avoids; it reports time and peak extra memory (torch.cuda.max_memory_allocated above the inputs).
Usage: python3 bench/compare_torch_lm_head.py [--bench build/bench/gpu_bench_fused_lm_head_loss]
Needs torch with CUDA; without it (or without a GPU) it says so and exits 0.
"""
import argparse
import json
import subprocess
import sys

SEQS, SEQ_LEN, H, V = 16, 512, 2048, 102400
N = SEQS * SEQ_LEN


def torch_unfused(torch, reps=5):
    g = torch.Generator(device="cuda").manual_seed(0)
    hidden = (torch.rand(N, H, device="cuda", generator=g) * 2 - 1).to(torch.bfloat16).requires_grad_()
    weight = (torch.rand(V, H, device="cuda", generator=g) * 0.1 - 0.05).to(torch.bfloat16).requires_grad_()
    targets = torch.randint(0, V, (N,), device="cuda", generator=g)
    logp_old = torch.full((N,), -11.5, device="cuda")
    logp_ref = torch.full((N,), -11.6, device="cuda")
    adv = torch.tensor([1.0, -1.0] * (SEQS // 2), device="cuda").repeat_interleave(SEQ_LEN)
    eps, beta = 0.2, 0.02

    def step():
        hidden.grad = None
        weight.grad = None
        logits = hidden @ weight.t()
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[:, None]).squeeze(-1)
        ratio = torch.exp(logp - logp_old)
        pg = -torch.minimum(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)
        d = logp_ref - logp
        kl = torch.exp(d) - d - 1
        loss = (pg + beta * kl).mean()
        loss.backward()
        return loss

    step()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        step()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / reps, (torch.cuda.max_memory_allocated() - base) / 2**30


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", help="path to gpu_bench_fused_lm_head_loss")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("skipped: torch is not installed")
        return 0
    if not torch.cuda.is_available():
        print("skipped: no CUDA device present")
        return 0
    flops = 6.0 * N * H * V
    ms, gib = torch_unfused(torch)
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    print(f"torch unfused: {ms:8.2f} ms  {flops / ms * 1e-9:7.1f} TFLOP/s  peak extra {gib:6.2f} GiB")
    if args.bench:
        out = subprocess.run([args.bench, "--benchmark_format=json"], check=True, capture_output=True,
                             text=True).stdout
        data = json.loads(out[out.index("{"):])
        for b in data["benchmarks"]:
            print(f"corl {b['name'].split('/')[-3]}={b['name'].split('/')[-2]:>5}: {b['real_time']:8.2f} ms  "
                  f"{b['TFLOPs']:7.1f} TFLOP/s  extra {b['extra_MiB'] / 1024:6.2f} GiB  "
                  f"({b['x_gemm_rate']:.2f} of the measured GEMM rate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
