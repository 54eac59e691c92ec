"""Train a TinyGPT: python -m tinygpt.train [--device cpu|cuda] [--data PATH] [--preset tutorial] ...

With no arguments it trains the tutorial model for one epoch on the built-in corpus, in a new run
folder (runs/tutorial, or runs/tutorial-2, ... when that one is taken).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import minigrad as mg
from minigrad import backend, distributed
from tinygpt import checkpoint
from tinygpt.checkpoint import RunError
from tinygpt.cli import Parser, UsageError, check_range, explicit_options, silence_stdout
from tinygpt.config import PRESETS, GPTConfig, preset
from tinygpt.data import DataError, corpus_digest, get_batch, load_corpus, prepare
from tinygpt.generate import generate_text
from tinygpt.model import TinyGPT
from tinygpt.text_tokenizers import atomic_write_text

# options a resumed run may change (each change is printed) ...
TRAINING_OPTIONS = ("batch_size", "grad_accum", "block_size", "lr", "min_lr", "lr_schedule", "warmup_steps", "weight_decay",
                    "beta1", "beta2", "grad_clip", "dropout", "max_steps", "epochs", "eval_interval",
                    "eval_batches", "sample_tokens")
# ... and those it may not: they fix the model, its numbers or its random streams
FIXED_ON_RESUME = ("preset", "tokenizer", "dtype", "seed")


class TrainError(UsageError):
    """A bad option or state, reported as one line with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m tinygpt.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (numpy), cuda or cuda:N (cupy)")
    p.add_argument("--data", default=None, help="a .txt file or a folder of .txt files "
                   "(default: data/tiny_corpus.txt if present, else the built-in King James Bible)")
    p.add_argument("--preset", default="tutorial", help=f"model preset: {', '.join(PRESETS)}")
    p.add_argument("--tokenizer", default=None, choices=["bpe", "char", "byte"],
                   help="bpe (default; char for the shakespeare-char preset)")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per micro-batch")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (the step's batch "
                   "is batch-size x grad-accum sequences, as one batch that large)")
    p.add_argument("--block-size", type=int, default=None, help="training window (default: the model's context)")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate")
    p.add_argument("--min-lr", type=float, default=None, help="cosine floor (default lr/10)")
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"],
                   help="constant, or warmup then cosine decay to --min-lr")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW decay of 2-D weights")
    p.add_argument("--beta1", type=float, default=0.9, help="AdamW beta1 (0 <= b < 1)")
    p.add_argument("--beta2", type=float, default=0.999, help="AdamW beta2 (0 <= b < 1)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="max global grad norm (0: off)")
    p.add_argument("--dropout", type=float, default=None, help="dropout rate, 0 <= p < 1 (default: the preset's)")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps in all (default: from --epochs)")
    p.add_argument("--epochs", type=float, default=1.0, help="used when --max-steps is not given; "
                   "one epoch = train tokens / (batch * block)")
    p.add_argument("--eval-interval", type=int, default=100, help="steps between evals, samples and checkpoints")
    p.add_argument("--eval-batches", type=int, default=20, help="batches per split in each eval")
    p.add_argument("--sample-tokens", type=int, default=40, help="tokens of the sample printed at each eval")
    p.add_argument("--seed", type=int, default=1337, help="seeds the init, batches and dropout")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="parameter and compute dtype")
    p.add_argument("--out", default=None, help="run folder (default: runs/<preset>, or runs/<preset>-2, ... "
                   "if that holds a run)")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--resume", default=None, help="continue the run in this folder (in place, or into --out)")
    p.add_argument("--init-from", default=None, metavar="DIR", help="start from the weights and tokenizer of a local "
                   "Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer.json), e.g. one that "
                   "python -m tinygpt.export wrote")
    p.add_argument("--cache-dir", default="data/cache", help="where tokenizers and token ids are cached")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dist", default="auto", choices=["auto", "none", "mpi", "nccl"],
                   help="data parallel: auto = mpi (CPU) or nccl (GPU) when launched by mpiexec -n N, else none")
    return p


