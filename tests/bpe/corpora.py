"""Test corpora: the tinyshakespeare path and a generated multilingual text."""
import random
from pathlib import Path

SHAKESPEARE = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare.txt"

WORDS = [
    "the", "The", "and", "don't", "I'LL", "we've", "she's", "Hello", "world", "naïve", "café", "Straße",
    "über", "Größe", "привет", "мир", "Москва", "καλημέρα", "κόσμε", "你好", "世界", "中文字符", "日本語",
    "ひらがな", "カタカナ", "مرحبا", "بالعالم", "नमस्ते", "दुनिया", "한국어", "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "e\u0301",
    "1000000", "3.14159", "42", "2024-01-01", "$100", "x²", "½", "٣٤٥", "...", "!!", "?!", "--", "(a)",
    "[b]", "{c}", "@user", "#tag", "a_b", "snake_case", "CamelCase", "tab\tsep", "non\u00a0break",
]
SEPARATORS = [" ", " ", " ", "  ", "\t", ", ", ". ", "   "]
LINE_ENDS = ["\n", "\n", "\n", "\r\n", "  \n", "\n\n", " \n"]


def multilingual_text(n_lines: int = 1500, seed: int = 0) -> str:
    """A deterministic text mixing scripts, emoji, digits, contractions, \\r\\n and odd whitespace."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        parts = []
        for _ in range(rng.randint(0, 12)):
            parts.append(rng.choice(WORDS))
            parts.append(rng.choice(SEPARATORS))
        lines.append("".join(parts).rstrip(" ") + rng.choice(LINE_ENDS))
    return "".join(lines)
