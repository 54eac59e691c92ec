"""python -m bpe train|encode|decode: train a tokenizer.json, encode text to ids, decode ids to text."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

from bpe.pretokenize import resolve_pattern
from bpe.tokenizer import Tokenizer
from bpe.tokenizer_json import TokenizerFileError
from bpe.trainer import MAX_VOCAB, train


class UsageError(Exception):
    """A problem with the command line or its inputs: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        raise UsageError(f"{message} (see {self.prog} --help)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m bpe", description="Byte-level BPE: train, encode, decode.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train a tokenizer.json on text files")
    t.add_argument("corpus", nargs="+", type=Path, help="UTF-8 text files (each line is fed separately, like HF)")
    t.add_argument("--vocab-size", type=int, default=8000, help="total ids: specials + 256 bytes + merges")
    t.add_argument("--out", type=Path, default=Path("tokenizer.json"), help="where to write tokenizer.json")
    t.add_argument("--pattern", default="gpt4", help="split pattern: gpt4 (default), gpt2 or a regex")
    t.add_argument("--special-tokens", default="<bos>,<eos>", help="comma-separated, in id order")
    t.add_argument("--min-frequency", type=int, default=0, help="stop when the best pair is rarer than this")
    t.add_argument("--quiet", action="store_true", help="no progress line or summary")
    e = sub.add_parser("encode", help="print the ids of a text")
    e.add_argument("text", nargs="?", help="text to encode (or use --file)")
    e.add_argument("--tokenizer", type=Path, required=True, help="tokenizer.json")
    e.add_argument("--file", type=Path, help="encode this UTF-8 file instead of TEXT")
    e.add_argument("--allow-special", action="store_true", help="read special tokens in the text as specials")
    e.add_argument("--processes", type=int, default=1,
                   help="worker processes for a big --file (the ids are the same as with 1)")
    d = sub.add_parser("decode", help="print the text of ids")
    d.add_argument("ids", nargs="*", help="token ids (read from stdin when none are given)")
    d.add_argument("--tokenizer", type=Path, required=True, help="tokenizer.json")
    return p


def _check_out(out: Path) -> None:
    """Refuse an unusable --out before training, naming the path as the user wrote it."""
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder; give a file path such as {out / 'tokenizer.json'}")
    folder = out.resolve().parent
    if not folder.exists():
        raise UsageError(f"--out {out}: folder {folder} does not exist")
    if not folder.is_dir():
        raise UsageError(f"--out {out}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: folder {folder} is not writable")