def check_args(args: Any) -> None:
    """Every option's range, before any file is read or written (UsageError names the option)."""
    if args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    for name, lo in (("batch_size", 1), ("grad_accum", 1), ("warmup_steps", 0), ("eval_interval", 1), ("eval_batches", 1),
                     ("sample_tokens", 0), ("seed", 0)):
        check_range(_opt(name), getattr(args, name), lo, integer=True)
    check_range("--seed", args.seed, 0, 2 ** 63 - 1, integer=True)
    for name in ("block_size", "max_steps"):
        if getattr(args, name) is not None:
            check_range(_opt(name), getattr(args, name), 1, integer=True)
    context = PRESETS[args.preset].block_size
    if args.block_size is not None and args.block_size > context and not getattr(args, "init_from", None):
        raise UsageError(f"--block-size {args.block_size} is above the model's context of {context} "
                         f"(preset {args.preset})")
    check_range("--lr", args.lr, 0, lo_open=True)
    if args.min_lr is not None:
        check_range("--min-lr", args.min_lr, 0)
    check_range("--epochs", args.epochs, 0, lo_open=True)
    check_range("--weight-decay", args.weight_decay, 0)
    check_range("--grad-clip", args.grad_clip, 0)
    check_range("--beta1", args.beta1, 0, 1, hi_open=True)
    check_range("--beta2", args.beta2, 0, 1, hi_open=True)
    if args.dropout is not None:
        check_range("--dropout", args.dropout, 0, 1, hi_open=True)
    for name, allowed in (("lr_schedule", ("constant", "cosine")), ("dtype", ("float32", "float64")),
                          ("tokenizer", ("bpe", "char", "byte", None))):
        if getattr(args, name) not in allowed:
            raise UsageError(f"{_opt(name)} must be one of {', '.join(a for a in allowed if a)}, "
                             f"got {getattr(args, name)!r}")
    for name in ("out", "cache_dir"):
        value = getattr(args, name)
        if value is not None and Path(value).exists() and not Path(value).is_dir():
            raise UsageError(f"{_opt(name)} {value} is a file, not a folder")


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


