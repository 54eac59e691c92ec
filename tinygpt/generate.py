"""Text generation: temperature, top-k, top-p or greedy sampling with a key/value cache.

python -m tinygpt.generate --run runs/NAME --prompt "The story begins" --max-new-tokens 80

From Python (samples exactly like the command line's defaults):

    import tinygpt, tinygpt.generate
    model, tok = tinygpt.load("runs/NAME")
    print(tinygpt.generate.generate_text(model, tok, "The story begins", 80, seed=0))
"""
from __future__ import annotations

import math
import numbers
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

import minigrad as mg
from minigrad import backend
from tinygpt.cli import Parser, UsageError, check_range, silence_stdout

# The sampling defaults of both the command line and generate_text.
TEMPERATURE = 0.8
TOP_K = 50
TOP_P = 0.95
MAX_NEW_TOKENS = 80


def check_sampling(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> None:
    """Raise ValueError unless temperature is finite and >= 0, top_k None or an int >= 0, top_p None or in (0, 1]."""
    if (not isinstance(temperature, numbers.Real) or isinstance(temperature, bool)
            or not math.isfinite(temperature) or temperature < 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool) or top_k < 0):
        raise ValueError(f"top_k must be None or an integer >= 0 (None or 0 = off), got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, numbers.Real) or isinstance(top_p, bool)
                              or not 0.0 < top_p <= 1.0):  # nan fails this test too
        raise ValueError(f"top_p must be None or satisfy 0 < top_p <= 1 (None or 1 = off), got {top_p!r}")


def sample_next(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, greedy: bool = False) -> int:
    """Pick the next token id from one row of logits.

    temperature 0 (or greedy=True) takes the most likely token; top_k 0/None and top_p 1/None are off.
    Invalid values (negative or non-finite temperature, negative top_k, top_p outside (0, 1]) raise ValueError.
    """
    check_sampling(temperature, top_k, top_p)
    if greedy or temperature == 0.0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64)
    z = (z - z.max()) / temperature  # shift first: a tiny temperature gives -inf, never inf - inf = nan
    if top_k and top_k < z.size:
        kth = np.partition(z, -top_k)[-top_k]
        z[z < kth] = -np.inf
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cum, top_p)) + 1]  # the smallest set whose mass reaches top_p
        mask = np.zeros_like(p)
        mask[keep] = p[keep]
        p = mask / mask.sum()
    return int(rng.choice(p.size, p=p))


def _check_max_new_tokens(max_new_tokens: Any) -> None:
    if not isinstance(max_new_tokens, numbers.Integral) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")


@mg.no_grad()
def generate_ids(model: Any, prompt_ids: list[int], max_new_tokens: int, rng: np.random.Generator,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 greedy: bool = False, eos_id: int | None = None, use_cache: bool = True,
                 on_token: Callable[[list[int]], None] | None = None) -> list[int]:
    """Extend prompt_ids by up to max_new_tokens; prompts longer than the context keep their last tokens.

    The low-level loop: its defaults sample from the model's plain distribution (temperature 1, no top-k
    or top-p); generate_text uses the command line's defaults. Invalid sampling values raise ValueError.
    """
    check_sampling(temperature, top_k, top_p)
    _check_max_new_tokens(max_new_tokens)
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


def generate_text(model: Any, tokenizer: Any, prompt: str = "", max_new_tokens: int = MAX_NEW_TOKENS,
                  seed: int | None = None, stream: bool = False, *, temperature: float = TEMPERATURE,
                  top_k: int | None = TOP_K, top_p: float | None = TOP_P, greedy: bool = False,
                  use_cache: bool = True) -> str:
    """The generated continuation of prompt as text (printed as it is produced when stream=True).

    The defaults are those of `python -m tinygpt.generate`, so with the same seed both give the same text:
        model, tok = tinygpt.load("runs/NAME")
        print(tinygpt.generate.generate_text(model, tok, "The story begins", seed=0))
    temperature 0 (or greedy=True) is greedy decoding; top_k 0/None and top_p 1/None switch those filters off.
    Invalid values raise ValueError, as does a prompt the tokenizer cannot encode.
    """
    check_sampling(temperature, top_k, top_p)
    _check_max_new_tokens(max_new_tokens)
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
        new = generate_ids(model, prompt_ids, max_new_tokens, rng, temperature=temperature, top_k=top_k,
                           top_p=top_p, greedy=greedy, eos_id=getattr(tokenizer, "eos_id", None),
                           use_cache=use_cache, on_token=show if stream else None)
    finally:
        model.train(was_training)
    return tokenizer.decode(new)