def _cmd_train(args: argparse.Namespace) -> None:
    for path in args.corpus:
        if path.is_dir():
            raise UsageError(f"corpus {path} is a folder, not a text file")
        if not path.is_file():
            raise UsageError(f"corpus file not found: {path}")
    specials = [s for s in args.special_tokens.split(",") if s]
    duplicates = sorted({s for s in specials if specials.count(s) > 1})
    if duplicates:
        raise UsageError(f"--special-tokens {args.special_tokens}: {', '.join(duplicates)} appears more than once")
    if args.vocab_size < 256 + len(specials):
        raise UsageError(f"--vocab-size {args.vocab_size} is too small: it must be at least 256 bytes + "
                         f"{len(specials)} special tokens = {256 + len(specials)}")
    if args.vocab_size - len(specials) > MAX_VOCAB:
        raise UsageError(f"--vocab-size {args.vocab_size} is too large: at most {MAX_VOCAB} tokens besides "
                         f"the {len(specials)} special tokens")
    if args.min_frequency < 0:
        raise UsageError(f"--min-frequency {args.min_frequency}: must be >= 0")
    try:
        resolve_pattern(args.pattern)
    except ValueError as exc:
        raise UsageError(f"--pattern: {exc}") from None
    _check_out(args.out)
    if any(args.out.resolve() == path.resolve() for path in args.corpus):
        raise UsageError(f"--out {args.out}: is also a corpus file; writing the tokenizer there would replace it")
    started = time.perf_counter()
    show = not args.quiet and sys.stderr.isatty()
    total_mb = sum(path.stat().st_size for path in args.corpus) / 1e6
    if show and total_mb > 20:  # pre-tokenizing runs at ~10-20 MB/s: say what is happening
        print(f"bpe: pre-tokenizing {total_mb:.0f} MB ...", file=sys.stderr, flush=True)

    def progress(done: int, total: int) -> None:
        if show and time.perf_counter() - started > 1.0:  # only long trainings get a progress line
            print(f"\rbpe: merge {done}/{total} ({100 * done // max(total, 1)}%)", end="", file=sys.stderr, flush=True)

    try:
        tok = train(args.corpus, vocab_size=args.vocab_size, special_tokens=specials, pattern=args.pattern,
                    min_frequency=args.min_frequency, progress=progress)
    except ValueError as exc:
        named = "corpus file" in str(exc)
        raise UsageError(str(exc) if named else f"{exc} (corpus: {', '.join(map(str, args.corpus))})") from None
    if show and time.perf_counter() - started > 1.0:
        print(file=sys.stderr)
    try:
        tok.save(args.out)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: {exc.strerror or exc}") from None
    if not args.quiet:
        s = tok.train_stats
        print(f"trained {s.merges} merges on {s.corpus_bytes / 1e6:.2f} MB ({s.unique_words} unique words) "
              f"in {s.seconds:.2f} s ({s.corpus_bytes / 1e6 / max(s.seconds, 1e-9):.1f} MB/s); "
              f"{s.bytes_per_token:.2f} bytes/token; vocab {tok.vocab_size} -> {args.out}")


def _load(path: Path) -> Tokenizer:
    if path.is_dir():
        raise UsageError(f"--tokenizer {path}: is a folder, not a tokenizer.json")
    if not path.is_file():
        raise UsageError(f"--tokenizer {path}: file not found")
    try:
        return Tokenizer.load(path)
    except TokenizerFileError as exc:
        raise UsageError(f"--tokenizer {exc}") from None


def _cmd_encode(args: argparse.Namespace) -> None:
    tok = _load(args.tokenizer)
    if (args.text is None) == (args.file is None):
        raise UsageError("encode needs exactly one of TEXT or --file")
    if args.file is not None:
        if args.file.is_dir():
            raise UsageError(f"--file {args.file}: is a folder, not a text file")
        if not args.file.is_file():
            raise UsageError(f"--file {args.file}: file not found")
        try:
            text = args.file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"--file {args.file}: not valid UTF-8") from None
    else:
        text = args.text
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # argv bytes that are not UTF-8 arrive as lone surrogates
            raise UsageError("TEXT is not valid UTF-8 (use --file for other encodings converted to UTF-8)") from None
    if args.processes < 1:
        raise UsageError(f"--processes {args.processes}: must be >= 1")
    allowed = "all" if args.allow_special else "none"
    if args.file is not None:  # a progress bar on a terminal for big files
        ids = tok.encode_large(text, allowed, processes=args.processes, progress=sys.stderr.isatty())
    else:
        ids = tok.encode(text, allowed_special=allowed)
    print(" ".join(map(str, ids)))


def _cmd_decode(args: argparse.Namespace) -> None:
    tok = _load(args.tokenizer)
    raw = args.ids if args.ids else sys.stdin.read().split()
    try:
        ids = [int(x) for x in raw]
    except ValueError as exc:
        raise UsageError(f"ids must be integers: {exc}") from None
    try:
        text = tok.decode(ids)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status (2 for usage and input errors)."""
    try:
        args = _parser().parse_args(argv)
        {"train": _cmd_train, "encode": _cmd_encode, "decode": _cmd_decode}[args.command](args)
    except UsageError as exc:
        message = str(exc)
    except OSError as exc:
        message = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
    else:
        return 0
    print("bpe: error: " + message.replace("\r", "\\r").replace("\n", "\\n"), file=sys.stderr)  # one line
    return 2


if __name__ == "__main__":
    if os.environ.get("PYTHONIOENCODING") is None and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8", errors="surrogateescape")
    sys.exit(main())