def lr_at(step: int, args: Any) -> float:
    """Constant, or linear warmup then cosine decay to min_lr (nanoGPT's get_lr)."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / (args.warmup_steps + 1)
    if args.lr_schedule == "constant":
        return args.lr
    min_lr = args.lr / 10 if args.min_lr is None else args.min_lr
    if step >= args.max_steps:
        return min_lr
    ratio = (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (args.lr - min_lr)


@mg.no_grad()
def estimate_loss(model: TinyGPT, data: Any, args: Any, step: int) -> dict:
    """Mean loss over eval_batches random windows of each split (its own RNG: training is undisturbed)."""
    model.eval()
    out = {}
    for i, (split, ids) in enumerate((("train", data.train), ("val", data.val))):
        rng = np.random.default_rng([args.seed, step, i])
        losses = []
        for _ in range(args.eval_batches):
            x, y = get_batch(ids, args.batch_size, args.block_size, rng)
            _, loss = model(to_device(x, model), to_device(y, model))
            losses.append(loss.item())
        out[split] = float(np.mean(losses))
    model.train()
    return out


def to_device(a: np.ndarray, model: TinyGPT) -> Any:
    return backend.from_numpy(model.tok_embed.weight.device, a)


def main(argv: list[str] | None = None) -> int:
    mg.tune_malloc()  # keep freed heap memory for the next step (glibc only; see minigrad/ops/buffers.py)
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        given = explicit_options(parser, argv)
        return train(args, given)
    except (UsageError, DataError, RunError, backend.CudaUnavailableError, distributed.DistributedError) as e:
        return _fail_rank(args, f"error: {e}", 2)
    except KeyboardInterrupt:
        print("\ninterrupted before training started: nothing was saved", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout's reader went away (| head): stop quietly; the last checkpoint stands
        silence_stdout()
        return 141
    except Exception as e:  # a bug or a failing device: with several ranks, end them all (no hang)
        comm = getattr(args, "comm", None)
        if comm is None or comm.size == 1:
            raise
        import traceback
        traceback.print_exc()
        return _fail_rank(args, f"error: {type(e).__name__}: {e}", 1)


def _fail_rank(args: Any, line: str, code: int) -> int:
    """Print a fatal error once (rank 0, or the rank it happened on) and, with several ranks, end them all."""
    comm = getattr(args, "comm", None)
    if comm is None or comm.size == 1:
        if distributed.env_rank() == 0:  # an option error: every rank has it; rank 0 says it
            print(line, file=sys.stderr)
        return code
    print(line if comm.rank == 0 else f"rank {comm.rank}: {line}", file=sys.stderr, flush=True)
    comm.abort(code)  # the other ranks may wait in a collective: end the whole job now
    return code


def say(args: Any, *what: Any, **kw: Any) -> None:
    """print() on rank 0 only (every rank runs the same code; one of them talks)."""
    comm = getattr(args, "comm", None)
    if comm is None or comm.rank == 0:
        print(*what, **kw)


# ------------------------------------------------------------------------------------ set-up
def _defaults() -> argparse.Namespace:
    return build_parser().parse_args([])


def apply_resume(args: Any, given: set[str]) -> dict:
    """Fill args from the run in --resume: its training options, then the command line's overrides.

    Only options are taken from the run folder, never paths: the corpus, cache and output folder
    are the ones given on this command line (or the defaults).
    """
    src = Path(args.resume)
    saved = checkpoint.read_config(src)
    saved_args, state = saved.get("args", {}), saved.get("state")
    cfg_path = src / "config.json"
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) or state["step"] < 0:
        raise RunError(f"{cfg_path} has no valid training state (\"state\" with a step)")
    restored = _defaults()
    for name in (*FIXED_ON_RESUME, *TRAINING_OPTIONS):
        if name in saved_args:
            setattr(restored, name, saved_args[name])
    try:
        check_args(restored)
    except UsageError as e:
        raise RunError(f"{cfg_path}: saved option {e}") from None
    for name in FIXED_ON_RESUME:
        if name in given and getattr(args, name) != getattr(restored, name):
            raise UsageError(f"{_opt(name)} {getattr(args, name)} differs from the run's "
                             f"{getattr(restored, name)}: a resumed run keeps its preset, tokenizer, dtype and "
                             f"seed (start a new run to change them)")
        setattr(args, name, getattr(restored, name))
    if "epochs" in given and "max_steps" not in given:
        restored.max_steps = None  # recomputed from the new --epochs
    for name in TRAINING_OPTIONS:
        new, old = getattr(args, name), getattr(restored, name)
        if name in given and new != old:
            args.overrides.append(f"resume: {_opt(name)} {new} (the run had {old})")
        else:
            setattr(args, name, old)
    return saved


def choose_out(args: Any, given: set[str]) -> Path:
    """The run folder: --out, or the first of runs/<preset>, runs/<preset>-2, ... that holds no run.

    A folder that holds a run is refused unless --overwrite says to replace it.
    """
    if args.out is not None:
        out = Path(args.out)
    elif args.overwrite:
        out = Path("runs") / args.preset
    else:
        base, n = Path("runs") / args.preset, 1
        out = base
        while out.exists() and (checkpoint.holds_run(out) or not out.is_dir()):
            n += 1
            out = base.with_name(f"{base.name}-{n}")
        return out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    if checkpoint.holds_run(out) and not args.overwrite:
        raise UsageError(f"--out {out} already holds a run; continue it with --resume {out}, "
                         f"replace it with --overwrite, or choose another --out")
    return out


def setup(args: Any, given: set[str]) -> tuple:
    """Resolve options, data, model and optimizer (from --resume when given), before writing anything."""
    args.overrides = []
    saved = apply_resume(args, given) if args.resume else None
    check_args(args)
    pretrained = _load_init_from(args) if args.init_from else None
    if args.resume and (args.out is None or Path(args.out).resolve() == Path(args.resume).resolve()):
        out = Path(args.resume)
        if args.overwrite:
            raise UsageError("--overwrite with --resume would delete the run being resumed")
    else:
        out = choose_out(args, given)
    try:
        comm, dev = distributed.init(args.dist, args.device)
    except ValueError as e:
        raise UsageError(f"--device: {e}") from None
    args.comm = comm
    threads = _share_cores(comm, dev)
    saved_world = saved["state"].get("world_size", 1) if saved else comm.size
    if saved_world != comm.size:
        raise UsageError(f"--resume {args.resume}: the run was trained with {saved_world} rank(s); resume it with "
                         f"the same number (mpiexec -n {saved_world})")
    if comm.size > 1:
        out = Path(comm.bcast_host(str(out)))  # rank 0's choice: a rank looking later would see its folder
        if args.batch_size % comm.size:
            raise UsageError(f"--batch-size {args.batch_size} is not divisible by the {comm.size} ranks (each rank "
                             f"takes an equal share of every micro-batch)")
    args.out = str(out)
    say(args, f"run folder: {out}" + (" (continuing the run)" if out == Path(args.resume or "") else
                                      " (replacing the run there)" if args.overwrite and checkpoint.holds_run(out)
                                      else " (new)")
        + (f", {comm.size} ranks over {comm.backend}" if comm.size > 1 else "")
        + (f", {threads} thread(s) each" if threads else ""), flush=True)
    for line in args.overrides:
        say(args, line)
    del args.overrides
    base = PRESETS[args.preset] if pretrained is None else pretrained[0].cfg
    args.tokenizer = args.tokenizer or ("char" if args.preset == "shakespeare-char" else "bpe")
    if args.block_size is None:
        args.block_size = base.block_size
    corpus = load_corpus(args.data)
    mg.set_default_dtype(args.dtype)
    mg.manual_seed(rank_seed(args.seed, comm.rank))  # rank 0: the seed itself; the others' dropout differs
    if saved:  # every file of the run is checked before any tokenizing or writing
        src = Path(args.resume)
        expected = saved["state"].get("corpus_sha256")
        if expected is not None and corpus_digest(corpus[1]) != expected:
            trained_on = (saved.get("args") or {}).get("data") or "the built-in default corpus"
            raise UsageError(f"--resume {src}: the corpus {corpus[0]!r} is not the text the run was trained on "
                             f"({trained_on!r} when it started); pass that text with --data")
        paths = checkpoint.resolve_files(src, saved)
        tokenizer = checkpoint.load_run_tokenizer(paths["tokenizer.json"])
        cfg = checkpoint.model_config(src, saved)
        if args.dropout is not None:
            cfg.dropout = args.dropout
        if cfg.vocab_size < tokenizer.vocab_size:
            raise RunError(f"{paths['tokenizer.json']} has more tokens than the model's vocab_size {cfg.vocab_size}")
        model, optimizer = _model_and_optimizer(cfg, dev, args)
        checkpoint.load_model_state(model, paths["model.safetensors"])
        checkpoint.load_optimizer_state(optimizer, paths, dev)
        for group in optimizer.param_groups:  # options given now win over the saved ones
            group["betas"] = (args.beta1, args.beta2)
        optimizer.param_groups[0]["weight_decay"] = args.weight_decay  # group 0 decays, group 1 never
        state = _restored_state(saved, src, dev, comm.rank)
        data = _prepare_rank0_first(args, base, tokenizer, corpus)
    elif pretrained is not None:  # a fresh run (step 0, new optimizer) from a Hugging Face folder's weights
        start, tokenizer = pretrained
        data = _prepare_rank0_first(args, base, tokenizer, corpus)
        cfg = dataclasses.replace(start.cfg, **({"dropout": args.dropout} if args.dropout is not None else {}))
        model, optimizer = _model_and_optimizer(cfg, dev, args)
        model.load_state_dict(start.state_dict())
        state = {"step": 0, "tokens_seen": 0, "batch_rng": np.random.default_rng(args.seed).bit_generator.state}
    else:
        data = _prepare_rank0_first(args, base, None, corpus)
        overrides: dict = {"vocab_size": data.tokenizer.vocab_size}
        if args.dropout is not None:
            overrides["dropout"] = args.dropout
        cfg = preset(args.preset, **overrides)
        model, optimizer = _model_and_optimizer(cfg, dev, args)
        state = {"step": 0, "tokens_seen": 0, "batch_rng": np.random.default_rng(args.seed).bit_generator.state}
    if args.max_steps is None:
        args.max_steps = max(1, int(args.epochs * len(data.train)
                                    / (args.batch_size * args.grad_accum * args.block_size)))
    state["corpus_sha256"] = data.digest
    state["world_size"] = comm.size
    comm.broadcast_(optimizer._flat.data)  # every rank starts from rank 0's parameters
    return dev, data, cfg, model, optimizer, state


def _share_cores(comm: Any, dev: Any) -> "int | None":
    """Ranks on one host split its cores: minigrad's and BLAS's threads per rank = cores / ranks here."""
    if comm.size == 1 or dev.type != "cpu":
        return None
    from minigrad.ops import parallel
    per_rank = max(1, parallel.num_threads() // comm.local_size)
    parallel.set_num_threads(per_rank)
    try:
        import threadpoolctl
        _share_cores.limits = threadpoolctl.threadpool_limits(per_rank)  # kept for the whole run
    except ImportError:
        pass
    return per_rank


def _load_init_from(args: Any) -> tuple:
    """(model, tokenizer) of --init-from's Hugging Face folder, checked against the other options."""
    from tinygpt.export import ExportError, load_pretrained, load_pretrained_tokenizer
    if args.resume:
        raise UsageError("--init-from starts a new run; it cannot be used with --resume")
    try:
        model, tokenizer = load_pretrained(args.init_from), load_pretrained_tokenizer(args.init_from)
    except (ExportError, OSError) as e:
        raise UsageError(f"--init-from {args.init_from}: {e}") from None
    if tokenizer.vocab_size > model.cfg.vocab_size:
        raise UsageError(f"--init-from {args.init_from}: its tokenizer has {tokenizer.vocab_size} tokens, more than "
                         f"the model's vocab_size {model.cfg.vocab_size}")
    if args.block_size is not None and args.block_size > model.cfg.block_size:
        raise UsageError(f"--block-size {args.block_size} is above the model's context of {model.cfg.block_size} "
                         f"(--init-from {args.init_from})")
    args.tokenizer = getattr(tokenizer, "kind", "bpe")
    return model, tokenizer


