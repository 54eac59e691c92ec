"""bpe: a pure-Python byte-level BPE trainer and tokenizer with Hugging Face tokenizer.json parity."""
from .added import AddedToken
from .pretokenize import GPT2_PATTERN, GPT4_PATTERN, split
from .tokenizer import Tokenizer
from .tokenizer_json import TokenizerFileError
from .trainer import TrainStats, train

__all__ = ["train", "Tokenizer", "AddedToken", "TokenizerFileError", "TrainStats", "split", "GPT2_PATTERN", "GPT4_PATTERN"]
