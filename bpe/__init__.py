"""bpe: a pure-Python byte-level BPE trainer and tokenizer with Hugging Face tokenizer.json parity."""
from bpe.added import AddedToken
from bpe.pretokenize import GPT2_PATTERN, GPT4_PATTERN, split
from bpe.tokenizer import Tokenizer
from bpe.tokenizer_json import TokenizerFileError
from bpe.trainer import TrainStats, train

__all__ = ["train", "Tokenizer", "AddedToken", "TokenizerFileError", "TrainStats", "split", "GPT2_PATTERN", "GPT4_PATTERN"]
