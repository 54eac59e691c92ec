"""Train a TinyGPT: python -m tinygpt.train [--device cpu|cuda] [--data PATH] [--preset tutorial] ...

With no arguments it trains the tutorial model for one epoch on the built-in corpus, in a new run
folder (runs/tutorial, or runs/tutorial-2, ... when that one is taken).

The training loop and the command; its parts live in tinygpt/options.py (the parser and option checks),
tinygpt/run_folder.py (choosing, resuming and opening the run folder; metrics) and tinygpt/run_setup.py (data,
model and optimizer, before anything is written).

Mixed precision (--dtype bfloat16 or float16; minigrad/amp.py's docstring has the rules): the model is built in
float32, and its parameters (the master weights), gradients, AdamW state and checkpoints stay float32; each
micro-batch's forward and loss (and the eval losses) run under mg.autocast(dtype), backward outside it. float16
uses dynamic loss scaling (mg.amp.GradScaler): each micro-batch's loss is multiplied by the scale before backward;
after the data-parallel all-reduce the scale is divided out of the float32 gradients (unscale_) before clipping,
and a step whose gradients overflowed (inf/NaN) is skipped: no AdamW update, the scale halves. A skipped step
still counts as a step of the schedule (step number, learning rate, tokens seen), as in torch and nanoGPT; the
skips are counted in the progress bar, the eval lines, metrics.jsonl ("loss_scale" and "skipped" per step,
"skipped_steps" in each eval record) and the final line. A non-finite LOSS still stops the run. The scaler's state
and the skip count are part of the checkpoint, so a resumed float16 run continues bit for bit.
"""
from __future__ import annotations

import contextlib
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
from tinygpt.cli import UsageError, explicit_options, silence_stdout
from tinygpt.data import DataError, get_batch
from tinygpt.generate import generate_text
from tinygpt.model import TinyGPT
from tinygpt.options import LOW_PRECISION, build_parser
from tinygpt.run_folder import args_to_save, last_eval, open_run_folder, plot_metrics
from tinygpt.run_setup import say, setup


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
    """Mean loss over eval_batches random windows of each split (its own RNG: training is undisturbed), with the
    forward as in training (under autocast for bfloat16/float16)."""
    model.eval()
    out = {}
    for i, (split, ids) in enumerate((("train", data.train), ("val", data.val))):
        rng = np.random.default_rng([args.seed, step, i])
        losses = []
        for _ in range(args.eval_batches):
            x, y = get_batch(ids, args.batch_size, args.block_size, rng)
            with precision(args):
                _, loss = model(to_device(x, model), to_device(y, model))
            losses.append(loss.item())
        out[split] = float(np.mean(losses))
    model.train()
    return out


def to_device(a: np.ndarray, model: TinyGPT) -> Any:
    return backend.from_numpy(model.tok_embed.weight.device, a)


def precision(args: Any) -> Any:
    """Where a forward pass runs: under mg.autocast for --dtype bfloat16/float16, as it is for float32/float64."""
    return mg.autocast(args.dtype) if args.dtype in LOW_PRECISION else contextlib.nullcontext()


def overflow_expected(scaler: Any) -> Any:
    """With float16's loss scaler an overflow in backward is a skipped step, not news: numpy stays quiet."""
    if scaler is None or not scaler.is_enabled():
        return contextlib.nullcontext()
    return np.errstate(over="ignore", invalid="ignore")


def grad_scaler(args: Any) -> Any:
    """float16's dynamic loss scaling (torch's defaults: scale 2**16 to start, halved after an overflow, doubled
    after 2000 good steps in a row); a pass-through for every other dtype. Tests replace it."""
    return mg.amp.GradScaler(enabled=args.dtype == "float16")


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


