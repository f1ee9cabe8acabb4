#!/usr/bin/env python3
"""Sort-based PyTorch top-p sampler (the HF `TopPLogitsWarper` + multinomial recipe) timed against corl's GPU sampler
in the same run: B = 256 rows, V in {16384, 102400}, fp32 and bf16, top-p 0.9, temperature 1.

Usage: python3 bench/compare_torch_sampling.py [--bench build/bench/gpu_bench_sampling]
Prints one line per configuration: torch ms, corl ms (from the benchmark binary's JSON output) and the speed-up.
Needs torch with CUDA; without it (or without a GPU) it says so and exits 0.
"""
import argparse
import json
import subprocess
import sys


def torch_top_p_ms(torch, batch, vocab, dtype, top_p=0.9, reps=50):
    g = torch.Generator(device="cuda").manual_seed(0)
    logits = (torch.randn(batch, vocab, device="cuda", generator=g) * 2.3).to(dtype)

    def sample():
        sorted_logits, sorted_idx = torch.sort(logits.float(), descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        cum = torch.cumsum(probs, dim=-1)
        remove = (cum - probs) > top_p  # keep the smallest prefix whose mass reaches top_p
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        probs = torch.softmax(sorted_logits, dim=-1)
        choice = torch.multinomial(probs, 1, generator=g)
        token = sorted_idx.gather(-1, choice)
        logp = torch.log(probs.gather(-1, choice))
        return token, logp

    for _ in range(5):
        sample()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        sample()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / reps


def corl_ms(bench):
    if not bench:
        return {}
    out = subprocess.run([bench, "--benchmark_filter=^sample/(fp32|bf16)/top_p0.9/", "--benchmark_format=json"], check=True,
                         capture_output=True, text=True).stdout
    data = json.loads(out[out.index("{"):])
    result = {}
    for b in data["benchmarks"]:
        # names: sample/<fp32|bf16>/top_p0.9/<V>/iterations:100/manual_time
        parts = b["name"].split("/")
        result[(parts[1], int(parts[3]))] = b["real_time"] / 1000.0  # us -> ms
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", help="path to gpu_bench_sampling")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("skipped: torch is not installed")
        return 0
    if not torch.cuda.is_available():
        print("skipped: no CUDA device present")
        return 0
    ours = corl_ms(args.bench)
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    print(f"{'dtype':>5} {'V':>7} {'torch sort top-p ms':>20} {'corl ms':>9} {'speed-up':>9}")
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for vocab in (16384, 102400):
            t = torch_top_p_ms(torch, 256, vocab, dtype)
            c = ours.get((name, vocab))
            cs = f"{c:9.4f}" if c else f"{'-':>9}"
            sp = f"{t / c:8.1f}x" if c else f"{'-':>9}"
            print(f"{name:>5} {vocab:>7} {t:20.4f} {cs} {sp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
