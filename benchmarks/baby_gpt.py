"""nanoGPT's CPU "baby GPT" on shakespeare-char, trained by minigrad and by PyTorch side by side.

python benchmarks/baby_gpt.py [--iters 2000] [--turn 100] [--data ../shared/data/tinyshakespeare.txt] [--no-torch]
                              [--device cpu|cuda]
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/baby_gpt.py   # the headline BLAS setup

The run of nanoGPT's README for a CPU: 4 layers, 4 heads, 128 dims, context 64, batch 12, dropout 0,
2000 iterations, AdamW lr 1e-3 (warmup 100, cosine to 1e-4 at 2000), betas (0.9, 0.99), weight decay
0.1 on 2-D weights, grad clip 1.0, char-level tinyshakespeare (65 symbols, first 90% train).
minigrad's model is preset("shakespeare-char") (pre-norm, tied embedding/head, no biases); the PyTorch
model is the same network written with torch.nn (nanoGPT's layout: SDPA with is_causal). Both start from
the same nanoGPT-style initial weights (N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 * layers)))
and see the same batches. The engines take turns of --turn (100) iterations: a slow spell of this shared
machine then hits both alike, and a BLAS or OpenMP pool that keeps spinning after the other engine's last
call costs at most the first iteration of a turn (with step-by-step interleaving it slowed every step).
Wall time is the sum of each engine's iteration times (the evaluation is not included); final losses
are means over 200 random batches of each split, as nanoGPT's estimate_loss.
--device cuda puts both models and every batch on the GPU (minigrad through cupy, torch on "cuda"); a batch is
copied to the device before its iteration's clock starts, and the device is synchronised before each clock read,
so every kernel an iteration launches is counted in its time.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable

import numpy as np

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)

import minigrad as mg  # noqa: E402
from benchmarks.train_step import blas_env, blas_info, cpu_name  # noqa: E402
from tinygpt import TinyGPT, preset  # noqa: E402
from tinygpt.data import get_batch  # noqa: E402
mg.tune_malloc()  # as tinygpt.train does: freed heap memory is kept for the next step

DEFAULT_DATA = os.path.join(REPO, "..", "shared", "data", "tinyshakespeare.txt")


def load_chars(path: str) -> tuple[np.ndarray, np.ndarray, int]:
    """nanoGPT's shakespeare_char prepare.py: ids of the sorted distinct characters, 90/10 split."""
    if not os.path.isfile(path):
        sys.exit(f"baby_gpt: corpus {path} not found; pass --data PATH to tinyshakespeare.txt "
                 "(https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt)")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    lut = {c: i for i, c in enumerate(chars)}
    ids = np.array([lut[c] for c in text], dtype=np.int64)
    cut = int(len(ids) * 0.9)
    return ids[:cut], ids[cut:], len(chars)


def lr_at(it: int, iters: int) -> float:
    return mg.optim.cosine_with_warmup(it, 1e-3, 100, iters, 1e-4)


# ---------------------------------------------------------------- the two engines

# An engine is (step, evaluate, put, sync): put(x, y) moves a numpy batch onto the engine's device (untimed),
# step(it, x, y) and evaluate(x, y) take what put returned, sync() waits for the device (a no-op on the CPU).
Engine = tuple[Callable, Callable, Callable, Callable]


