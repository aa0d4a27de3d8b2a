"""Packing at per_device_batch_size 2 under flash attention, run on the CPU through transformers' own
flash-attention dispatch (`_flash_attention_forward`) with a pure-torch stand-in for the flash-attn kernels.

transformers treats position resets as example boundaries on its flash path only for a batch of one row; at
two rows it runs plain causal attention over each row, and packed examples see each other. The stand-in
computes exactly what flash-attn's `flash_attn_func` / `flash_attn_varlen_func` compute (causal attention
per sequence), so the dispatch decision, which is what differs between batch sizes, is transformers' own.
"""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from distill.errors import DistillError
from distill.sft.packing import PackedCollator, check_packing, collator_for

NAME = "torch_reference_varlen"  # no "flash" in it: transformers would look for the flash-attn package


def _attend(q, k, v, causal, scale):  # one sequence, [tokens, heads, dim]
    if k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    out = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
                                         is_causal=causal, scale=scale)
    return out[0].transpose(0, 1)


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, **_):
    return torch.stack([_attend(q[b], k[b], v[b], causal, softmax_scale) for b in range(q.shape[0])])


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None, dropout_p=0.0,
                           softmax_scale=None, causal=False, **_):
    bounds = cu_seqlens_q.tolist()
    return torch.cat([_attend(q[a:b], k[a:b], v[a:b], causal, softmax_scale) for a, b in itertools.pairwise(bounds)])


@pytest.fixture(scope="module")
def flash_style_model(tiny_model):
    """bundled:tiny on transformers' flash-attention path with the stand-in kernels."""
    import transformers.modeling_flash_attention_utils as fa
    from transformers import AttentionInterface, AttentionMaskInterface, AutoModelForCausalLM
    from transformers.integrations.flash_attention import flash_attention_forward
    from transformers.masking_utils import flash_attention_mask

    saved = {k: getattr(fa, k) for k in ("_loaded_implementation", "_flash_fn", "_flash_varlen_fn",
                                         "_flash_with_kvcache_fn", "_pad_fn", "_unpad_fn", "_process_flash_kwargs_fn",
                                         "_process_with_kvcache_kwargs_fn")}
    # What transformers' lazy import would set for a kernel providing these two functions.
    fa._loaded_implementation, fa._flash_fn, fa._flash_varlen_fn = NAME, flash_attn_func, flash_attn_varlen_func
    fa._flash_with_kvcache_fn, fa._pad_fn, fa._unpad_fn = None, fa._pad_input, fa._unpad_input
    fa._process_flash_kwargs_fn = fa._lazy_define_process_function(flash_attn_varlen_func)
    fa._process_with_kvcache_kwargs_fn = dict
    AttentionInterface.register(NAME, flash_attention_forward)
    AttentionMaskInterface.register(NAME, flash_attention_mask)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation=NAME)
    torch.manual_seed(0)
    with torch.no_grad():  # a non-trivial model: random init gives near-uniform logits
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    yield model
    for key, value in saved.items():
        setattr(fa, key, value)


def test_two_packed_rows_leak_on_the_flash_path_and_one_flattened_row_does_not(flash_style_model):
    with pytest.raises(DistillError, match="at a batch of 2 row"):  # the contamination, caught by the check
        check_packing(flash_style_model, PackedCollator(pad_token_id=0))
    result = check_packing(flash_style_model, PackedCollator(pad_token_id=0, flatten=True))
    assert result["rows"] == 1 and result["packed_vs_alone"] < 1e-4 < result["contaminated_vs_alone"]


def test_the_trainer_flattens_batches_for_varlen_kernels_only(tiny_model):
    from transformers import AutoModelForCausalLM

    assert collator_for(0, "flash_attention_2").flatten and collator_for(0, "kernels-community/flash-attn3").flatten
    assert not collator_for(0, "sdpa").flatten
    rows = [{"input_ids": [5, 6, 7, 8, 9], "labels": [-100, 6, 7, 8, 9], "seq_lengths": [3, 2]},
            {"input_ids": [10, 11, 12], "labels": [-100, 11, 12], "seq_lengths": [3]}]
    batch = collator_for(0, "flash_attention_2")(rows)
    assert batch["input_ids"].shape == (1, 8) and batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2]]
    assert batch["num_real_tokens"] == batch["num_padded_tokens"] == 8  # no padding at all
    assert batch["labels"][0].tolist() == [-100, 6, 7, -100, 9, -100, 11, 12]
    assert batch["num_supervised_tokens"] == 5
    # sdpa keeps separate rows, and separates packed examples at a batch of 2 (its mask is per row)
    sdpa = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa")
    assert check_packing(sdpa, collator_for(0, "sdpa"))["rows"] == 2
