"""python -m tinygpt.export and TinyGPT.from_pretrained against Hugging Face transformers (offline):
logits to 1e-5, greedy generations token for token, the tokenizers' ids, an exact round trip,
one-line refusals."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import bpe
import minigrad as mg
import tinygpt
from tinygpt import TinyGPT, preset
from tinygpt.checkpoint import save_checkpoint
from tinygpt.config import GPTConfig
from tinygpt.export import ExportError, main
from tinygpt.generate import generate_ids
from tinygpt.text_tokenizers import ByteTokenizer, CharTokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak. Ça va? 😀\n" * 4

CONFIGS = {
    # the nanoGPT baby GPT: pre-norm, tied head, no biases, exact GELU
    "char": lambda v: preset("shakespeare-char", vocab_size=v, n_embd=32, n_layers=2, block_size=32),
    # biases, untied head, tanh GELU, PyTorch's default init (large logits)
    "bpe": lambda v: GPTConfig(vocab_size=v + 3, block_size=24, n_embd=32, n_heads=4, n_layers=2, norm="pre",
                               gelu="tanh", bias=True, tie_weights=False, init="torch", ffn_mult=3),
    "byte": lambda v: GPTConfig(vocab_size=v, block_size=16, n_embd=16, n_heads=2, n_layers=1, norm="pre",
                                gelu="none", bias=True, tie_weights=True, init="nanogpt"),
}


def tokenizer(kind: str):
    if kind == "char":
        return CharTokenizer.train(TEXT)
    if kind == "byte":
        return ByteTokenizer()
    return bpe.train([TEXT], vocab_size=300)


def make_run(folder, cfg, tok, seed=0):
    model = TinyGPT(cfg)
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():  # every weight, biases and LayerNorms included, nonzero
        p.data[...] = rng.normal(0, 0.02 if cfg.init == "nanogpt" else 0.5, p.shape).astype(p.data.dtype)
    opt = mg.optim.AdamW(model.parameters(), lr=1e-3)
    save_checkpoint(folder, model, opt, tok, cfg, {"state": {"step": 0}})
    model.eval()
    return model


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    out = {}
    for i, kind in enumerate(CONFIGS):
        tok = tokenizer(kind)
        model = make_run(base / kind, CONFIGS[kind](tok.vocab_size), tok, seed=i)
        out[kind] = (base / kind, model, tok)
    return out


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    base = tmp_path_factory.mktemp("hf")
    out = {}
    for kind, (run, _, _) in runs.items():
        assert main(["--run", str(run), "--out", str(base / kind)]) == 0
        out[kind] = base / kind
    return out


@pytest.fixture(scope="module")
def transformers():
    os.environ["HF_HUB_OFFLINE"] = "1"
    return pytest.importorskip("transformers")


def test_folder_has_the_files_and_nothing_temporary(exported):
    for folder in exported.values():
        assert sorted(p.name for p in folder.iterdir()) == [
            "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
        assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]
    config = json.loads((exported["char"] / "config.json").read_text())
    assert config["activation_function"] == "gelu" and config["tie_word_embeddings"] is True
    config = json.loads((exported["bpe"] / "config.json").read_text())
    assert config["activation_function"] == "gelu_new" and config["tie_word_embeddings"] is False


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_logits_and_greedy_generation_match_transformers(runs, exported, transformers, kind):
    import torch
    _, model, tok = runs[kind]
    hf = transformers.GPT2LMHeadModel.from_pretrained(exported[kind]).eval()
    rng = np.random.default_rng(1)
    ids = rng.integers(0, tok.vocab_size, (2, model.cfg.block_size))
    ours = model(ids).numpy()
    with torch.no_grad():
        theirs = hf(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)
    prompt = tok.encode("Speak, speak.")[:5]
    n = model.cfg.block_size - len(prompt)
    new = generate_ids(model, prompt, n, np.random.default_rng(0), greedy=True)
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, min_new_tokens=n,
                          pad_token_id=0, eos_token_id=None)
    assert new == out[0, len(prompt):].tolist()


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_auto_tokenizer_gives_the_runs_ids(runs, exported, transformers, kind):
    _, _, tok = runs[kind]
    hf = transformers.AutoTokenizer.from_pretrained(exported[kind])
    for text in (TEXT, "Before we proceed", "\n\n", "Ça va? 😀"):
        ids = tok.encode(text)
        assert hf.encode(text, add_special_tokens=False) == ids
        assert hf.decode(ids) == tok.decode(ids) == text


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_round_trip_through_from_pretrained_is_exact(runs, exported, kind):
    _, model, _ = runs[kind]
    back = TinyGPT.from_pretrained(exported[kind])
    assert back.cfg == model.cfg
    a, b = model.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k
    ids = np.arange(8).reshape(1, 8) % model.cfg.vocab_size
    assert np.array_equal(model(ids).numpy(), back(ids).numpy())


def test_from_pretrained_reads_a_folder_transformers_saved(runs, exported, transformers, tmp_path):
    _, model, _ = runs["bpe"]
    hf = transformers.GPT2LMHeadModel.from_pretrained(exported["bpe"])
    hf.save_pretrained(tmp_path / "saved")  # transformers' own file: its key names, no tinygpt section
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    config.pop("tinygpt", None)
    (tmp_path / "saved" / "config.json").write_text(json.dumps(config))
    back = TinyGPT.from_pretrained(tmp_path / "saved")
    ids = np.arange(10).reshape(1, 10)
    np.testing.assert_allclose(back(ids).numpy(), model(ids).numpy(), atol=1e-6)


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_post_norm_tutorial_model_is_refused_with_one_line(tmp_path, capsys):
    tok = CharTokenizer.train(TEXT)
    make_run(tmp_path / "run", preset("tutorial", vocab_size=tok.vocab_size, n_embd=16, n_layers=1), tok)
    assert main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 2
    err = one_line(capsys)
    assert "post-norm" in err and "transformers has no class" in err
    assert not (tmp_path / "hf").exists()


def test_bad_paths_and_existing_output_are_one_line(runs, tmp_path, capsys):
    run = str(runs["char"][0])
    assert main(["--run", str(tmp_path / "nope"), "--out", str(tmp_path / "a")]) == 2
    assert "nope" in one_line(capsys)
    (tmp_path / "file").write_text("x")
    assert main(["--run", run, "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in one_line(capsys)
    assert main(["--run", run, "--out", str(tmp_path / "file" / "deeper")]) == 2
    assert "is a file" in one_line(capsys)
    assert main(["--run", run, "--out", str(tmp_path / "new" / "deeper")]) == 0  # parents are created
    assert (tmp_path / "new" / "deeper" / "config.json").is_file()
    capsys.readouterr()
    assert main(["--run", run, "--out", run]) == 2
    assert "run folder" in one_line(capsys)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    assert main(["--run", run, "--out", str(full)]) == 2
    assert "--overwrite" in one_line(capsys)
    assert (full / "keep.txt").read_text() == "mine"
    assert main(["--run", run, "--out", str(full), "--overwrite"]) == 0
    assert not (full / "keep.txt").exists() and (full / "model.safetensors").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--run", run, "--out", str(empty)]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_from_pretrained_refusals_name_the_problem(exported, tmp_path):
    with pytest.raises(ExportError, match="no such folder"):
        TinyGPT.from_pretrained(tmp_path / "nope")
    folder = tmp_path / "pickle"
    folder.mkdir()
    (folder / "config.json").write_text((exported["char"] / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x02not really")
    with pytest.raises(ExportError, match="pickle"):
        TinyGPT.from_pretrained(folder)
    config = json.loads((exported["char"] / "config.json").read_text())
    config["activation_function"] = "relu"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="activation_function 'relu'"):
        TinyGPT.from_pretrained(folder)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_the_exported_tokenizer_loads_back_with_the_same_ids(runs, exported, kind):
    from tinygpt.export import load_pretrained_tokenizer
    _, _, tok = runs[kind]
    back = load_pretrained_tokenizer(exported[kind])
    for text in (TEXT, "Ça va? 😀", ""):
        assert back.encode(text) == tok.encode(text)
        assert back.decode(tok.encode(text)) == text


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_train_init_from_starts_from_the_exported_weights(runs, exported, kind, tmp_path, capsys):
    """python -m tinygpt.train --init-from DIR: a new run whose step-0 weights are the folder's."""
    from tinygpt import train
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 3, encoding="utf-8")
    out = tmp_path / "run"
    argv = ["--init-from", str(exported[kind]), "--data", str(corpus), "--out", str(out), "--cache-dir",
            str(tmp_path / "cache"), "--no-progress", "--max-steps", "1", "--lr", "1e-9", "--batch-size", "2",
            "--block-size", "8", "--eval-batches", "1", "--sample-tokens", "2", "--grad-clip", "0",
            "--weight-decay", "0"]
    assert train.main(argv) == 0, capsys.readouterr().err
    _, source, _ = runs[kind]
    trained, _ = tinygpt.load(out)
    assert trained.cfg == source.cfg
    for (name, a), b in zip(trained.state_dict().items(), source.state_dict().values()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=name)  # one step of lr 1e-9
    capsys.readouterr()
    assert train.main(["--init-from", str(exported[kind]), "--resume", str(out), "--no-progress"]) == 2
    assert "cannot be used with --resume" in capsys.readouterr().err
    assert train.main(["--init-from", str(tmp_path / "nope"), "--data", str(corpus), "--out", str(tmp_path / "x"),
                       "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --init-from")