def minigrad_engine(model: Any, iters: int, device: str) -> Engine:
    dev = mg.device(device)
    if device != "cpu":
        model.to(device)  # in place: the same Parameter objects
    opt = mg.optim.AdamW(model.param_groups(0.1), lr=1e-3, betas=(0.9, 0.99))

    def put(x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        if device == "cpu":
            return x, y  # numpy batches, as before --device existed
        return mg.backend.from_numpy(dev, x), mg.backend.from_numpy(dev, y)

    def step(it: int, x: Any, y: Any) -> float:
        for group in opt.param_groups:
            group["lr"] = lr_at(it, iters)
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        mg.optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    @mg.no_grad()
    def evaluate(x: Any, y: Any) -> float:
        return model(x, y)[1].item()

    return step, evaluate, put, dev.synchronize


def torch_model(torch: Any, cfg: Any) -> Any:
    """The baby GPT in torch.nn, nanoGPT's layout, with minigrad's parameter names (for load_state_dict)."""
    nn, F = torch.nn, torch.nn.functional

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.in_proj_weight = nn.Parameter(torch.empty(3 * cfg.n_embd, cfg.n_embd))
            self.out_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

        def forward(self, x: Any) -> Any:
            b, t, c = x.shape
            q, k, v = F.linear(x, self.in_proj_weight).split(c, dim=2)
            q, k, v = (z.view(b, t, cfg.n_heads, c // cfg.n_heads).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.out_proj(y.transpose(1, 2).contiguous().view(b, t, c))

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1 = nn.LayerNorm(cfg.n_embd, bias=False)
            self.attn = Attention()
            self.ln2 = nn.LayerNorm(cfg.n_embd, bias=False)
            self.ff = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False), nn.GELU(),
                                    nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False))

        def forward(self, x: Any) -> Any:
            x = x + self.attn(self.ln1(x))
            return x + self.ff(self.ln2(x))

    class BabyGPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok_embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
            self.pos_embed = nn.Parameter(torch.zeros(1, cfg.block_size, cfg.n_embd))
            self.blocks = nn.ModuleList([Block() for _ in range(cfg.n_layers)])
            self.ln_f = nn.LayerNorm(cfg.n_embd, bias=False)
            self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
            self.head.weight = self.tok_embed.weight  # tied, as nanoGPT

        def forward(self, idx: Any, targets: Any) -> Any:
            x = self.tok_embed(idx) + self.pos_embed[:, :idx.shape[1]]
            for block in self.blocks:
                x = block(x)
            logits = self.head(self.ln_f(x))
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))

    return BabyGPT()


