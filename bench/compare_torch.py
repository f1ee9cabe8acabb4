#!/usr/bin/env python3
"""bench/compare_torch.py — corl's fused GRPO loss (forward + backward from bf16 logits) against PyTorch.

Same inputs, same process, same GPU: B32 T512 V102400 and B32 T576 V16384 (DESIGN.md section 5), PPO clip
(eps 0.2 / 0.28) + K3 KL (beta 0.04), token-mean aggregation over a mask, temperature 1.
  * torch eager, written the way TRL's GRPOTrainer writes it: logits / T, selective_log_softmax (row loop of
    log_softmax + gather for bf16), exp(logp - old), clamp, -min(...), k3 = exp(ref - logp) - (ref - logp) - 1,
    (per_token_loss * mask).sum() / mask.sum(); loss.backward() gives dL/dlogits.
  * torch.compile of the same loss computed in float32 (log_softmax on logits.float()).
  * corl through ctypes (bench/compare_torch_corl.cu built by scripts/gpu-check into build-gpu/libcorl_compare.so).
Timing: CUDA events around forward + backward, median of --reps after warm-up. Correctness: corl's loss and
dlogits against a float32 torch reference on the same inputs (bf16 gradients: tolerance one bf16 ulp, 2^-7 relative,
plus 1e-3 of the largest |grad|). Writes JSON (--out) and prints a table.
"""
import argparse
import ctypes
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

EPS_LOW, EPS_HIGH, BETA, TEMPERATURE = 0.2, 0.28, 0.04, 1.0


def selective_log_softmax(logits, index):
    """TRL trl/trainer/utils.py selective_log_softmax, as written there."""
    if logits.dtype in (torch.float32, torch.float64):
        selected = torch.gather(logits, dim=-1, index=index.unsqueeze(-1)).squeeze(-1)
        lse = torch.stack([torch.logsumexp(lg, dim=-1) for lg in logits])
        return selected - lse
    out = []
    for row_logits, row_labels in zip(logits, index):
        row_logps = F.log_softmax(row_logits, dim=-1)
        out.append(row_logps.gather(dim=-1, index=row_labels.unsqueeze(-1)).squeeze(-1))
    return torch.stack(out)


def trl_loss(logits, ids, old, ref, adv, mask):
    """TRL GRPOTrainer._compute_loss (loss_type='bnpo' = token mean), beta > 0, two-sided epsilon."""
    logits = logits / TEMPERATURE
    logp = selective_log_softmax(logits, ids)
    per_token_kl = torch.exp(ref - logp) - (ref - logp) - 1
    coef_1 = torch.exp(logp - old)
    coef_2 = torch.clamp(coef_1, 1 - EPS_LOW, 1 + EPS_HIGH)
    per_token_loss = -torch.min(coef_1 * adv.unsqueeze(1), coef_2 * adv.unsqueeze(1))
    per_token_loss = per_token_loss + BETA * per_token_kl
    return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)


def float_loss(logits, ids, old, ref, adv, mask):
    """The same loss with the softmax in float32 (the accuracy reference, and what torch.compile gets)."""
    logp = torch.log_softmax(logits.float() / TEMPERATURE, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    per_token_kl = torch.exp(ref - logp) - (ref - logp) - 1
    coef_1 = torch.exp(logp - old)
    coef_2 = torch.clamp(coef_1, 1 - EPS_LOW, 1 + EPS_HIGH)
    per_token_loss = -torch.min(coef_1 * adv.unsqueeze(1), coef_2 * adv.unsqueeze(1)) + BETA * per_token_kl
    return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)


