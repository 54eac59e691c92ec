"""Starting a training run: the options resolved (against the run being resumed), the run folder chosen, the
ranks and their cores, the corpus, tokenizer, model and optimizer, and the training state to start from.

`setup` checks everything (options, files, the resumed run's corpus and checkpoint) before anything is written;
tinygpt/train.py then opens the run folder and runs the loop.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

import minigrad as mg
from minigrad import distributed
from tinygpt import checkpoint
from tinygpt.checkpoint import RunError
from tinygpt.cli import UsageError
from tinygpt.config import PRESETS, GPTConfig, preset
from tinygpt.data import corpus_digest, load_corpus, prepare
from tinygpt.model import TinyGPT
from tinygpt.options import check_args, check_dtype_available, master_dtype
from tinygpt.run_folder import apply_resume, choose_out, restored_state


def say(args: Any, *what: Any, **kw: Any) -> None:
    """print() on rank 0 only (every rank runs the same code; one of them talks)."""
    comm = getattr(args, "comm", None)
    if comm is None or comm.rank == 0:
        print(*what, **kw)


def setup(args: Any, given: set[str]) -> tuple:
    """Resolve options, data, model and optimizer (from --resume when given), before writing anything."""
    args.overrides = []
    saved = apply_resume(args, given) if args.resume else None
    check_args(args)
    check_dtype_available(args)
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
    mg.set_default_dtype(master_dtype(args.dtype))  # bfloat16/float16: float32 master weights
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
        state = restored_state(saved, src, dev, comm.rank)
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