def _prepare_rank0_first(args: Any, base: GPTConfig, tokenizer: Any, corpus: tuple) -> Any:
    """prepare() on rank 0 first (it may train the tokenizer and fill the cache), then on the others."""
    comm = args.comm
    if comm.rank != 0:
        comm.barrier()
    data = prepare(args.data, args.tokenizer, base.vocab_size, args.block_size, args.cache_dir, tokenizer, corpus)
    if comm.rank == 0 and comm.size > 1:
        comm.barrier()
    return data


def _model_and_optimizer(cfg: GPTConfig, dev: Any, args: Any) -> tuple:
    model = TinyGPT(cfg).to(dev)
    optimizer = mg.optim.AdamW(model.param_groups(args.weight_decay), lr=args.lr, betas=(args.beta1, args.beta2),
                               flat=True)  # parameters and gradients in two flat arrays: one pass per update
    return model, optimizer


def rank_seed(seed: int, rank: int) -> int:
    """The seed of a rank's own random stream (dropout): the run's seed on rank 0, derived from it elsewhere."""
    return seed if rank == 0 else int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> 1)


def _restored_state(saved: dict, src: Path, dev: Any, rank: int = 0) -> dict:
    state = dict(saved["state"])
    try:
        np.random.default_rng().bit_generator.state = state["batch_rng"]  # checked here, used by the loop
        device_rng = (state.get("device_rng_ranks") or [state.get("device_rng")])[rank]
        if dev.type == "cpu" and device_rng:
            dev.rng.bit_generator.state = device_rng
        state["tokens_seen"] = int(state.get("tokens_seen", 0))
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{src / 'config.json'}: invalid random-generator state ({type(e).__name__}: {e})") from None
    return state