def make_inputs(B, T, V, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    logits = (torch.randn(B, T, V, device="cuda", generator=g) * 2).to(torch.bfloat16)
    ids = torch.randint(0, V, (B, T), device="cuda", generator=g, dtype=torch.int64)
    with torch.no_grad():
        lp = torch.log_softmax(logits.float(), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    old = lp + 0.2 * (torch.rand(B, T, device="cuda", generator=g) - 0.5)
    ref = lp + 0.4 * (torch.rand(B, T, device="cuda", generator=g) - 0.5)
    adv = torch.randn(B, device="cuda", generator=g)
    mask = torch.ones(B, T, device="cuda")
    mask[:, T - T // 8:] = 0  # padding at the end of every sequence
    return logits, ids, old.contiguous(), ref.contiguous(), adv, mask


def time_cuda(fn, reps, warmup=2):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


class Corl:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.lib.corl_grpo_scratch_bytes.restype = ctypes.c_size_t
        self.lib.corl_grpo_scratch_bytes.argtypes = [ctypes.c_longlong, ctypes.c_longlong]
        self.lib.corl_grpo_result_bytes.restype = ctypes.c_size_t
        f = self.lib.corl_grpo_loss_bf16
        f.restype = ctypes.c_int
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_longlong] + \
            [ctypes.c_void_p] * 6 + [ctypes.c_float] * 4 + [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                                            ctypes.c_int, ctypes.POINTER(ctypes.c_double)]

    def prepare(self, logits, ids, old, ref, adv, mask):
        B, T, V = logits.shape
        self.shape = (B, T, V)
        self.logits = logits.contiguous()
        self.dlogits = torch.empty_like(self.logits)
        self.ids = ids.to(torch.int32).contiguous()
        self.mask = mask.to(torch.uint8).contiguous()
        self.old, self.ref = old.contiguous(), ref.contiguous()
        self.adv = adv.float().contiguous()
        self.weight = torch.full((B,), 1.0 / float(mask.sum().item()), device="cuda")
        self.scratch_bytes = self.lib.corl_grpo_scratch_bytes(B * T, B)
        self.scratch = torch.empty(self.scratch_bytes, dtype=torch.uint8, device="cuda")
        self.result = torch.empty(self.lib.corl_grpo_result_bytes(), dtype=torch.uint8, device="cuda")

    def run(self, sync=False):
        B, T, V = self.shape
        loss = ctypes.c_double(float("nan"))
        rc = self.lib.corl_grpo_loss_bf16(
            self.logits.data_ptr(), self.dlogits.data_ptr(), B, T, V, self.ids.data_ptr(), self.mask.data_ptr(),
            self.old.data_ptr(), self.ref.data_ptr(), self.adv.data_ptr(), self.weight.data_ptr(), TEMPERATURE, BETA,
            EPS_LOW, EPS_HIGH, self.scratch.data_ptr(), self.scratch_bytes, self.result.data_ptr(), 1 if sync else 0,
            ctypes.byref(loss))
        if rc != 0:
            raise RuntimeError("corl_grpo_loss_bf16 failed")
        return loss.value


def fwd_bwd(loss_fn, logits, *rest):
    x = logits.detach().requires_grad_(True)
    loss = loss_fn(x, *rest)
    loss.backward()
    return loss.detach(), x.grad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default="build-gpu/libcorl_compare.so")
    ap.add_argument("--out", default="compare_torch.json")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--budget-s", type=float, default=150.0, help="skip torch.compile when past this many seconds")
    args = ap.parse_args()
    t_start = time.time()
    corl = Corl(os.path.abspath(args.lib))
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "problems": []}
    for (B, T, V) in [(32, 576, 16384), (32, 512, 102400)]:
        row = {"B": B, "T": T, "V": V, "floor_bytes": 2 * B * T * V * 2}
        inputs = make_inputs(B, T, V)
        logits, ids, old, ref, adv, mask = inputs
        # correctness: corl vs float32 torch on the same inputs
        corl.prepare(*inputs)
        loss_corl = corl.run(sync=True)
        loss_ref, grad_ref = fwd_bwd(float_loss, *inputs)
        grad_ref = grad_ref.float()
        g = corl.dlogits.float()
        max_ref = grad_ref.abs().max().item()
        excess = ((g - grad_ref).abs() - (grad_ref.abs() / 128 + 1e-3 * max_ref)).max().item()
        row["loss_corl"], row["loss_torch_fp32"] = loss_corl, loss_ref.item()
        row["loss_rel_diff"] = abs(loss_corl - loss_ref.item()) / max(abs(loss_ref.item()), 1e-12)
        row["grad_max_abs_diff"] = (g - grad_ref).abs().max().item()
        row["grad_max_abs"] = max_ref
        row["agree"] = bool(row["loss_rel_diff"] < 1e-3 and excess <= 0)
        loss_trl, grad_trl = fwd_bwd(trl_loss, *inputs)
        row["loss_trl_bf16"] = loss_trl.item()
        row["trl_bf16_grad_max_abs_diff_vs_fp32"] = (grad_trl.float() - grad_ref).abs().max().item()
        del grad_ref, g, grad_trl
        torch.cuda.empty_cache()
        # timing
        row["corl_ms"] = time_cuda(lambda: corl.run(), args.reps)
        row["torch_eager_trl_ms"] = time_cuda(lambda: fwd_bwd(trl_loss, *inputs), max(3, args.reps // 3))
        torch.cuda.empty_cache()
        if not args.no_compile and time.time() - t_start < args.budget_s:
            compiled = torch.compile(float_loss)
            try:
                t0 = time.time()
                fwd_bwd(compiled, *inputs)
                row["torch_compile_first_call_s"] = time.time() - t0
                row["torch_compile_ms"] = time_cuda(lambda: fwd_bwd(compiled, *inputs), args.reps)
            except Exception as e:  # a failed compile is reported, not fatal
                row["torch_compile_error"] = repr(e)[:300]
        else:
            row["torch_compile_ms"] = None
        row["speedup_vs_eager"] = row["torch_eager_trl_ms"] / row["corl_ms"]
        if row.get("torch_compile_ms"):
            row["speedup_vs_compile"] = row["torch_compile_ms"] / row["corl_ms"]
        results["problems"].append(row)
        del inputs, logits, ids, old, ref, adv, mask
        torch.cuda.empty_cache()
        print(json.dumps(row), flush=True)
        with open(args.out, "w") as f:  # after every problem: a timeout keeps what was measured
            json.dump(results, f, indent=2)
    print(f"{'problem':>22} {'corl ms':>8} {'eager ms':>9} {'compile ms':>10} {'loss rel':>9} {'agree':>6}")
    for r in results["problems"]:
        c = r.get("torch_compile_ms")
        print(f"{'B%d T%d V%d' % (r['B'], r['T'], r['V']):>22} {r['corl_ms']:8.3f} {r['torch_eager_trl_ms']:9.3f} "
              f"{(c if c else float('nan')):10.3f} {r['loss_rel_diff']:9.2e} {str(r['agree']):>6}")
    return 0 if all(r["agree"] for r in results["problems"]) else 1


if __name__ == "__main__":
    sys.exit(main())
