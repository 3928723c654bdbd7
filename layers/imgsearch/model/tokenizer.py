"""Text tokenisation with the Hugging Face ``tokenizers`` library.

The bundle's ``tokenizer.json`` carries the normaliser, the vocabulary and the post-processor
that adds the start and end-of-text tokens. Sequences are truncated to the context length (the
end-of-text token is kept: the text tower pools at it) and padded only to the longest text of the
batch, never to the full context: the towers are causal, so the padding changes nothing::

    tokenizer = TextTokenizer.from_file(path, context_length=77, pad_token_id=49407)
    ids = tokenizer(["a red circle", "two blue squares"])   # int64 (2, longest)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from imgsearch.model.errors import BundleError


class TextTokenizer:
    def __init__(self, tokenizer: Tokenizer, context_length: int, pad_token_id: int) -> None:
        self.context_length = context_length
        self.pad_token_id = pad_token_id
        self._tokenizer = tokenizer
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=context_length)

    @classmethod
    def from_file(cls, path: Path, context_length: int, pad_token_id: int) -> TextTokenizer:
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise BundleError(str(path), f"not a valid tokenizers file: {exc}") from exc
        return cls(tokenizer, context_length, pad_token_id)

    def __call__(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        longest = max((len(e.ids) for e in encodings), default=0)
        ids = np.full((len(texts), longest), self.pad_token_id, dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
        return ids
