"""Train a TinyGPT: python -m tinygpt.train [--device cpu|cuda] [--data PATH] [--preset tutorial] ...

With no arguments it trains the tutorial model for one epoch on the built-in corpus.
"""
from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import minigrad as mg
from minigrad import backend
from tinygpt import checkpoint
from tinygpt.config import PRESETS, GPTConfig, preset
from tinygpt.data import DataError, get_batch, prepare
from tinygpt.generate import generate_text
from tinygpt.model import TinyGPT
from tinygpt.text_tokenizers import load_tokenizer


class TrainError(Exception):
    """A bad option or state, reported as one line with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tinygpt.train", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu (numpy) or cuda (cupy)")
    p.add_argument("--data", default=None, help="a .txt file or a folder of .txt files "
                   "(default: data/tiny_corpus.txt if present, else the built-in King James Bible)")
    p.add_argument("--preset", default="tutorial", help=f"model preset: {', '.join(PRESETS)}")
    p.add_argument("--tokenizer", default=None, choices=["bpe", "char", "byte"],
                   help="bpe (default; char for the shakespeare-char preset)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--block-size", type=int, default=None, help="training window (default: the model's context)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--min-lr", type=float, default=None, help="cosine floor (default lr/10)")
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"])
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW decay of 2-D weights")
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--grad-clip", type=float, default=1.0, help="max global grad norm (0: off)")
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--epochs", type=float, default=1.0, help="used when --max-steps is not given; "
                   "one epoch = train tokens / (batch * block)")
    p.add_argument("--eval-interval", type=int, default=100)
    p.add_argument("--eval-batches", type=int, default=20)
    p.add_argument("--sample-tokens", type=int, default=40, help="tokens of the sample printed at each eval")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--out", default=None, help="run folder (default runs/<preset>)")
    p.add_argument("--resume", default=None, help="continue the run in this folder")
    p.add_argument("--cache-dir", default="data/cache", help="where tokenizers and token ids are cached")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


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
    args = build_parser().parse_args(argv)
    try:
        return train(args)
    except (TrainError, DataError, FileNotFoundError, backend.CudaUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def setup(args: Any) -> tuple:
    """Resolve options, data, model and optimizer (from --resume when given)."""
    try:
        dev = backend.device(args.device)
    except ValueError as e:
        raise TrainError(str(e)) from None
    saved = None
    if args.resume:
        run_dir = args.resume
        saved = checkpoint.read_config(run_dir)
        cli = {k: v for k, v in vars(args).items() if k in ("max_steps", "device", "no_progress")}
        vars(args).update(saved["args"])
        vars(args).update({k: v for k, v in cli.items() if v is not None})
        args.out = args.resume = run_dir
    if args.preset not in PRESETS:
        raise TrainError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[args.preset]
    args.tokenizer = args.tokenizer or ("char" if args.preset == "shakespeare-char" else "bpe")
    if args.block_size is None:
        args.block_size = base.block_size
    if args.block_size > base.block_size:
        raise TrainError(f"--block-size {args.block_size} is above the model's context of {base.block_size} "
                         f"(preset {args.preset})")
    for name in ("batch_size", "block_size", "eval_interval", "eval_batches"):
        if getattr(args, name) < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.lr <= 0:
        raise TrainError(f"--lr must be > 0, got {args.lr}")
    tokenizer = load_tokenizer(Path(args.resume) / "tokenizer.json") if saved else None
    data = prepare(args.data, args.tokenizer, base.vocab_size, args.block_size, args.cache_dir, tokenizer)
    if saved:
        cfg = GPTConfig.from_dict(saved["model"])
    else:
        overrides: dict = {"vocab_size": data.tokenizer.vocab_size}
        if args.dropout is not None:
            overrides["dropout"] = args.dropout
        cfg = preset(args.preset, **overrides)
    if args.max_steps is None:
        args.max_steps = max(1, int(args.epochs * len(data.train) / (args.batch_size * args.block_size)))
    args.out = args.out or f"runs/{args.preset}"
    mg.set_default_dtype(args.dtype)
    mg.manual_seed(args.seed)
    model = TinyGPT(cfg).to(dev)
    optimizer = mg.optim.AdamW(model.param_groups(args.weight_decay), lr=args.lr, betas=(args.beta1, args.beta2))
    state = {"step": 0, "tokens_seen": 0, "batch_rng": np.random.default_rng(args.seed).bit_generator.state}
    if saved:
        model.load_state_dict(mg.load(Path(args.resume) / "model.safetensors"))
        optimizer.load_state_dict(checkpoint.load_optimizer_state(args.resume, dev))
        state = saved["state"]
        if dev.type == "cpu" and state.get("device_rng"):
            dev.rng.bit_generator.state = state["device_rng"]
    return dev, data, cfg, model, optimizer, state


def train(args: Any) -> int:
    dev, data, cfg, model, optimizer, state = setup(args)
    run = Path(args.out)
    run.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    print(f"corpus: {data.name}, {data.n_chars / 1e6:.2f} M chars -> {len(data.train):,} train / "
          f"{len(data.val):,} val tokens ({args.tokenizer}, vocab {data.tokenizer.vocab_size})")
    print(f"model: {args.preset}, {n_params / 1e6:.2f} M parameters, context {cfg.block_size}, on {dev}, "
          f"{args.dtype}; training {args.max_steps} steps of {args.batch_size}x{args.block_size} tokens -> {run}")
    batch_rng = np.random.default_rng()
    batch_rng.bit_generator.state = state["batch_rng"]
    _truncate_metrics(run / "metrics.jsonl", state["step"])
    metrics = open(run / "metrics.jsonl", "a", encoding="utf-8")
    last_good = state["step"] if (run / "model.safetensors").exists() else None

    def save(step: int) -> None:
        state.update(step=step, batch_rng=batch_rng.bit_generator.state,
                     device_rng=dev.rng.bit_generator.state if dev.type == "cpu" else None)
        checkpoint.save_checkpoint(run, model, optimizer, data.tokenizer, cfg, {"args": vars(args), "state": state})

    bar = _progress(args, state["step"])
    step, t_start, tokens_at_start = state["step"], time.perf_counter(), state["tokens_seen"]
    tok_per_step = args.batch_size * args.block_size
    try:
        while step < args.max_steps:
            lr = lr_at(step, args)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = get_batch(data.train, args.batch_size, args.block_size, batch_rng)
            _, loss = model(to_device(x, model), to_device(y, model))
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                where = f"{run} (step {last_good})" if last_good is not None else "none was written yet"
                print(f"\nerror: loss is {loss_value} at step {step}; stopping. Last good checkpoint: {where}",
                      file=sys.stderr)
                return 1
            optimizer.zero_grad()
            loss.backward()
            if args.grad_clip > 0:
                mg.optim.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            step += 1
            state["tokens_seen"] += tok_per_step
            tps = (state["tokens_seen"] - tokens_at_start) / (time.perf_counter() - t_start)
            metrics.write(json.dumps({"step": step, "loss": loss_value, "lr": lr}) + "\n")
            metrics.flush()  # a watcher (or a crash) sees every step
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}")
            if step % args.eval_interval == 0 or step == args.max_steps:
                losses = estimate_loss(model, data, args, step)
                sample = generate_text(model, data.tokenizer, "", args.sample_tokens, seed=args.seed + step)
                bar.write(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}, "
                          f"{tps:,.0f} tokens/s | sample: {sample[:200]!r}")
                metrics.write(json.dumps({"step": step, "train_loss": losses["train"], "val_loss": losses["val"],
                                          "tokens_per_s": tps, "sample": sample}) + "\n")
                metrics.flush()
                save(step)
                last_good = step
    except KeyboardInterrupt:
        bar.close()
        save(step)
        print(f"\ninterrupted: checkpoint of step {step} saved to {run}; continue with --resume {run}")
        return 130
    finally:
        metrics.close()
    bar.close()
    wall = time.perf_counter() - t_start
    final = _last_eval(run)
    _plot(run)
    print(f"done: {step} steps, {state['tokens_seen']:,} tokens seen, final train loss {final.get('train_loss', float('nan')):.4f}, "
          f"val loss {final.get('val_loss', float('nan')):.4f}, "
          f"{(state['tokens_seen'] - tokens_at_start) / max(wall, 1e-9):,.0f} tokens/s, wall {wall:.1f} s")
    return 0


def _progress(args: Any, start: int) -> Any:
    from tqdm import tqdm
    return tqdm(total=args.max_steps, initial=start, disable=args.no_progress, unit="step", dynamic_ncols=True)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records past `step` (written after the checkpoint a resumed run starts from)."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        keep = [line for line in f if json.loads(line)["step"] <= step]
    from tinygpt.text_tokenizers import atomic_write_text
    atomic_write_text(path, "".join(keep))


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
    tmp = run / ".metrics.png.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(run / "metrics.png")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
