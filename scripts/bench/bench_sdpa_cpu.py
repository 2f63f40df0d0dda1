"""Which SDPA kernel PyTorch picks on CPU, and what it costs: unmasked causal attention (``is_causal=True``) vs
the same causal pattern as an explicit boolean or additive float mask (what transformers passes for padded
batches), at several sequence lengths. One run, JSON out.

    python scripts/bench/bench_sdpa_cpu.py [--lengths 1024 4096 8192]

Reported per case: the backend ``torch._fused_sdp_choice`` selects (FLASH_ATTENTION is the fused, tiled,
memory-efficient CPU kernel; MATH materialises the full score matrix), seconds per call, and the peak extra
memory of the call (tracemalloc does not see torch's allocator, so the RSS high-water mark is read in a fresh
process per case).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

BACKENDS = {
    -1: "ERROR",
    0: "MATH",
    1: "FLASH_ATTENTION",
    2: "EFFICIENT_ATTENTION",
    3: "CUDNN_ATTENTION",
    4: "OVERRIDEABLE",
}


def case(kind: str, n: int, heads: int = 4, dim: int = 32, reps: int = 3) -> dict:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, heads, n, dim) for _ in range(3))
    mask, causal = None, False
    if kind == "is_causal":
        causal = True
    elif kind == "bool_mask":
        mask = torch.ones(n, n, dtype=torch.bool).tril()
    elif kind == "float_mask":
        mask = torch.zeros(n, n).masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
    choice = int(torch._fused_sdp_choice(q, k, v, mask, 0.0, causal))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    seconds = (time.perf_counter() - start) / reps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "case": kind,
        "seq_len": n,
        "backend": BACKENDS.get(choice, str(choice)),
        "seconds": round(seconds, 5),
        "peak_rss_growth_mb": round((peak - before) / 1024, 1),
        "mask_mb": round(mask.numel() * mask.element_size() / 2**20, 1) if mask is not None else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 8192])
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(case(args.one[0], int(args.one[1]))))
        return
    import torch

    rows = []
    for n in args.lengths:
        for kind in ("is_causal", "bool_mask", "float_mask"):
            r = subprocess.run(
                [sys.executable, __file__, "--one", kind, str(n)], capture_output=True, text=True, env={**os.environ}
            )
            if r.returncode != 0:
                raise SystemExit(r.stderr[-2000:])
            rows.append(json.loads(r.stdout))
    by = {(r["seq_len"], r["case"]): r for r in rows}
    top = max(args.lengths)
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "results": rows,
                f"bool_mask_vs_is_causal_time_at_{top}": round(
                    by[(top, "bool_mask")]["seconds"] / by[(top, "is_causal")]["seconds"], 2
                ),
                f"float_mask_vs_is_causal_time_at_{top}": round(
                    by[(top, "float_mask")]["seconds"] / by[(top, "is_causal")]["seconds"], 2
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