# ------------------------------------------------------------------------------------ the loop
class StopRequest:
    """SIGINT/SIGTERM set a flag that the loop reads between steps; a second signal quits at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # asked twice: stop now, without saving
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            # run as a program that is stopping anyway: a late Ctrl-C must not turn the exit into a traceback
            signal.signal(sig, signal.SIG_IGN if self.signum is not None and _AS_PROGRAM else old)


def accumulate_gradients(model: TinyGPT, optimizer: Any, ids: np.ndarray, args: Any, rng: np.random.Generator) -> float:
    """Forward and backward one step's batch, in grad_accum micro-batches; returns its mean loss.

    The windows are drawn as one batch of batch_size * grad_accum and split, so with grad_accum N the
    step equals one of batch_size * N (same windows; the loss and gradients are means over all of them).
    With several ranks every rank draws the same windows and takes its own equal share of each
    micro-batch; the caller averages the ranks' gradients and losses.
    """
    n, b = args.grad_accum, args.batch_size
    x, y = get_batch(ids, b * n, args.block_size, rng)
    comm = getattr(args, "comm", None)
    share, rank = (b // comm.size, comm.rank) if comm is not None else (b, 0)  # this rank's part of a micro-batch
    optimizer.zero_grad()
    total = 0.0
    for i in range(n):
        rows = slice(i * b + rank * share, i * b + (rank + 1) * share)
        _, loss = model(to_device(x[rows], model), to_device(y[rows], model))
        value = loss.item()
        if not math.isfinite(value):
            return value
        (loss if n == 1 else loss * (1.0 / n)).backward()
        total += value
    return total / n


def params_finite(model: TinyGPT) -> bool:
    return all(bool(p.device.xp.isfinite(p.data).all()) for p in model.parameters())


def train(args: Any, given: "set[str] | None" = None) -> int:
    given = set(vars(args)) if given is None else given
    dev, data, cfg, model, optimizer, state = setup(args, given)
    comm = args.comm
    lead = comm.rank == 0  # rank 0 writes the run folder and talks; every rank trains
    run = Path(args.out)
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    say(args, f"corpus: {data.name}, {data.n_chars / 1e6:.2f} M chars -> {len(data.train):,} train / "
        f"{len(data.val):,} val tokens ({args.tokenizer}, vocab {data.tokenizer.vocab_size})")
    say(args, f"model: {args.preset}, {n_params / 1e6:.2f} M parameters, context {cfg.block_size}, on {dev}, "
        f"{args.dtype}; training {args.max_steps} steps of {args.batch_size}x{args.block_size} tokens"
        f"{f' x {args.grad_accum} micro-batches' if args.grad_accum > 1 else ''} -> {run}")
    if state["step"] >= args.max_steps:
        if lead and Path(args.resume).resolve() == run.resolve():
            checkpoint.finish_commit(run)  # still sweep what a killed final save left
        say(args, f"nothing to do: the run is at step {state['step']} of --max-steps {args.max_steps}; train "
            f"further with --resume {args.resume} --max-steps N (N > {state['step']})")
        return 0
    resumed_from = Path(args.resume) if args.resume else None
    if lead:
        _open_run_folder(run, args, resumed_from, state["step"])
    comm.barrier()
    last_good = (resumed_from, state["step"]) if resumed_from else None
    batch_rng = np.random.default_rng()
    batch_rng.bit_generator.state = state["batch_rng"]  # the same on every rank: all draw the same windows
    metrics = open(run / "metrics.jsonl", "a", encoding="utf-8") if lead else open(os.devnull, "w")

    def save(step: int) -> None:  # every rank calls it (the RNG states are gathered); rank 0 writes
        rngs = comm.gather_host(dev.rng.bit_generator.state if dev.type == "cpu" else None)
        state.update(step=step, batch_rng=batch_rng.bit_generator.state, device_rng=rngs[0],
                     device_rng_ranks=rngs if comm.size > 1 else None)
        if lead:
            checkpoint.save_checkpoint(run, model, optimizer, data.tokenizer, cfg,
                                       {"args": _saved_args(args), "state": state})

    def fail(message: str) -> int:  # the values checked are all-reduced: every rank fails at the same step
        bar.close()
        where = f"{last_good[0]} (step {last_good[1]})" if last_good else "none was written yet"
        say(args, f"\nerror: {message}; stopping. Last good checkpoint: {where}", file=sys.stderr)
        return 1

    bar = _progress(args, state["step"], disable=not lead)
    step, saved_step = state["step"], state["step"]
    t_start, t_steps, tokens_at_start = time.perf_counter(), 0.0, state["tokens_seen"]
    tok_per_step = args.batch_size * args.grad_accum * args.block_size
    try:
        with StopRequest() as stop:
            while step < args.max_steps:
                t0 = time.perf_counter()
                lr = lr_at(step, args)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss_value = accumulate_gradients(model, optimizer, data.train, args, batch_rng)
                # one small all-reduce: the step's mean loss over ranks and whether any rank was asked to stop
                loss_value, stopping = comm.all_reduce_host([loss_value / comm.size, stop.signum is not None])
                if not math.isfinite(loss_value):
                    return fail(f"loss is {loss_value} at step {step + 1}")
                comm.all_reduce_(optimizer.flat_grad, average=True)  # the mean gradient, before clipping
                if args.grad_clip > 0:
                    norm = float(mg.optim.clip_grad_norm_(model.parameters(), args.grad_clip).item())
                    if not math.isfinite(norm):
                        return fail(f"gradient norm is {norm} at step {step + 1}")
                optimizer.step()
                step += 1
                state["tokens_seen"] += tok_per_step
                t_steps += time.perf_counter() - t0
                tps = (state["tokens_seen"] - tokens_at_start) / t_steps
                metrics.write(json.dumps({"step": step, "loss": loss_value, "lr": lr}) + "\n")
                metrics.flush()  # a watcher (or a crash) sees every step
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}")
                if step % args.eval_interval == 0 or step == args.max_steps:
                    if not params_finite(model):
                        return fail(f"parameters became non-finite at step {step}")
                    if lead:
                        losses = estimate_loss(model, data, args, step)
                        sample = generate_text(model, data.tokenizer, "", args.sample_tokens, seed=args.seed + step)
                        bar.write(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}, "
                                  f"{tps:,.0f} tokens/s | sample: {sample[:200]!r}")
                        metrics.write(json.dumps({"step": step, "train_loss": losses["train"],
                                                  "val_loss": losses["val"], "tokens_per_s": tps,
                                                  "sample": sample}) + "\n")
                        metrics.flush()
                    save(step)
                    saved_step, last_good = step, (run, step)
                if stopping or (comm.size == 1 and stop.signum is not None):  # one rank: stop after this step
                    break
            # with several ranks only the all-reduced flag is known to agree (save() is collective)
            if stopping or (comm.size == 1 and stop.signum is not None):
                bar.close()
                if step != saved_step:
                    if not params_finite(model):
                        return fail(f"parameters became non-finite at step {step}")
                    save(step)
                say(args, f"\ninterrupted: checkpoint of step {step} saved to {run}; continue with --resume {run}")
                return 128 + (stop.signum or signal.SIGINT)
    except KeyboardInterrupt:
        bar.close()
        step_now = checkpoint.committed_step(run)  # a save the second Ctrl-C cut short may have committed
        where = (f"{run} (step {step_now})" if step_now is not None and (last_good is None or last_good[0] == run)
                 else f"{last_good[0]} (step {last_good[1]})" if last_good else "none")
        say(args, f"\ninterrupted twice: stopped without saving; the last checkpoint is {where}", file=sys.stderr)
        return 130
    finally:
        metrics.close()
    bar.close()
    wall = time.perf_counter() - t_start
    if not lead:
        return 0
    final = _last_eval(run)
    try:
        _plot(run)
    except KeyboardInterrupt:
        print(f"\ninterrupted after the last step: the final checkpoint (step {step}) is saved in {run}")
        return 130
    print(f"done: {step} steps, {state['tokens_seen']:,} tokens seen, final train loss "
          f"{final.get('train_loss', float('nan')):.4f}, val loss {final.get('val_loss', float('nan')):.4f}, "
          f"{(state['tokens_seen'] - tokens_at_start) / max(t_steps, 1e-9):,.0f} tokens/s in training steps "
          f"(eval and checkpoints excluded), wall {wall:.1f} s")
    return 0


def _saved_args(args: Any) -> dict:
    """The options as config.json keeps them (not the communicator)."""
    return {k: v for k, v in vars(args).items() if k != "comm"}


def _open_run_folder(run: Path, args: Any, resumed_from: "Path | None", step: int) -> None:
    """Create or clean the run folder, and cut metrics.jsonl back to the checkpoint a resume starts from."""
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {run}: cannot create the run folder ({e.strerror})") from None
    if resumed_from is not None and run.resolve() == resumed_from.resolve():
        checkpoint.finish_commit(run)  # completes a checkpoint a crash interrupted; drops temporaries
    else:
        if args.overwrite:
            checkpoint.remove_run(run)
        checkpoint.finish_commit(run)
    source = resumed_from / "metrics.jsonl" if resumed_from is not None else None
    _copy_metrics(source, run / "metrics.jsonl", step)


def _copy_metrics(source: "Path | None", target: Path, step: int) -> None:
    """target = the records of source up to `step` (a resumed run's log; empty for a new run)."""
    keep = []
    if source is not None and source.exists():
        with open(source, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= step:
                    keep.append(line if line.endswith("\n") else line + "\n")
    atomic_write_text(target, "".join(keep))


def _progress(args: Any, start: int, disable: bool = False) -> Any:
    from tqdm import tqdm
    tqdm.monitor_interval = 0  # no monitor thread: nothing but the main thread to interrupt
    return tqdm(total=args.max_steps, initial=start, disable=args.no_progress or disable, unit="step",
                dynamic_ncols=True)


def _last_eval(run: Path) -> dict:
    last: dict = {}
    with open(run / "metrics.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if "val_loss" in rec:
                last = rec
    return last


def _plot(run: Path) -> None:
    """metrics.png: training loss per step and the eval losses (needs matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed, so no metrics.png (pip install -e \".[plot]\")")
        return
    steps, losses, evals = [], [], []
    with open(run / "metrics.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if "loss" in rec:
                steps.append(rec["step"])
                losses.append(rec["loss"])
            if "val_loss" in rec:
                evals.append((rec["step"], rec["train_loss"], rec["val_loss"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, lw=0.8, alpha=0.6, label="train (batch)")
    if evals:
        e = np.array(evals)
        ax.plot(e[:, 0], e[:, 1], "o-", label="train (eval)")
        ax.plot(e[:, 0], e[:, 2], "o-", label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss")
    ax.legend()
    fig.tight_layout()
    tmp = run / ".metrics.png.tmp"
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    tmp.replace(run / "metrics.png")


_AS_PROGRAM = False  # True under python -m tinygpt.train (not when main() is called from Python)

if __name__ == "__main__":
    _AS_PROGRAM = True
    sys.exit(main())
