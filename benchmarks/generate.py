"""Generation speed of a TinyGPT with and without the key/value cache.

python benchmarks/generate.py [--new-tokens 256] [--prompt-tokens 16] [--repeats 3]

The model has the tutorial's dims (vocab 8000, 128 dims, 4 heads, 6 layers) with a context long
enough for prompt + new tokens (default 512), random weights, greedy decoding, batch 1, through
tinygpt.generate.generate_ids. With the cache each new token runs one position through the model
(past keys and values are kept); without it every token re-runs the whole sequence so far.
A second table shows the tutorial's own context of 128: there the window slides after 128 tokens,
the learned positions of every cached token change, and the cache must be rebuilt each token.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import minigrad as mg  # noqa: E402
from benchmarks.train_step import blas_env, blas_info, cpu_name  # noqa: E402
from tinygpt import TinyGPT, preset  # noqa: E402
from tinygpt.generate import generate_ids  # noqa: E402
mg.tune_malloc()  # as tinygpt.train does: freed heap memory is kept for the next step


def tokens_per_second(model: TinyGPT, prompt: list, new_tokens: int, use_cache: bool, repeats: int) -> tuple:
    """(median tokens/s over repeats, the generated ids of the last run)."""
    rates, out = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = generate_ids(model, prompt, new_tokens, np.random.default_rng(0), greedy=True, use_cache=use_cache)
        rates.append(len(out) / (time.perf_counter() - t0))
    return statistics.median(rates), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--context", type=int, default=512, help="block_size of the model of the main table")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.prompt_tokens + args.new_tokens > args.context:
        sys.exit(f"generate: --context {args.context} is shorter than prompt + new tokens")

    print(f"machine: {cpu_name()}, {os.cpu_count()} cpus; numpy BLAS: {blas_info()}; env {blas_env()}")
    print(f"greedy decoding, batch 1, {args.prompt_tokens}-token prompt, {args.new_tokens} new tokens, "
          f"median of {args.repeats} runs\n")
    print(f"{'model':34s} {'cache':>6s} {'tokens/s':>9s} {'ms/token':>9s} {'speed-up':>9s}")
    results = {}
    for context in (args.context, 128):
        mg.manual_seed(args.seed)
        model = TinyGPT(preset("tutorial", block_size=context))
        model.eval()
        prompt = np.random.default_rng(args.seed).integers(0, 8000, args.prompt_tokens).tolist()
        with_cache, ids_cached = tokens_per_second(model, prompt, args.new_tokens, True, args.repeats)
        without, ids_plain = tokens_per_second(model, prompt, args.new_tokens, False, args.repeats)
        if ids_cached != ids_plain:  # the cache must not change what is generated
            sys.exit(f"generate: cached and uncached greedy outputs differ (context {context})")
        name = f"tutorial dims, context {context}"
        for cached, rate in (("yes", with_cache), ("no", without)):
            print(f"{name:34s} {cached:>6s} {rate:9.1f} {1e3 / rate:9.2f} {rate / without:8.2f}x")
        results[context] = (with_cache, without)
    w, n = results[args.context]
    print(f"SUMMARY generate {args.new_tokens} tokens: KV cache {w:.0f} tok/s vs {n:.0f} tok/s without "
          f"({w / n:.1f}x; context {args.context}); at context 128: {results[128][0] / results[128][1]:.1f}x")


if __name__ == "__main__":
    main()