def accumulate_gradients(model: TinyGPT, optimizer: Any, ids: np.ndarray, args: Any, rng: np.random.Generator,
                         scaler: Any = None) -> float:
    """Forward and backward one step's batch, in grad_accum micro-batches; returns its mean loss.

    The windows are drawn as one batch of batch_size * grad_accum and split, so with grad_accum N the
    step equals one of batch_size * N (same windows; the loss and gradients are means over all of them).
    With several ranks every rank draws the same windows and takes its own equal share of each
    micro-batch; the caller averages the ranks' gradients and losses.
    The forward runs under precision(args); with a float16 scaler each micro-batch's loss is scaled before
    its backward (the caller unscales the gradients).
    """
    n, b = args.grad_accum, args.batch_size
    x, y = get_batch(ids, b * n, args.block_size, rng)
    comm = getattr(args, "comm", None)
    share, rank = (b // comm.size, comm.rank) if comm is not None else (b, 0)  # this rank's part of a micro-batch
    optimizer.zero_grad()
    total = 0.0
    for i in range(n):
        rows = slice(i * b + rank * share, i * b + (rank + 1) * share)
        with precision(args):
            _, loss = model(to_device(x[rows], model), to_device(y[rows], model))
        value = loss.item()
        if not math.isfinite(value):
            return value
        part = loss if n == 1 else loss * (1.0 / n)
        with overflow_expected(scaler):
            (part if scaler is None else scaler.scale(part)).backward()
        total += value
    return total / n


def params_finite(model: TinyGPT) -> bool:
    return all(bool(p.device.xp.isfinite(p.data).all()) for p in model.parameters())


def train(args: Any, given: "set[str] | None" = None) -> int:
    given = set(vars(args)) if given is None else given
    dev, data, cfg, model, optimizer, state = setup(args, given)
    scaler = grad_scaler(args)
    skipped_steps = restore_scaler(scaler, state, args)
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
        open_run_folder(run, args, resumed_from, state["step"])
    comm.barrier()
    last_good = (resumed_from, state["step"]) if resumed_from else None
    batch_rng = np.random.default_rng()
    batch_rng.bit_generator.state = state["batch_rng"]  # the same on every rank: all draw the same windows
    metrics = open(run / "metrics.jsonl", "a", encoding="utf-8") if lead else open(os.devnull, "w")

    def save(step: int) -> None:  # every rank calls it (the RNG states are gathered); rank 0 writes
        rngs = comm.gather_host(dev.rng.bit_generator.state if dev.type == "cpu" else None)
        state.update(step=step, batch_rng=batch_rng.bit_generator.state, device_rng=rngs[0],
                     device_rng_ranks=rngs if comm.size > 1 else None)
        if scaler.is_enabled():  # float16: the loss scaler goes on where it was
            state.update(grad_scaler=scaler.state_dict(), skipped_steps=skipped_steps)
        if lead:
            checkpoint.save_checkpoint(run, model, optimizer, data.tokenizer, cfg,
                                       {"args": args_to_save(args), "state": state})

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
                scale = scaler.get_scale()  # this step's loss scale (float16; 1.0 otherwise)
                loss_value = accumulate_gradients(model, optimizer, data.train, args, batch_rng, scaler)
                # one small all-reduce: the step's mean loss over ranks and whether any rank was asked to stop
                loss_value, stopping = comm.all_reduce_host([loss_value / comm.size, stop.signum is not None])
                if not math.isfinite(loss_value):
                    return fail(f"loss is {loss_value} at step {step + 1}")
                comm.all_reduce_(optimizer.flat_grad, average=True)  # the mean gradient, before clipping
                scaler.unscale_(optimizer)  # float16: divide the scale out; note an overflow (same on every rank)
                skipped = scaler.is_enabled() and scaler.found_inf
                if args.grad_clip > 0 and not skipped:
                    norm = float(mg.optim.clip_grad_norm_(model.parameters(), args.grad_clip).item())
                    if not math.isfinite(norm):
                        return fail(f"gradient norm is {norm} at step {step + 1}")
                scaler.step(optimizer)  # optimizer.step(), unless the float16 gradients overflowed
                scaler.update()  # float16: halve the scale after an overflow, grow it after a run of good steps
                step += 1  # a skipped step still counts: the schedule and the data move on (as in torch)
                skipped_steps += skipped
                state["tokens_seen"] += tok_per_step
                t_steps += time.perf_counter() - t0
                tps = (state["tokens_seen"] - tokens_at_start) / t_steps
                record = {"step": step, "loss": loss_value, "lr": lr}
                if scaler.is_enabled():
                    record.update(loss_scale=scale, skipped=bool(skipped))
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()  # a watcher (or a crash) sees every step
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}",
                                **({"scale": f"{scaler.get_scale():g}", "skipped": skipped_steps}
                                   if scaler.is_enabled() else {}))
                if step % args.eval_interval == 0 or step == args.max_steps:
                    if not params_finite(model):
                        return fail(f"parameters became non-finite at step {step}")
                    if lead:
                        losses = estimate_loss(model, data, args, step)
                        sample = generate_text(model, data.tokenizer, "", args.sample_tokens, seed=args.seed + step)
                        bar.write(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}, "
                                  f"{tps:,.0f} tokens/s{scaler_note(scaler, skipped_steps)} | sample: {sample[:200]!r}")
                        record = {"step": step, "train_loss": losses["train"], "val_loss": losses["val"],
                                  "tokens_per_s": tps, "sample": sample}
                        if scaler.is_enabled():
                            record.update(skipped_steps=skipped_steps, loss_scale=scaler.get_scale())
                        metrics.write(json.dumps(record) + "\n")
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
    final = last_eval(run)
    try:
        plot_metrics(run)
    except KeyboardInterrupt:
        print(f"\ninterrupted after the last step: the final checkpoint (step {step}) is saved in {run}")
        return 130
    print(f"done: {step} steps, {state['tokens_seen']:,} tokens seen, final train loss "
          f"{final.get('train_loss', float('nan')):.4f}, val loss {final.get('val_loss', float('nan')):.4f}, "
          f"{(state['tokens_seen'] - tokens_at_start) / max(t_steps, 1e-9):,.0f} tokens/s in training steps "
          f"(eval and checkpoints excluded), wall {wall:.1f} s{scaler_note(scaler, skipped_steps)}")
    return 0


