"""Benchmark bpe against Hugging Face tokenizers (1 and 2 threads) and tiktoken.

python benchmarks/bpe.py [--corpus PATH] [--runs 3] [--vocab-size 8000]

Every training runs in a fresh subprocess (so peak RSS is that training's, interpreter and library
included) and is timed in-process around the train call (file reading included). Runs are
interleaved ours / HF 1 thread / HF 2 threads; the table shows medians. Encoding is single-threaded
(RAYON_NUM_THREADS=1) on the whole corpus as one text, median of 5.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
SPECIALS = ["<bos>", "<eos>"]


# -- workers (run in a subprocess, print one JSON line) ---------------------------------------------

def _peak_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker_train(tool: str, corpus: str, vocab_size: int, pattern: str) -> dict:
    """Train once with `tool` ("ours" or "hf") and report seconds and peak RSS."""
    if tool == "ours":
        sys.path.insert(0, str(ROOT))
        import bpe
        start = time.perf_counter()
        tok = bpe.train([Path(corpus)], vocab_size=vocab_size, special_tokens=SPECIALS, pattern=pattern)
        seconds = time.perf_counter() - start
        merges = len(tok.merges)
    else:
        from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
        sys.path.insert(0, str(ROOT))
        from bpe.pretokenize import GPT4_PATTERN_HF
        tok = Tokenizer(models.BPE())
        if pattern == "gpt2":
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        else:
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(GPT4_PATTERN_HF), "isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        start = time.perf_counter()
        tok.train([corpus], trainer)
        seconds = time.perf_counter() - start
        merges = len(json.loads(tok.to_str())["model"]["merges"])
    return {"seconds": seconds, "peak_mb": _peak_mb(), "merges": merges}


def _median_rate(fn, n_bytes: int, runs: int, before=None) -> float:
    times = []
    for _ in range(runs):
        if before:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n_bytes / 1e6 / statistics.median(times)


def worker_encode(corpus: str, pattern: str, vocab_size: int) -> dict:
    """Encode the whole corpus as one text: ours cold/warm, HF, tiktoken (same merges); MB/s."""
    sys.path.insert(0, str(ROOT))
    import bpe
    text = Path(corpus).read_text(encoding="utf-8")
    n_bytes = len(text.encode("utf-8"))
    tok = bpe.train([Path(corpus)], vocab_size=vocab_size, special_tokens=SPECIALS, pattern=pattern)
    ids = tok.encode(text)
    out = {"tokens": len(ids), "bytes_per_token": n_bytes / len(ids)}
    out["ours_cold"] = _median_rate(lambda: tok.encode(text), n_bytes, 5, before=tok.clear_cache)
    tok.encode(text)
    out["ours_warm"] = _median_rate(lambda: tok.encode(text), n_bytes, 5)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tokenizer.json")
        tok.save(path)
        try:
            import tokenizers
            hf = tokenizers.Tokenizer.from_file(path)
            out["hf_same_ids"] = hf.encode(text).ids == ids
            out["hf_encode"] = _median_rate(lambda: hf.encode(text), n_bytes, 5)
            docs = ["".join(text.splitlines(keepends=True)[i:i + 200]) for i in range(0, text.count("\n") + 1, 200)]
            out["hf_encode_batch_docs"] = _median_rate(lambda: hf.encode_batch(docs), n_bytes, 5)
        except ImportError:
            pass
    try:
        import tiktoken
        ranks = {tok.id_to_bytes(i): i for i in range(len(SPECIALS), tok.vocab_size)}
        enc = tiktoken.Encoding("bench", pat_str=tok.pattern, mergeable_ranks=ranks,
                                special_tokens={s: i for i, s in enumerate(SPECIALS)})
        out["tiktoken_same_ids"] = enc.encode_ordinary(text) == ids
        out["tiktoken"] = _median_rate(lambda: enc.encode_ordinary(text), n_bytes, 5)
    except ImportError:
        pass
    return out


# -- driver -------------------------------------------------------------------------------------------

def run_worker(args: list[str], threads: int = 1) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true" if threads > 1 else "false")
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def has(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def bench_training(corpus: Path, vocab_size: int, pattern: str, runs: int, with_hf: bool) -> dict:
    setups = [("ours", 1)] + ([("hf", 1), ("hf", 2)] if with_hf else [])
    results: dict = {s: [] for s in setups}
    for _ in range(runs):  # interleaved, so drift on a shared machine hits every tool alike
        for tool, threads in setups:
            results[(tool, threads)].append(
                run_worker(["train", tool, str(corpus), str(vocab_size), pattern], threads))
    return {s: {"seconds": statistics.median(r["seconds"] for r in rs),
                "peak_mb": statistics.median(r["peak_mb"] for r in rs),
                "merges": rs[0]["merges"]} for s, rs in results.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--patterns", default="gpt2,gpt4")
    p.add_argument("--big-mb", type=float, default=10.0, help="size of the repeated corpus")
    args = p.parse_args()
    if not args.corpus.is_file():
        sys.exit(f"corpus not found: {args.corpus}")
    with_hf = has("tokenizers")
    corpus_mb = args.corpus.stat().st_size / 1e6
    reps = max(1, round(args.big_mb / corpus_mb))
    tmp = tempfile.TemporaryDirectory()
    big = Path(tmp.name) / "big.txt"
    text = args.corpus.read_text(encoding="utf-8")
    text = text if text.endswith("\n") else text + "\n"
    big.write_text(text * reps, encoding="utf-8")
    big_mb = big.stat().st_size / 1e6
    # The repeated file is easy for us (identical lines are pre-tokenized once), so also time a
    # corpus of the same size whose copies differ: copy r rotates each line's words by r.
    rotated = Path(tmp.name) / "rotated.txt"
    lines = text.splitlines()
    with open(rotated, "w", encoding="utf-8") as f:
        for r in range(reps):
            for line in lines:
                parts = line.split(" ")
                k = r % len(parts)
                f.write(" ".join(parts[k:] + parts[:k]) + "\n")

    print(f"corpus {args.corpus.name} ({corpus_mb:.2f} MB), x{reps} repeated ({big_mb:.1f} MB) and x{reps} with "
          f"each copy's lines rotated by r words (no repeated lines), vocab {args.vocab_size}, "
          f"median of {args.runs}, {os.cpu_count()} cores, python {sys.version.split()[0]}")
    if not with_hf:
        print("tokenizers not installed: Hugging Face columns are skipped")
    header = f"{'corpus':<16}{'pattern':<8}{'ours s':>8}{'HF1 s':>8}{'HF2 s':>8}{'/HF1':>7}{'/HF2':>7}" \
             f"{'ours MB':>9}{'HF1 MB':>8}{'mem/HF1':>8}{'merges':>8}"
    print("\ntraining (fresh process per run; peak RSS includes the interpreter)")
    print(header)
    ratios = {}
    corpora = ((args.corpus, args.corpus.stem[:15]), (big, f"x{reps} {big_mb:.0f} MB"),
               (rotated, f"x{reps} rotated"))
    for corpus, label in corpora:
        for pattern in args.patterns.split(","):
            r = bench_training(corpus, args.vocab_size, pattern, args.runs, with_hf)
            ours = r[("ours", 1)]
            row = f"{label:<16}{pattern:<8}{ours['seconds']:>8.3f}"
            if with_hf:
                hf1, hf2 = r[("hf", 1)], r[("hf", 2)]
                ratios[(label, pattern)] = (ours["seconds"] / hf1["seconds"], ours["seconds"] / hf2["seconds"],
                                            ours["peak_mb"] / hf1["peak_mb"])
                r1, r2, mem = ratios[(label, pattern)]
                row += f"{hf1['seconds']:>8.3f}{hf2['seconds']:>8.3f}{r1:>7.2f}{r2:>7.2f}" \
                       f"{ours['peak_mb']:>9.1f}{hf1['peak_mb']:>8.1f}{mem:>8.2f}"
                same = "" if hf1["merges"] == ours["merges"] else f" (HF {hf1['merges']})"
            else:
                row += f"{'-':>8}{'-':>8}{'-':>7}{'-':>7}{ours['peak_mb']:>9.1f}{'-':>8}{'-':>8}"
                same = ""
            print(row + f"{ours['merges']:>8}{same}", flush=True)

    print("\nencoding the whole corpus as one text, 1 thread, MB/s (median of 5)")
    enc = run_worker(["encode", str(args.corpus), "gpt4", str(args.vocab_size)], threads=1)
    print(f"{'ours cold (empty cache)':<34}{enc['ours_cold']:>7.2f}")
    print(f"{'ours warm':<34}{enc['ours_warm']:>7.2f}")
    for key, name in (("hf_encode", "HF encode(text)"), ("hf_encode_batch_docs", "HF encode_batch(200-line docs)"),
                      ("tiktoken", "tiktoken encode_ordinary(text)")):
        if key in enc:
            print(f"{name:<34}{enc[key]:>7.2f}")
    same = [f"{k.split('_')[0]}={enc[k]}" for k in ("hf_same_ids", "tiktoken_same_ids") if k in enc]
    print(f"{enc['tokens']} tokens, {enc['bytes_per_token']:.2f} bytes/token; identical ids: {', '.join(same) or 'n/a'}")

    summary = f"summary: encode {enc['ours_cold']:.1f} MB/s cold, {enc['ours_warm']:.1f} MB/s warm"
    if ratios:
        worst = max(r[0] for r in ratios.values())
        worst2 = max(r[1] for r in ratios.values())
        mem = max(r[2] for r in ratios.values())
        verdict = "PASS" if worst <= 1.0 and mem <= 1.5 and enc["ours_cold"] >= 5 and enc["ours_warm"] >= 10 else "MISS"
        summary = (f"summary: train time / HF 1 thread <= {worst:.2f} (target 1.0, stretch 0.7), / HF 2 threads "
                   f"<= {worst2:.2f}; peak memory / HF <= {mem:.2f} (target 1.5); "
                   + summary[len("summary: "):] + f" (targets 5 / 10); {verdict}")
    print("\n" + summary)
    tmp.cleanup()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "train":
            result = worker_train(rest[0], rest[1], int(rest[2]), rest[3])
        else:
            result = worker_encode(rest[0], rest[1], int(rest[2]))
        print(json.dumps(result))
    else:
        main()
