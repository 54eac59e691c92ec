"""python -m tinygpt.export --run runs/NAME --out DIR: a run as a Hugging Face transformers folder.

The folder (config.json, generation_config.json, model.safetensors, tokenizer.json,
tokenizer_config.json) loads offline with `GPT2LMHeadModel.from_pretrained(DIR)` and
`AutoTokenizer.from_pretrained(DIR)`. Pre-norm runs only: GPT-2's architecture is TinyGPT with
norm="pre" (exact GELU -> activation_function "gelu", tanh GELU -> "gelu_new"; missing biases are
written as zeros; a tied head stays tied). The tutorial's post-norm blocks have no transformers
class: such a run is refused with one line (the seed tutorial's PyTorch class is their PyTorch home).

Tokenizers: a BPE run's tokenizer.json is Hugging Face's format already; a char run becomes a
WordLevel tokenizer.json (one id per character, Fuse decoder) and a byte run a byte-level BPE
without merges whose ids are the byte values, so AutoTokenizer gives the run's own ids for all three.

`TinyGPT.from_pretrained(DIR)` reads such a folder back (export -> import is exact).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from minigrad import backend
from tinygpt.checkpoint import fsync_dir
from tinygpt.cli import Parser, UsageError

LAYER_NORM_EPS = 1e-5  # minigrad's LayerNorm default, which TinyGPT uses
GELU = {"none": "gelu", "tanh": "gelu_new"}


class ExportError(ValueError):
    """A run that cannot be exported, or an --out that cannot be written: one line."""


def hf_config(cfg: Any, tokenizer: Any) -> dict:
    """GPT2Config content for a pre-norm TinyGPT config."""
    if cfg.norm != "pre":
        raise ExportError('the model uses post-norm blocks (norm="post", the tutorial\'s TinyGPT): transformers '
                          "has no class for them (GPT-2 is pre-norm), so it cannot be exported; the seed "
                          "tutorial's PyTorch class loads this run's model.safetensors")
    bos, eos = getattr(tokenizer, "bos_id", None), getattr(tokenizer, "eos_id", None)
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": cfg.ffn_mult * cfg.n_embd,
        "activation_function": GELU[cfg.gelu],
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "layer_norm_epsilon": LAYER_NORM_EPS,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "use_cache": True,
        "tie_word_embeddings": bool(cfg.tie_weights),
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": None,
        "dtype": "float32",
        "tinygpt": cfg.to_dict(),  # what TinyGPT.from_pretrained restores exactly (bias, init, ...)
    }


def hf_state(model: Any) -> dict[str, np.ndarray]:
    """GPT2LMHeadModel's state dict from a pre-norm TinyGPT's (Conv1D weights are (in, out))."""
    cfg = model.cfg
    sd = {k: np.asarray(backend.to_numpy(v.data), dtype=np.float32) for k, v in model.state_dict().items()}
    zeros = lambda n: np.zeros(n, dtype=np.float32)  # noqa: E731
    c = cfg.n_embd
    out = {"transformer.wte.weight": sd["tok_embed.weight"],
           "transformer.wpe.weight": sd["pos_embed"].reshape(cfg.block_size, c)}
    for i in range(cfg.n_layers):
        p, q = f"blocks.{i}.", f"transformer.h.{i}."
        get = lambda name, n: sd.get(p + name, zeros(n))  # noqa: E731  bias=False: zeros
        out.update({
            q + "ln_1.weight": sd[p + "ln1.weight"], q + "ln_1.bias": get("ln1.bias", c),
            q + "attn.c_attn.weight": sd[p + "attn.in_proj_weight"].T, q + "attn.c_attn.bias": get("attn.in_proj_bias", 3 * c),
            q + "attn.c_proj.weight": sd[p + "attn.out_proj.weight"].T, q + "attn.c_proj.bias": get("attn.out_proj.bias", c),
            q + "ln_2.weight": sd[p + "ln2.weight"], q + "ln_2.bias": get("ln2.bias", c),
            q + "mlp.c_fc.weight": sd[p + "ff.0.weight"].T, q + "mlp.c_fc.bias": get("ff.0.bias", cfg.ffn_mult * c),
            q + "mlp.c_proj.weight": sd[p + "ff.2.weight"].T, q + "mlp.c_proj.bias": get("ff.2.bias", c),
        })
    out["transformer.ln_f.weight"] = sd["ln_f.weight"]
    out["transformer.ln_f.bias"] = sd.get("ln_f.bias", zeros(c))
    if not cfg.tie_weights:
        out["lm_head.weight"] = sd["head.weight"]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def hf_tokenizer(tokenizer: Any) -> tuple[dict, dict]:
    """(tokenizer.json, tokenizer_config.json) content that AutoTokenizer loads with the run's ids."""
    kind = getattr(tokenizer, "kind", "bpe")
    config: dict = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False}
    if kind == "char":
        data = {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": {"type": "Split", "pattern": {"Regex": r"[\s\S]"}, "behavior": "Isolated", "invert": False},
            "post_processor": None, "decoder": {"type": "Fuse"},
            "model": {"type": "WordLevel", "vocab": {ch: i for i, ch in enumerate(tokenizer.chars)}, "unk_token": ""},
        }
        return data, config
    if kind == "byte":
        import bpe
        from bpe.pretokenize import BYTE_TO_CHAR
        data = bpe.Tokenizer.from_merges([], special_tokens=()).to_json()
        data["model"]["vocab"] = {BYTE_TO_CHAR[b]: b for b in range(256)}  # id = the byte's value
        data["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                 "use_regex": False}
        return data, config
    data = tokenizer.to_json()
    specials = tokenizer.special_tokens
    for name, token in (("bos_token", "<bos>"), ("eos_token", "<eos>")):
        if token in specials:
            config[name] = token
    return data, config


def _write_folder(folder: Path, files: dict[str, Any]) -> None:
    from safetensors.numpy import save_file
    for name, content in files.items():
        path = folder / name
        if name.endswith(".safetensors"):
            save_file(content, str(path), metadata={"format": "pt"})
        else:
            path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    fsync_dir(folder)


def check_out(out: Path, run: Path, overwrite: bool) -> None:
    """ExportError unless `out` may be written: missing or empty, or --overwrite; never the run itself."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file, not a folder")
    parent = out.resolve().parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir():
        raise ExportError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ExportError(f"--out {out}: folder {existing} is not writable")
    if not parent.is_dir():
        return  # created (with its parents) when writing
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"--out {out}: folder {parent} is not writable")
    r, o = run.resolve(), out.resolve()
    if o == r or r.is_relative_to(o) or o.is_relative_to(r):
        raise ExportError(f"--out {out} is (or holds, or is inside) the run folder {run}; choose another folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"--out {out} is not empty (add --overwrite to replace it)")


def export(run: "str | Path", out: "str | Path", overwrite: bool = False) -> Path:
    """Write a transformers folder for a pre-norm run; ExportError (one line) when it cannot."""
    from tinygpt.checkpoint import load
    run, out = Path(run), Path(out)
    model, tokenizer = load(run)  # RunError (a ValueError) names the file that is wrong
    config = hf_config(model.cfg, tokenizer)
    check_out(out, run, overwrite)
    tok_json, tok_config = hf_tokenizer(tokenizer)
    tok_config["model_max_length"] = model.cfg.block_size
    generation = {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]}
    files = {"config.json": config, "generation_config.json": generation, "model.safetensors": hf_state(model),
             "tokenizer.json": tok_json, "tokenizer_config.json": tok_config}
    # everything is written in a temporary folder beside --out, then renamed into place
    out.resolve().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".export.tmp", dir=out.resolve().parent))
    try:
        _write_folder(tmp, files)
        os.chmod(tmp, 0o755)
        if out.is_dir():
            old = tmp.with_name(tmp.name[:-len(".export.tmp")] + ".old.tmp")
            os.replace(out, old)  # a non-empty folder (with --overwrite) or an empty one
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
        fsync_dir(out.resolve().parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ------------------------------------------------------------------------------------------ import
ACTIVATIONS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path} is not valid JSON ({e})") from None


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not folder.is_dir():
        raise ExportError(f"{folder}: no such folder" if not folder.exists() else f"{folder} is a file, not a folder")
    if not path.is_file():
        raise ExportError(f"{folder} has no config.json: not a Hugging Face model folder")
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ExportError(f"{path} is not a JSON object")
    return data


def tinygpt_config(data: dict, path: "str | Path" = "config.json") -> Any:
    """The GPTConfig of a GPT-2 config.json (ExportError naming what TinyGPT cannot reproduce)."""
    from tinygpt.config import GPTConfig
    if data.get("model_type") != "gpt2":
        raise ExportError(f"{path}: model_type {data.get('model_type')!r} is not 'gpt2' (only GPT-2's architecture loads)")
    own = data.get("tinygpt")
    try:
        n_embd, n_layer, n_head = int(data["n_embd"]), int(data["n_layer"]), int(data["n_head"])
        vocab, positions = int(data["vocab_size"]), int(data.get("n_positions", data.get("n_ctx")))
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"{path}: missing or invalid GPT-2 field ({type(e).__name__}: {e})") from None
    inner = data.get("n_inner") or 4 * n_embd
    if inner % n_embd:
        raise ExportError(f"{path}: n_inner {inner} is not a multiple of n_embd {n_embd} (TinyGPT's MLP is ffn_mult x n_embd)")
    act = data.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise ExportError(f"{path}: activation_function {act!r} is not supported (gelu, gelu_new, gelu_pytorch_tanh)")
    eps = data.get("layer_norm_epsilon", 1e-5)
    if eps != LAYER_NORM_EPS:
        raise ExportError(f"{path}: layer_norm_epsilon {eps} differs from TinyGPT's {LAYER_NORM_EPS}")
    if data.get("scale_attn_by_inverse_layer_idx") or data.get("scale_attn_weights", True) is not True:
        raise ExportError(f"{path}: attention scaling other than 1/sqrt(head size) is not supported")
    dropout = float(data.get("resid_pdrop", 0.1))
    fields = dict(vocab_size=vocab, block_size=positions, n_embd=n_embd, n_heads=n_head, n_layers=n_layer,
                  ffn_mult=inner // n_embd, norm="pre", tie_weights=bool(data.get("tie_word_embeddings", True)),
                  dropout=dropout, gelu=ACTIVATIONS[act], bias=True, init="nanogpt")
    if isinstance(own, dict):  # written by tinygpt.export: keep what GPT-2's config cannot say (bias, init)
        fields.update({k: own[k] for k in ("bias", "init", "dropout") if k in own})
    try:
        return GPTConfig(**fields)
    except ValueError as e:
        raise ExportError(f"{path}: {e}") from None


def _read_weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = [folder / name for name in sorted(set(weight_map.values()))]
        except (ValueError, KeyError, TypeError) as e:
            raise ExportError(f"{index} is not a valid safetensors index ({type(e).__name__}: {e})") from None
    elif (folder / "pytorch_model.bin").is_file():
        raise ExportError(f"{folder} holds pytorch_model.bin only: a pickle, which is never loaded; convert it to "
                          f"model.safetensors first (transformers: model.save_pretrained(dir, safe_serialization=True))")
    else:
        raise ExportError(f"{folder} has no model.safetensors")
    out: dict[str, np.ndarray] = {}
    for path in files:
        try:
            out.update(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as e:
            raise ExportError(f"{path} is not a readable safetensors file ({e})") from None
    return out


def tinygpt_state(weights: dict[str, np.ndarray], cfg: Any, path: "str | Path" = "model.safetensors") -> dict:
    """TinyGPT's state dict (numpy) from GPT-2 weights named as transformers saves them (with or
    without the "transformer." prefix); ExportError naming a missing or misshapen tensor."""
    w = {(k[len("transformer."):] if k.startswith("transformer.") else k): v for k, v in weights.items()}
    c = cfg.n_embd

    def get(name: str, shape: tuple) -> np.ndarray:
        if name not in w:
            raise ExportError(f"{path} has no tensor {name!r}")
        a = np.asarray(w[name])
        if a.shape != shape:
            raise ExportError(f"{path}: {name!r} has shape {a.shape}, config.json needs {shape}")
        return a.astype(np.float32)

    sd = {"tok_embed.weight": get("wte.weight", (cfg.vocab_size, c)),
          "pos_embed": get("wpe.weight", (cfg.block_size, c)).reshape(1, cfg.block_size, c)}
    hidden = cfg.ffn_mult * c
    for i in range(cfg.n_layers):
        p, q = f"blocks.{i}.", f"h.{i}."
        sd[p + "ln1.weight"] = get(q + "ln_1.weight", (c,))
        sd[p + "attn.in_proj_weight"] = get(q + "attn.c_attn.weight", (c, 3 * c)).T
        sd[p + "attn.out_proj.weight"] = get(q + "attn.c_proj.weight", (c, c)).T
        sd[p + "ln2.weight"] = get(q + "ln_2.weight", (c,))
        sd[p + "ff.0.weight"] = get(q + "mlp.c_fc.weight", (c, hidden)).T
        sd[p + "ff.2.weight"] = get(q + "mlp.c_proj.weight", (hidden, c)).T
        if cfg.bias:
            sd[p + "ln1.bias"] = get(q + "ln_1.bias", (c,))
            sd[p + "attn.in_proj_bias"] = get(q + "attn.c_attn.bias", (3 * c,))
            sd[p + "attn.out_proj.bias"] = get(q + "attn.c_proj.bias", (c,))
            sd[p + "ln2.bias"] = get(q + "ln_2.bias", (c,))
            sd[p + "ff.0.bias"] = get(q + "mlp.c_fc.bias", (hidden,))
            sd[p + "ff.2.bias"] = get(q + "mlp.c_proj.bias", (c,))
    sd["ln_f.weight"] = get("ln_f.weight", (c,))
    if cfg.bias:
        sd["ln_f.bias"] = get("ln_f.bias", (c,))
    if cfg.tie_weights:
        sd["head.weight"] = sd["tok_embed.weight"]
    else:
        head = "lm_head.weight" if "lm_head.weight" in w else "wte.weight"  # no lm_head: transformers ties it
        sd["head.weight"] = get(head, (cfg.vocab_size, c))
    return {k: np.ascontiguousarray(v) for k, v in sd.items()}


def load_pretrained(folder: "str | Path", device: str = "cpu") -> Any:
    """A TinyGPT from a local Hugging Face GPT-2 folder (config.json + model.safetensors; never a pickle)."""
    import minigrad as mg
    from tinygpt.model import TinyGPT
    folder = Path(folder)
    cfg = tinygpt_config(_read_config(folder), folder / "config.json")
    state = tinygpt_state(_read_weights(folder), cfg, folder / "model.safetensors")
    model = TinyGPT(cfg)
    model.load_state_dict({k: mg.Tensor(v) for k, v in state.items()})
    model.to(device)
    model.eval()
    return model


def load_pretrained_tokenizer(folder: "str | Path") -> Any:
    """The tokenizer of a folder's tokenizer.json: a byte-level BPE (bpe.Tokenizer; a byte run's
    export is one, with byte-valued ids), or the WordLevel file a char run exports (CharTokenizer)."""
    import bpe
    from tinygpt.text_tokenizers import CharTokenizer
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise ExportError(f"{Path(folder)} has no tokenizer.json")
    data = _read_json(path)
    model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, dict) and model.get("type") == "WordLevel" and data.get("decoder") == {"type": "Fuse"}:
        vocab = model.get("vocab")
        if isinstance(vocab, dict) and all(isinstance(c, str) and len(c) == 1 for c in vocab) \
                and sorted(vocab.values()) == list(range(len(vocab))) and sorted(vocab) == list(vocab):
            return CharTokenizer(vocab)
        raise ExportError(f"{path}: a WordLevel tokenizer that is not one character per id in order")
    try:
        return bpe.Tokenizer.load(path)
    except ValueError as e:
        raise ExportError(" ".join(str(e).splitlines())) from None


def build_parser() -> Parser:
    p = Parser(prog="python -m tinygpt.export",
               description="Write a run (pre-norm presets) as a Hugging Face transformers folder: "
                           "GPT2LMHeadModel.from_pretrained(DIR) and AutoTokenizer.from_pretrained(DIR) load it.")
    p.add_argument("--run", required=True, help="run folder written by tinygpt.train (runs/NAME)")
    p.add_argument("--out", required=True, help="folder to write (must be missing or empty, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    return p


def main(argv: "list[str] | None" = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        out = export(args.run, args.out, args.overwrite)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (UsageError, ValueError, OSError) as e:
        msg = " ".join(str(e).splitlines()) or type(e).__name__
        if isinstance(e, OSError) and e.strerror:
            msg = f"{e.strerror}: {e.filename}" if e.filename else e.strerror
        print(f"error: {msg}", file=sys.stderr)
        return 2
    print(f"wrote {out} (GPT2LMHeadModel + tokenizer); load it with "
          f"transformers.GPT2LMHeadModel.from_pretrained({str(out)!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
