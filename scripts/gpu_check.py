"""The GPU half of scripts/gpu_check.sh: the CUDA kernels of the torch extension against its CPU
kernels, the compress path's reads, and the kernel timings, on a machine with an NVIDIA GPU.

Needs torch with CUDA and the built library only (no Horovod): ``python gpu_check.py --library
horovod_distq/_torch_ops....so --out DIR``. Exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

FAMILIES = ("normal", "laplace", "cauchy", "student_t", "exponential", "gamma", "gpareto", "auto")
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
RTOL = 2e-5  # each side within 1e-5 of the exact fit (tests/device/test_device_kernels.py)


def gradient_like(n: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Student-t(4) values scaled to 1e-3, slightly off centre, as real gradients are."""
    generator = torch.Generator().manual_seed(seed)
    normal = torch.randn(n, generator=generator, dtype=torch.float64)
    chi2 = torch.randn((4, n), generator=generator, dtype=torch.float64).pow(2).mean(0)
    return (1e-3 * normal / chi2.sqrt() + 1e-5).to(dtype)


def compare(x: torch.Tensor, family: str, ratio: float, stages: int) -> str | None:
    """None when the GPU's selection of x is the CPU's (to the thresholds' rounding), else why not."""
    dof = 0.0
    cpu = torch.ops.distq.sparsify(x, ratio, family, dof, 4096, stages)
    gpu = [t.cpu() for t in torch.ops.distq.sparsify(x.cuda(), ratio, family, dof, 4096, stages)]
    threshold, center = float(cpu[2]), float(cpu[3])
    if not (abs(float(gpu[2]) - threshold) <= RTOL * abs(threshold) or (threshold != threshold and gpu[2].isnan())):
        return f"threshold {float(gpu[2])} against {threshold}"
    values = x.double() if x.dtype == torch.float64 else x.float()
    cpu_set, gpu_set = set(cpu[0].tolist()), set(gpu[0].tolist())
    differ = torch.tensor(sorted(cpu_set ^ gpu_set), dtype=torch.long)
    spread = abs(threshold) if threshold == threshold and abs(threshold) != float("inf") else 1.0
    if differ.numel() and ((values[differ] - center).abs() - threshold).abs().max() > 4 * RTOL * spread:
        return f"{differ.numel()} entries differ beyond rounding"
    if not torch.equal(gpu[1].view(torch.uint8), x[gpu[0].long()].view(torch.uint8)):
        return "values are not the tensor's bits"
    if gpu[0].numel() > 1 and not bool((gpu[0][1:] > gpu[0][:-1]).all()):
        return "indices out of order"
    return None


def check_kernels() -> list[str]:
    failures = []
    cases = [(gradient_like(1 << 18, dtype, seed), f, r, s, str(dtype)) for seed, dtype in enumerate(DTYPES)
             for f in FAMILIES for s in (1, 2, 3) for r in (0.1, 0.01, 0.001, 0.0001)]
    special = gradient_like(1 << 16, torch.float32, 9)
    special[[5, 900, 40_000]] = torch.tensor([float("nan"), float("inf"), float("-inf")])
    cases += [(special, f, 0.001, s, "nonfinite") for f in FAMILIES for s in (1, 3)]
    degenerate = {"empty": torch.zeros(0), "one": torch.tensor([0.25]), "zeros": torch.zeros(1000),
                  "nan": torch.full((1000,), float("nan"))}
    cases += [(x, f, 0.01, s, name) for name, x in degenerate.items() for f in FAMILIES for s in (1, 3)]
    big = gradient_like(1 << 24, torch.float32, 11)
    cases += [(big, f, r, 3 if f == "auto" else 1, "2^24") for f in ("auto", "normal", "gamma") for r in (0.01, 0.001)]
    for x, family, ratio, stages, what in cases:
        why = compare(x, family, ratio, stages)
        if why:
            failures.append(f"{what} {family} ratio {ratio} stages {stages}: {why}")
    print(f"kernels: {len(cases) - len(failures)} of {len(cases)} cases match the CPU")
    return failures


def check_reads() -> list[str]:
    """Selecting a step's gradients leaves every count on the device: no synchronising call until
    the one read of all of them (torch's sync debug mode raises on any)."""
    tensors = [gradient_like(n, torch.float32, i).cuda() for i, n in enumerate((4096, 1 << 16, 1 << 20, 300_000))]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        counts = [torch.ops.distq.sparsify_padded(t, 0.01, "auto", 0.0, 4096, 3, -1)[2] for t in tensors]
        stacked = torch.stack(counts)
    except RuntimeError as error:
        return [f"a selection synchronised with the host: {error}"]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    print(f"reads: {len(tensors)} selections, counts {stacked.tolist()} read in one copy")
    return []


def timed(fn, *args, repetitions: int = 20) -> float:
    """Median milliseconds of fn(*args) by CUDA events, after three warm-up calls."""
    for _ in range(3):
        fn(*args)
    times = []
    for _ in range(repetitions):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*args)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def top_k(x: torch.Tensor, k: int) -> torch.Tensor:
    """What GRACE and DGC select by: the k largest magnitudes."""
    return torch.topk(x.abs(), k, sorted=False).indices


def benchmark() -> list[dict]:
    rows = []
    for n in (1 << 24, 1 << 26):
        for dtype in (torch.float32, torch.bfloat16):
            x = gradient_like(n, dtype, 3).cuda()
            read = timed(torch.sum, x)
            for ratio in (0.01, 0.001):
                k = int(ratio * n)
                topk = timed(top_k, x, k)
                for family, stages in (("normal", 1), ("auto", 3)):
                    distq = timed(torch.ops.distq.sparsify_padded, x, ratio, family, 0.0, 4096, stages, -1)
                    rows.append({"n": n, "dtype": str(dtype).split(".")[1], "ratio": ratio, "family": family,
                                 "distq_ms": distq, "read_ms": read, "topk_ms": topk,
                                 "x_read": distq / read, "topk_over_distq": topk / distq})
    print("| entries | dtype | ratio | family | distq (ms) | x read pass | torch.topk (ms) | topk / distq |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| 2^{r['n'].bit_length() - 1} | {r['dtype']} | {r['ratio']} | {r['family']} | {r['distq_ms']:.3f} "
              f"| {r['x_read']:.2f}x | {r['topk_ms']:.3f} | {r['topk_over_distq']:.1f}x |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--library", required=True, help="the built horovod_distq/_torch_ops*.so")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    torch.ops.load_library(args.library)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    failures = check_kernels() + check_reads()
    rows = benchmark()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_kernels.json").write_text(json.dumps({"failures": failures, "rows": rows}, indent=1))
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
