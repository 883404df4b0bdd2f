"""Which positions the server part runs (laimco.runtime.padding): cut after the last real token
of a pass, for the families whose output cannot depend on those positions. That the server's
answers stay those of every position run is checked in tests/test_runtime_batching.py (against
the in-process pruned parts)."""

from __future__ import annotations

import numpy as np
import pytest

from laimco.runtime.padding import cut_to_positions, trims_padding, used_positions


@pytest.mark.parametrize(("family", "expected"), [("bert", True), ("gpt2", False),
                                                  ("llama", False), ("vit", False)])
def test_only_pooled_text_families_cut_padding(family, expected):
    # bert: mean over the mask (docs/runtime.md); gpt2/llama: logits at every position are the
    # output; vit: no mask
    assert trims_padding(family) is expected


def test_used_positions_is_one_past_the_last_real_token_of_any_request():
    first = np.array([[1, 1, 1, 0, 0, 0, 0, 0]])
    second = np.array([[1, 1, 1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]])
    assert used_positions([first]) == 3
    assert used_positions([first, second]) == 5
    assert used_positions([np.ones((1, 8), dtype=np.int64)]) == 8


def test_a_mask_with_a_hole_keeps_everything_up_to_its_last_real_token():
    assert used_positions([np.array([[1, 0, 0, 1, 0, 0]])]) == 4


def test_an_all_padding_pass_keeps_one_position():
    assert used_positions([np.zeros((2, 6), dtype=np.int64)]) == 1


def test_cut_keeps_the_leading_positions_of_every_sequence_tensor_only():
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((2, 8, 4)).astype(np.float32)
    mask = np.zeros((2, 8), dtype=np.int64)
    mask[0, :3] = 1
    mask[1, :5] = 1
    scales = np.ones(4, dtype=np.float32)  # not a sequence tensor: left alone
    cut = cut_to_positions({"hidden_states": hidden, "attention_mask": mask, "s": scales}, 5)
    assert cut["hidden_states"].shape == (2, 5, 4)
    np.testing.assert_array_equal(cut["hidden_states"], hidden[:, :5])
    np.testing.assert_array_equal(cut["attention_mask"], mask[:, :5])
    assert cut["s"] is scales
    same = {"hidden_states": hidden, "attention_mask": mask}
    assert cut_to_positions(same, 8) is same
