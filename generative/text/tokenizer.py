"""A word-level tokenizer whose vocabulary is the words of the training captions, kept as plain JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from robot_env.io.errors import ConfigError, DataError, ParamError

__all__ = ["PAD", "SPECIALS", "UNK", "Vocabulary", "words"]

PAD, UNK, CLS = "<pad>", "<unk>", "<cls>"
#: The special tokens, ids 0, 1, 2: padding, unknown words, and the first token of every caption (the empty
#: caption is ``<cls>`` alone: classifier-free guidance's "no text").
SPECIALS = (PAD, UNK, CLS)
_WORD = re.compile(r"[a-z]+")


def words(text: str) -> list[str]:
    """The lower-case words of ``text`` (letters only; digits and punctuation separate words)."""
    return _WORD.findall(str(text).lower())


class Vocabulary:
    """Word -> id. ``encode(texts, max_len)`` gives ``(N, max_len)`` long ids: ``<cls>``, the words (unknown words
    -> ``<unk>``), ``<pad>`` up to ``max_len`` (longer captions are cut). ``to_json`` / ``from_json`` keep it as a
    list of words (never pickled)."""

    def __init__(self, tokens: Sequence[str], max_len: int = 32):
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ConfigError(f"a vocabulary starts with {', '.join(SPECIALS)}, got {tokens[:3]!r}")
        if len(tokens) <= len(SPECIALS):
            raise ConfigError("the vocabulary is empty: it needs the words of at least one caption")
        if int(max_len) < 2:
            raise ConfigError(f"max_len must be at least 2, got {max_len}")
        self.tokens = tokens
        self.max_len = int(max_len)
        self.index = {w: i for i, w in enumerate(tokens)}

    @classmethod
    def build(cls, texts: Iterable[str], max_len: int | None = None) -> Vocabulary:
        """The vocabulary of ``texts`` (words sorted); ``max_len`` (default: the longest caption + 1 for
        ``<cls>``)."""
        found: set[str] = set()
        longest = 0
        for t in texts:
            w = words(t)
            found.update(w)
            longest = max(longest, len(w))
        return cls([*SPECIALS, *sorted(found)], max_len if max_len is not None else max(2, longest + 1))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, texts: str | Sequence[str]) -> torch.Tensor:
        """``(N, max_len)`` long token ids of one text or a list of them."""
        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), self.max_len, dtype=torch.long)
        unk = self.index[UNK]
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ParamError("prompt", f"a {{name}} is text, got {type(t).__name__} {t!r:.40}")
            ids = [self.index[CLS]] + [self.index.get(w, unk) for w in words(t)]
            ids = ids[: self.max_len]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def prompts(self, prompt: str | Sequence[str], n: int) -> torch.Tensor:
        """``(n, max_len)`` token ids of one prompt for every image or one per image; a `ParamError` (``prompt``)
        for a prompt that is not text or a wrong count."""
        if isinstance(prompt, str):
            prompt = [prompt]
        if not isinstance(prompt, (list, tuple)) or not all(isinstance(p, str) for p in prompt):
            raise ParamError("prompt", f"a {{name}} is text (or one text per image), got {type(prompt).__name__}")
        if len(prompt) not in (1, int(n)):
            raise ParamError("prompt", f"{len(prompt)} {{name}}s for {n} images: give one, or one per image")
        tok = self.encode(list(prompt))
        return tok.expand(int(n), -1).clone() if len(tok) == 1 else tok

    def unknown(self, text: str) -> list[str]:
        """The words of ``text`` the vocabulary does not know (they become ``<unk>``)."""
        return [w for w in words(text) if w not in self.index]

    def to_json(self) -> dict:
        return {"tokens": list(self.tokens), "max_len": self.max_len}

    @classmethod
    def from_json(cls, d: dict) -> Vocabulary:
        if not isinstance(d, dict) or not isinstance(d.get("tokens"), list):
            raise DataError("a vocabulary is a JSON object with a list of tokens")
        return cls([str(t) for t in d["tokens"]], int(d.get("max_len", 32)))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return path
