"""Text generation: temperature, top-k, top-p or greedy sampling with a key/value cache.

python -m tinygpt.generate --run runs/NAME --prompt "The story begins" --max-new-tokens 80
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import numpy as np

import minigrad as mg
from minigrad import backend


def sample_next(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, greedy: bool = False) -> int:
    """Pick the next token id from one row of logits."""
    if greedy or temperature == 0.0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    if top_k is not None and 0 < top_k < z.size:
        kth = np.partition(z, -top_k)[-top_k]
        z[z < kth] = -np.inf
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p is not None and 0.0 < top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cum, top_p)) + 1]  # the smallest set whose mass reaches top_p
        mask = np.zeros_like(p)
        mask[keep] = p[keep]
        p = mask / mask.sum()
    return int(rng.choice(p.size, p=p))


@mg.no_grad()
def generate_ids(model: Any, prompt_ids: list[int], max_new_tokens: int, rng: np.random.Generator,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 greedy: bool = False, eos_id: int | None = None, use_cache: bool = True,
                 on_token: Callable[[list[int]], None] | None = None) -> list[int]:
    """Extend prompt_ids by up to max_new_tokens; prompts longer than the context keep their last tokens."""
    block = model.cfg.block_size
    ids = list(prompt_ids)[-block:] if prompt_ids else [eos_id if eos_id is not None else 0]
    dev = model.tok_embed.weight.device
    caches, pos = None, 0
    new: list[int] = []
    for _ in range(max_new_tokens):
        if use_cache and caches is not None and pos < block:
            step_ids = ids[-1:]  # only the newest token: keys/values of the rest are cached
        else:
            caches, pos = (model.new_caches() if use_cache else None), 0
            step_ids = ids[-block:]
        x = backend.from_numpy(dev, np.asarray([step_ids], dtype=np.int64))
        logits = model(x, caches=caches, start_pos=pos)
        pos += len(step_ids)
        row = backend.to_numpy(logits.data[0, -1])
        nxt = sample_next(row, rng, temperature, top_k, top_p, greedy)
        if eos_id is not None and nxt == eos_id:
            break
        ids.append(nxt)
        new.append(nxt)
        if on_token is not None:
            on_token(new)
    return new


def generate_text(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int = 80, seed: int | None = None,
                  stream: bool = False, **sampling: Any) -> str:
    """The generated continuation of prompt as text (printed as it is produced when stream=True)."""
    rng = np.random.default_rng(seed)
    printed = [""]

    def show(new_ids: list[int]) -> None:
        text = tokenizer.decode(new_ids)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            sys.stdout.write(text[len(printed[0]):])
            sys.stdout.flush()
            printed[0] = text

    prompt_ids = tokenizer.encode(prompt) if prompt else []
    was_training = model.training
    model.eval()
    try:
        new = generate_ids(model, prompt_ids, max_new_tokens, rng, eos_id=getattr(tokenizer, "eos_id", None),
                           on_token=show if stream else None, **sampling)
    finally:
        model.train(was_training)
    return tokenizer.decode(new)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tinygpt.generate", description="Generate text from a trained run.")
    p.add_argument("--run", required=True, help="run folder written by tinygpt.train (runs/NAME)")
    p.add_argument("--prompt", default="", help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=80)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole context every token")
    args = p.parse_args(argv)
    from tinygpt.checkpoint import load
    try:
        model, tokenizer = load(args.run, device=args.device)
    except (FileNotFoundError, backend.CudaUnavailableError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for i in range(args.num_samples):
        if args.num_samples > 1:
            print(f"--- sample {i + 1}")
        sys.stdout.write(args.prompt)
        generate_text(model, tokenizer, args.prompt, args.max_new_tokens,
                      seed=None if args.seed is None else args.seed + i, stream=True,
                      temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, greedy=args.greedy,
                      use_cache=not args.no_cache)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
