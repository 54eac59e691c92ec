"""The optimizer's part of a tutorial training step: AdamW, zero_grad and clip_grad_norm_, flat buffers vs per tensor.

python benchmarks/optimizer_step.py [--repeats 50] [--device cpu]

The tutorial TinyGPT (vocab 8000, 128 dims, 4 heads, 6 layers, context 128: 3.4 M parameters in 29 tensors) gets
random gradients once; then AdamW(lr 3e-4, weight_decay 0.01 on the 2-D weights) is timed with flat=False (one
update per tensor, as torch's foreach=False) and flat=True (one flat parameter array and one flat gradient array:
each parameter and its .grad are views into them, so the update, zero_grad and the clipping norm are one pass each).
The two take turns; each row is the median of --repeats calls.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import minigrad as mg  # noqa: E402
from tinygpt import TinyGPT, preset  # noqa: E402


def build(flat: bool, device: str) -> tuple:
    mg.manual_seed(0)
    model = TinyGPT(preset("tutorial")).to(device)
    opt = mg.optim.AdamW(model.param_groups(0.01), lr=3e-4, flat=flat)
    ids = np.random.default_rng(0).integers(0, model.cfg.vocab_size, (2, 8, model.cfg.block_size))
    _, loss = model(*(mg.tensor(a, device=device) for a in ids))
    loss.backward()  # real gradients, written into the flat gradient array when flat=True
    return model, opt


def timed(fn: Callable[[], Any], device: str) -> float:
    t0 = time.perf_counter()
    fn()
    mg.device(device).synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    setups = {flat: build(flat, args.device) for flat in (False, True)}
    ops = {
        "AdamW step": lambda m, o: o.step(),
        "clip_grad_norm_(1.0)": lambda m, o: mg.optim.clip_grad_norm_(m.parameters(), 1.0),
        "zero_grad(set_to_none=False)": lambda m, o: o.zero_grad(set_to_none=False),
    }
    times = {(name, flat): [] for name in ops for flat in (False, True)}
    for _ in range(args.repeats):
        for flat, (model, opt) in setups.items():
            for name, op in ops.items():
                times[(name, flat)].append(timed(lambda: op(model, opt), args.device))
    n = sum(p.numel() for p in setups[True][0].parameters())
    print(f"tutorial TinyGPT: {n:,} parameters in {len(list(setups[True][0].parameters()))} tensors, "
          f"device {args.device}, median of {args.repeats}")
    print(f"{'op':30s} {'per tensor':>12s} {'flat':>12s} {'speed-up':>9s}")
    total = {False: 0.0, True: 0.0}
    for name in ops:
        a, b = (statistics.median(times[(name, f)]) for f in (False, True))
        total[False] += a
        total[True] += b
        print(f"{name:30s} {a * 1e3:10.2f} ms {b * 1e3:10.2f} ms {a / b:8.2f}x")
    print(f"{'all three':30s} {total[False] * 1e3:10.2f} ms {total[True] * 1e3:10.2f} ms "
          f"{total[False] / total[True]:8.2f}x")
    print(f"SUMMARY optimizer part of a step: {total[False] * 1e3:.1f} ms per tensor, {total[True] * 1e3:.1f} ms flat "
          f"({total[False] / total[True]:.2f}x)")


if __name__ == "__main__":
    main()