def torch_engine(torch: Any, cfg: Any, state: dict, iters: int, device: str) -> Engine:
    model = torch_model(torch, cfg)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
    if device != "cpu":
        model.to(device)  # in place: the same Parameter objects (the tied weight stays tied)
    params = list(model.parameters())  # the tied embedding/head weight once
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99))

    def put(x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)  # .to("cpu"): the same tensor

    def step(it: int, x: Any, y: Any) -> float:
        for group in opt.param_groups:
            group["lr"] = lr_at(it, iters)
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    def evaluate(x: Any, y: Any) -> float:
        with torch.no_grad():
            return model(x, y).item()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return step, evaluate, put, sync


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--eval-batches", type=int, default=200)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--log-every", type=int, default=250)
    ap.add_argument("--turn", type=int, default=100, help="iterations per engine per turn")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="where both engines run (cuda: minigrad through cupy, torch on its CUDA device)")
    args = ap.parse_args()

    if args.device == "cuda":
        try:
            mg.device("cuda")
        except mg.backend.CudaUnavailableError as e:  # no cupy, or no GPU
            print(f"baby_gpt --device cuda: minigrad cannot use CUDA here: {e}", file=sys.stderr)
            sys.exit(2)
    train, val, vocab = load_chars(args.data)
    cfg = preset("shakespeare-char", vocab_size=vocab)
    batch, block = 12, cfg.block_size
    mg.manual_seed(args.seed)
    model = TinyGPT(cfg)  # the preset's init="nanogpt": N(0, 0.02), residual projections N(0, 0.02/sqrt(2L))
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    engines: dict[str, Engine] = {"minigrad": minigrad_engine(model, args.iters, args.device)}
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("torch is not installed: minigrad figures only")
        if torch is not None:
            if args.device == "cuda" and not torch.cuda.is_available():
                print("baby_gpt --device cuda: torch has no CUDA here (a CPU-only build or no GPU); "
                      "use --no-torch for minigrad alone", file=sys.stderr)
                sys.exit(2)
            engines["torch"] = torch_engine(torch, cfg, state, args.iters, args.device)

    n_params = model.num_parameters()
    print(f"baby GPT: {n_params:,} parameters, vocab {vocab}, {cfg.n_layers} layers, {cfg.n_heads} heads, "
          f"{cfg.n_embd} dims, context {block}, batch {batch}, {args.iters} iterations")
    print(f"machine: {cpu_name()}, {os.cpu_count()} cpus; numpy BLAS: {blas_info()}; env {blas_env()}"
          + (f"; torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch is not None else ""),
          flush=True)
    if args.device == "cuda":
        print(f"device: cuda, minigrad on {mg.device('cuda')}"
              + (f", torch on {torch.cuda.get_device_name(0)}" if torch is not None else ""), flush=True)
    seconds = {name: 0.0 for name in engines}
    rngs = {name: np.random.default_rng(args.seed) for name in engines}  # the same batches for both
    losses: dict[str, list] = {name: [] for name in engines}
    turn = max(1, args.turn)
    for k, start in enumerate(range(0, args.iters, turn)):
        # the engines take turns of --turn iterations (alternating who goes first), so a slow spell of the
        # machine hits both; a turn's first iteration also lets the other engine's thread pools spin down
        order = list(engines) if k % 2 == 0 else list(engines)[::-1]
        for name in order:
            step, _, put, sync = engines[name]
            for it in range(start, min(start + turn, args.iters)):
                x, y = put(*get_batch(train, batch, block, rngs[name]))
                sync()  # the batch's copy is not timed
                t0 = time.perf_counter()
                losses[name].append(step(it, x, y))
                sync()  # every kernel the iteration launched is counted
                seconds[name] += time.perf_counter() - t0
                if args.log_every and ((it + 1) % args.log_every == 0 or it == 0):
                    print(f"{name} iter {it + 1:5d}: loss {np.mean(losses[name][-50:]):.4f} ({seconds[name]:.1f} s)",
                          flush=True)

    final: dict[str, dict[str, float]] = {name: {} for name in engines}
    erng = {split: np.random.default_rng(args.seed + 1 + i) for i, split in enumerate(("train", "val"))}
    for split, data in (("train", train), ("val", val)):
        batches = [get_batch(data, batch, block, erng[split]) for _ in range(args.eval_batches)]
        for name, (_, evaluate, put, _) in engines.items():
            final[name][split] = float(np.mean([evaluate(*put(x, y)) for x, y in batches]))

    flops = 6 * (n_params - cfg.block_size * cfg.n_embd) + 12 * cfg.n_layers * block * cfg.n_embd
    gflop_iter = flops * batch * block / 1e9
    print(f"\n{'engine':10s} {'wall s':>8s} {'ms/iter':>8s} {'GFLOP/s':>8s} {'train loss':>11s} {'val loss':>9s}")
    for name in engines:
        s = seconds[name]
        print(f"{name:10s} {s:8.1f} {s / args.iters * 1e3:8.1f} {gflop_iter * args.iters / s:8.1f} "
              f"{final[name]['train']:11.4f} {final[name]['val']:9.4f}")
    m = final["minigrad"]
    where = "" if args.device == "cpu" else f"{args.device} "
    summary = (f"SUMMARY baby_gpt {where}{args.iters} iters: minigrad {seconds['minigrad']:.1f} s, "
               f"train {m['train']:.4f} val {m['val']:.4f}")
    if "torch" in engines:
        t = final["torch"]
        summary += (f"; torch {seconds['torch']:.1f} s, train {t['train']:.4f} val {t['val']:.4f}; "
                    f"val diff {m['val'] - t['val']:+.4f}, time ratio {seconds['minigrad'] / seconds['torch']:.2f}")
    print(summary)


if __name__ == "__main__":
    main()
