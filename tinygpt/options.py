"""The options of python -m tinygpt.train: the parser, every option's range check, and which options a resumed run
may change.

`check_args` runs before any file is read or written, on the command line's options and again on those a resumed
run saved (tinygpt/run_folder.py), so a bad value is one line naming the option (UsageError, exit code 2).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tinygpt.cli import Parser, UsageError, check_range
from tinygpt.config import PRESETS

DESCRIPTION = "Train a TinyGPT: python -m tinygpt.train [--device cpu|cuda] [--data PATH] [--preset tutorial] ..."

# options a resumed run may change (each change is printed) ...
TRAINING_OPTIONS = ("batch_size", "grad_accum", "block_size", "lr", "min_lr", "lr_schedule", "warmup_steps", "weight_decay",
                    "beta1", "beta2", "grad_clip", "dropout", "max_steps", "epochs", "eval_interval",
                    "eval_batches", "sample_tokens")
# ... and those it may not: they fix the model, its numbers or its random streams
FIXED_ON_RESUME = ("preset", "tokenizer", "dtype", "seed")
DTYPES = ("float32", "float64", "bfloat16", "float16")
LOW_PRECISION = ("bfloat16", "float16")  # mixed precision: float32 master weights, forward under autocast


class TrainError(UsageError):
    """A bad option or state, reported as one line with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m tinygpt.train", description=DESCRIPTION)
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
    p.add_argument("--dtype", default="float32", choices=list(DTYPES),
                   help="float32 or float64: the parameters' and the computation's dtype. bfloat16 or float16: mixed "
                   "precision (float32 parameters and AdamW state; the forward runs under minigrad.autocast, matmuls "
                   "and attention in the low dtype, losses and normalizations in float32); float16 adds dynamic loss "
                   "scaling, whose overflowed steps are skipped and counted (bfloat16 on the CPU needs "
                   "pip install -e \".[bfloat16]\")")
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
        check_range(flag(name), getattr(args, name), lo, integer=True)
    check_range("--seed", args.seed, 0, 2 ** 63 - 1, integer=True)
    for name in ("block_size", "max_steps"):
        if getattr(args, name) is not None:
            check_range(flag(name), getattr(args, name), 1, integer=True)
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
    for name, allowed in (("lr_schedule", ("constant", "cosine")), ("dtype", DTYPES),
                          ("tokenizer", ("bpe", "char", "byte", None))):
        if getattr(args, name) not in allowed:
            raise UsageError(f"{flag(name)} must be one of {', '.join(a for a in allowed if a)}, "
                             f"got {getattr(args, name)!r}")
    for name in ("out", "cache_dir"):
        value = getattr(args, name)
        if value is not None and Path(value).exists() and not Path(value).is_dir():
            raise UsageError(f"{flag(name)} {value} is a file, not a folder")


def check_dtype_available(args: Any) -> None:
    """--dtype bfloat16 needs ml_dtypes (numpy has no bfloat16): one line naming the option and the extra."""
    if args.dtype == "bfloat16":
        try:
            import ml_dtypes  # noqa: F401
        except ImportError:
            raise UsageError('--dtype bfloat16 needs the ml-dtypes package (numpy has no bfloat16): '
                             'pip install -e ".[bfloat16]"') from None


def master_dtype(dtype: str) -> str:
    """The parameters' dtype for --dtype: float32 under mixed precision, else the dtype itself."""
    return "float32" if dtype in LOW_PRECISION else dtype


def flag(name: str) -> str:
    """The command-line spelling of an option: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


def defaults() -> argparse.Namespace:
    """Every option at its default (what a resumed run's saved options are laid over)."""
    return build_parser().parse_args([])
