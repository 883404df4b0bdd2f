"""Tokenized batches of the shipped corpus for a text model."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from laimco.models.loading import LoadedModel


def text_batches(loaded: LoadedModel, sentences: Sequence[str], batch_size: int = 64,
                 max_length: int = 128) -> Iterator[dict[str, torch.Tensor]]:
    """Padded batches {input_ids, attention_mask} of `sentences` for `loaded`'s tokenizer."""
    if loaded.tokenizer is None:
        raise ValueError(f"{loaded.name} has no tokenizer: text batches need a text model")
    for start in range(0, len(sentences), batch_size):
        tokens = loaded.tokenizer(list(sentences[start:start + batch_size]), padding=True,
                                  truncation=True, max_length=max_length, return_tensors="pt")
        yield {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
