"""What `laimco deploy` feeds the split and how it compares and times it: the held-out inputs,
the rows the quality metrics compare, the metrics, and the paired dense/pruned timing behind the
emulation (docs/runtime.md, "`laimco deploy`")."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from laimco.runtime.deploy_output import DeployError

if TYPE_CHECKING:
    from laimco.models.split import Crossing

IMAGE_SEED = 20240607  # the synthetic held-out / calibration images of a ViT deployment


def per_token_output(family: str) -> bool:
    """Whether the family's output is one row per token (a language model's logits)."""
    from laimco.models.families import family_adapter

    return family_adapter(family).output_per_token


def held_out_inputs(loaded: Any, count: int, seq_len: int, *, calibration: bool = False
                    ) -> list[Crossing]:
    """One input per request, exactly as the device sends it: a text model's held-out (or
    calibration) sentences, each tokenized and padded to `seq_len` (the profile's sequence
    length, so the upload is the profile's S); for a ViT, `count` seeded N(0, 1) images (no
    image set is shipped; a deployment measures the split, not the task)."""
    import torch

    from laimco.data import calibration_sentences, heldout_sentences

    if not loaded.adapter.takes_text:
        config = loaded.config
        generator = torch.Generator().manual_seed(IMAGE_SEED + int(calibration))
        images = torch.randn(count, int(config.num_channels), int(config.image_size),
                             int(config.image_size), generator=generator)
        return [{"pixel_values": images[i:i + 1]} for i in range(count)]
    if loaded.tokenizer is None:
        raise DeployError(f"{loaded.name} has no tokenizer: deploy a text model from a folder "
                          "with its tokenizer files")
    texts = (calibration_sentences() if calibration else heldout_sentences())[:count]
    inputs = []
    for text in texts:
        tokens = loaded.tokenizer([text], padding="max_length", truncation=True,
                                  max_length=seq_len, return_tensors="pt")
        inputs.append({"input_ids": tokens["input_ids"],
                       "attention_mask": tokens["attention_mask"]})
    return inputs


def compared_rows(output: Any, batch: Crossing, family: str) -> np.ndarray[Any, Any]:
    """What the quality metrics compare, one row per item: the output itself (embedding or
    [CLS] state, [B, H]), or for a language model the logits of the real tokens only
    ([tokens, V]: padding positions carry no prediction, and their logits differ between
    paddings)."""
    array = np.asarray(output, dtype=np.float32)
    if per_token_output(family):
        mask = np.asarray(batch["attention_mask"]).astype(bool)
        return np.asarray(array[mask])
    return array


def quality_metrics(reference: Any, other: Any, k: int, family: str) -> dict[str, float]:
    """Output distortion and mean cosine of `other` against `reference`, with top-1 agreement
    (language models) or retrieval agreement at k (embeddings, two rows or more)."""
    from laimco.measure.metrics import (
        mean_cosine_similarity,
        output_distortion,
        retrieval_agreement_at_k,
        top1_agreement,
    )

    out = {"output_distortion": output_distortion(reference, other),
           "mean_cosine": mean_cosine_similarity(reference, other)}
    n = int(reference.shape[0])
    if per_token_output(family):
        out["top1_agreement"] = top1_agreement(reference, other)
    elif n >= 2:
        out[f"retrieval_agreement_at_{min(k, n - 1)}"] = retrieval_agreement_at_k(
            reference, other, min(k, n - 1))
    return out




@dataclass(frozen=True)
class PairedTimes:
    """One input through the dense and the pruned parts back to back in this process (s)."""

    device_dense_s: float
    server_dense_s: float
    device_pruned_s: float
    server_pruned_s: float

    def pruned_over_dense(self, side: str) -> float:
        """t_pruned / t_dense of the "device" or "server" part."""
        if side == "device":
            return self.device_pruned_s / self.device_dense_s
        return self.server_pruned_s / self.server_dense_s


class PairedProbe:
    """Times the dense and the pruned parts back to back in this process on one input (which
    of the two goes first alternates between calls)."""

    def __init__(self, loaded: Any, split: int, pruned: Any) -> None:
        from laimco.models.split import split_model

        self.split, self.n_units = split, loaded.n_units
        dense_device, dense_server = split_model(loaded, split)
        self.parts = {"dense": (dense_device, dense_server),
                      "pruned": (pruned.device, pruned.server)}
        self.calls = 0

    def time(self, batch: Crossing) -> PairedTimes:
        import torch

        order = ("dense", "pruned") if self.calls % 2 == 0 else ("pruned", "dense")
        self.calls += 1
        times = {}
        with torch.no_grad():
            for kind in order:
                device, server = self.parts[kind]
                start = time.perf_counter()
                crossing = device(batch)
                middle = time.perf_counter()
                server(crossing)
                times[f"device_{kind}_s"] = middle - start
                times[f"server_{kind}_s"] = time.perf_counter() - middle
        return PairedTimes(**times)