def restore_scaler(scaler: Any, state: dict, args: Any) -> int:
    """Load a resumed float16 run's loss-scaler state into scaler; returns the steps it has skipped so far
    (0 for a new run, and for the other dtypes, which keep neither in config.json)."""
    if not scaler.is_enabled():
        return 0
    try:
        scaler.load_state_dict(state.get("grad_scaler") or {})
        skipped = state.get("skipped_steps", 0)
        scale = scaler.get_scale()
        if not (math.isfinite(scale) and scale > 0) or type(skipped) is not int or skipped < 0:
            raise ValueError(f"scale {scaler.get_scale()}, skipped_steps {skipped!r}")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise RunError(f"{Path(args.resume or args.out) / 'config.json'}: invalid loss-scaler state "
                       f"({type(e).__name__}: {e})") from None
    return skipped


def scaler_note(scaler: Any, n: int) -> str:
    """float16: the steps skipped so far and the loss scale now, for the eval and final lines ('' otherwise)."""
    if not scaler.is_enabled():
        return ""
    return f", {n} step{'' if n == 1 else 's'} skipped (float16 overflow), loss scale {scaler.get_scale():g}"


def _progress(args: Any, start: int, disable: bool = False) -> Any:
    from tqdm import tqdm
    tqdm.monitor_interval = 0  # no monitor thread: nothing but the main thread to interrupt
    return tqdm(total=args.max_steps, initial=start, disable=args.no_progress or disable, unit="step",
                dynamic_ncols=True)


_AS_PROGRAM = False  # True under python -m tinygpt.train (not when main() is called from Python)

if __name__ == "__main__":
    _AS_PROGRAM = True
    sys.exit(main())