# ---------------------------------------------------------------- command line

def build_parser() -> Parser:
    p = Parser(prog="python -m tinygpt.generate",
               description="Generate text from a run trained by python -m tinygpt.train, e.g. "
                           "python -m tinygpt.generate --run runs/NAME --prompt \"The story begins\"")
    p.add_argument("--run", required=True, help="run folder written by tinygpt.train (runs/NAME)%(default).0s")
    p.add_argument("--prompt", default="", help="text to continue (default %(default)r: start from nothing)")
    p.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS, help="tokens to generate per sample (>= 0)")
    p.add_argument("--temperature", type=float, default=TEMPERATURE,
                   help="sampling temperature (>= 0; lower is more conservative, 0 = greedy)")
    p.add_argument("--top-k", type=int, default=TOP_K, help="sample among the k most likely tokens only (0 = off)")
    p.add_argument("--top-p", type=float, default=TOP_P,
                   help="sample among the most likely tokens holding this much probability (0 < p <= 1; 1 = off)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--seed", type=int, default=None, help="random seed (>= 0) for repeatable samples (default: a different sample each time)%(default).0s")
    p.add_argument("--num-samples", type=int, default=1, help="how many samples to print (>= 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole context every token (slower)")
    return p


def check_args(args: Any) -> None:
    """UsageError for any bad option; touches no file."""
    check_range("--temperature", args.temperature, 0)
    check_range("--top-k", args.top_k, 0)
    check_range("--top-p", args.top_p, 0, 1, lo_open=True)
    check_range("--max-new-tokens", args.max_new_tokens, 0)
    check_range("--num-samples", args.num_samples, 1)
    if args.seed is not None:
        check_range("--seed", args.seed, 0)
    check_prompt_text(args.prompt)
    try:
        backend.device(args.device)
    except ValueError as e:
        raise UsageError(f"--device: {e}") from None
    except backend.CudaUnavailableError as e:
        raise UsageError(str(e)) from None


def check_prompt_text(prompt: str) -> None:
    """UsageError when the prompt is not UTF-8 (Linux hands such argv bytes over as surrogate escapes)."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as e:
        c = ord(prompt[e.start])
        what = f"byte 0x{c - 0xDC00:02x}" if 0xDC80 <= c <= 0xDCFF else f"character {prompt[e.start]!r}"
        raise UsageError(f"--prompt is not valid UTF-8 text ({what} at position {e.start}); "
                         f"pass the prompt as UTF-8") from None


def load_run(run: str, device: str) -> tuple:
    """(model, tokenizer) of a run folder, or UsageError with one line that names the run."""
    from tinygpt.checkpoint import load
    try:
        return load(run, device=device)
    except (ValueError, OSError, backend.CudaUnavailableError) as e:
        msg = " ".join(str(e).splitlines()) or type(e).__name__
        if str(run) not in msg and str(Path(run)) not in msg:
            msg = f"--run {run}: {msg}"
        raise UsageError(msg) from None


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    try:
        return tokenizer.encode(prompt) if prompt else []
    except ValueError as e:  # e.g. a character the run's char tokenizer never saw
        raise UsageError(f"--prompt: {' '.join(str(e).splitlines())}") from None


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            args = build_parser().parse_args(argv)
            check_args(args)
            model, tokenizer = load_run(args.run, args.device)
            encode_prompt(tokenizer, args.prompt)
        except UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        try:
            for i in range(args.num_samples):
                if args.num_samples > 1:
                    print(f"--- sample {i + 1}")
                sys.stdout.write(args.prompt)
                generate_text(model, tokenizer, args.prompt, args.max_new_tokens,
                              seed=None if args.seed is None else args.seed + i, stream=True,
                              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              greedy=args.greedy, use_cache=not args.no_cache)
                print()
            sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        except BrokenPipeError:  # the reader went away (| head): stop quietly, like a SIGPIPE'd program
            silence_stdout()
            return 141
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
