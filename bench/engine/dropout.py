"""Dropout with cheaper random masks on the CPU, swapped in for the length of a training run.

torch's CPU dropout draws one Bernoulli number per element (``bernoulli_``); in the
cpu-profile T5 that was a fifth of a training step's time (24 masks per step), more than
any matrix multiply. :func:`cheap_dropout` draws 64 random bits at a time and cuts them
into four 16-bit numbers, one per element: the same kind of mask (each element kept
independently with probability 1 - p, the kept ones scaled by 1 / (1 - p)), with p rounded
to a multiple of 2^-16 (0.1 becomes 0.1000061), at about a third of the cost. It draws from
torch's default generator, whose state the training checkpoints keep, so a resumed run
draws the same masks.

Two places get it: every ``torch.nn.Dropout`` module (:class:`CheapMaskDropout`), and, in a
T5, the dropout of the attention weights, which transformers' SDPA attention leaves to
``scaled_dot_product_attention(dropout_p=...)``: on the CPU that runs torch's unfused path
(a ``bernoulli_`` mask and a "safe" softmax that scans every row for -inf), ~10% of a
cpu-profile step. :func:`_t5_training_attention` computes the same attention (scores +
position bias + mask, softmax, dropout of the weights, times the values) with the cheap mask,
in a T5 model or in the T5 stacks a wrapper holds (SETRec's encoder and decoder). It does so at
``dropout_rate=0`` too: with an additive bias that needs a gradient (T5's position bias) torch's
CPU SDPA is slow (SETRec's encoder shape, 128 x 4 heads x 116 tokens, forward and backward: 130
ms in bf16 against 47 ms for the explicit path; 104 against 91 ms in fp32).
A T5 feed-forward block also casts its dropped-out hidden state to ``wo``'s fp32 before
``wo``, which bf16 autocast casts straight back (an exact round trip, ~7% of a cpu-profile
step in copies forward and backward): :func:`_t5_feed_forward` skips it under autocast.
"""

from __future__ import annotations

import contextlib
import types
from typing import Any, Iterator

import torch

LEVELS = 1 << 16
_T5_TRAINING_ATTENTION = "genrec_cheap_dropout_attention"


def _keep_threshold(p: float) -> int:
    """Keep an element when its signed 16-bit draw is at least this (P = 1 - p)."""
    return -(LEVELS // 2) + round(p * LEVELS)


def cheap_dropout(hidden: torch.Tensor, p: float) -> torch.Tensor:
    """``hidden`` with each element kept with probability 1 - p (scaled by 1 / (1 - p)), else 0."""
    n = hidden.numel()
    draws = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64, device=hidden.device)
    keep = draws.view(torch.int16)[:n].view(hidden.shape) >= _keep_threshold(p)
    # Cast through uint8, the same 0s and 1s: torch's CPU cast from bool to bfloat16 is not
    # vectorised and took ten times as long as from uint8 (22.9 against 8.4 ms for compare and cast,
    # 10.6 M elements, one thread).
    keep = keep.view(torch.uint8).to(hidden.dtype)
    if hidden.dtype == torch.float32:
        # The mask carries the scale: one product (the same numbers as scaling after it).
        return hidden * keep.mul_(1.0 / (1.0 - p))
    # Lower precision: scale after masking, so the scale is not rounded to the dtype first.
    # In place on the product, which backward does not need (it keeps only the mask).
    return (hidden * keep).mul_(1.0 / (1.0 - p))


class CheapMaskDropout(torch.nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return hidden
        return cheap_dropout(hidden, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _t5_training_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                           position_bias: torch.Tensor | None = None, **kwargs: Any):
    """T5 attention in training: the explicit path, with the cheap mask on its weights when
    dropout applies (without dropout too: torch's CPU SDPA with T5's additive position bias,
    which needs a gradient, ran its slow unfused path); SDPA's own outside training."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not module.training:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      position_bias=position_bias, **kwargs)
    scores = torch.matmul(query, key.transpose(2, 3))
    if scaling is not None and scaling != 1.0:
        scores = scores * scaling
    if position_bias is not None:
        scores = scores + position_bias
    if attention_mask is None and query.shape[2] > 1 and kwargs.get("is_causal", getattr(module, "is_causal", True)):
        # What SDPA does for is_causal (transformers skips a causal mask without padding).
        attention_mask = torch.ones(query.shape[2], key.shape[2], dtype=torch.bool, device=query.device).tril()
    if attention_mask is not None:
        # SDPA's masks: True = attend; a float mask is already additive.
        scores = (scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
                  if attention_mask.dtype == torch.bool else scores + attention_mask)
    weights = torch.softmax(scores.float(), dim=-1).to(value.dtype)
    if dropout > 0.0:
        weights = cheap_dropout(weights, dropout)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, None


def _t5_feed_forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    """``T5DenseActDense.forward`` without the fp32 round trip of its hidden state under autocast."""
    hidden_states = self.dropout(self.act(self.wi(hidden_states)))
    if not torch.is_autocast_enabled(hidden_states.device.type) and hidden_states.dtype != self.wo.weight.dtype:
        hidden_states = hidden_states.to(self.wo.weight.dtype)
    return self.wo(hidden_states)


@contextlib.contextmanager
def _t5_training_paths(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block a T5's attention and feed-forward blocks take the paths above."""
    from transformers.models.t5.modeling_t5 import T5DenseActDense

    feed_forwards = [module for module in model.modules() if type(module) is T5DenseActDense]
    try:
        for module in feed_forwards:
            module.forward = types.MethodType(_t5_feed_forward, module)
        with _t5_attention_with_cheap_dropout(model):
            yield
    finally:
        for module in feed_forwards:
            del module.forward  # the class's own forward again


def _t5_models_on_sdpa(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The outermost T5 models in ``model`` (itself, or the stacks a wrapper holds, as SETRec's
    encoder and decoder) whose attention is transformers' SDPA."""
    found: list[torch.nn.Module] = []
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside:
            continue
        config = getattr(module, "config", None)
        if (getattr(config, "model_type", None) == "t5" and getattr(config, "_attn_implementation", None) == "sdpa"
                and hasattr(module, "set_attn_implementation")):
            found.append(module)
            inside.update(id(sub) for sub in module.modules())
    return found


@contextlib.contextmanager
def _t5_attention_with_cheap_dropout(model: torch.nn.Module) -> Iterator[bool]:
    """Inside the block every T5 on SDPA attention in ``model`` uses :func:`_t5_training_attention`
    (yields whether one does)."""
    models = _t5_models_on_sdpa(model)
    if not models:
        yield False
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(_T5_TRAINING_ATTENTION, _t5_training_attention)
    AttentionMaskInterface.register(_T5_TRAINING_ATTENTION, sdpa_mask)
    try:
        for t5 in models:
            t5.set_attn_implementation(_T5_TRAINING_ATTENTION)
        yield True
    finally:
        for t5 in models:
            t5.set_attn_implementation("sdpa")


@contextlib.contextmanager
def cheap_mask_dropout(model: torch.nn.Module) -> Iterator[int]:
    """Replace the CPU-placed ``torch.nn.Dropout`` modules of ``model`` inside the block
    (yields how many), and a T5's attention and feed-forward paths, and put the originals back after it."""
    replaced = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is torch.nn.Dropout and child.p < 1.0:
                replaced.append((parent, name, child))
    devices = {parameter.device.type for parameter in model.parameters()}
    on_cpu = devices == {"cpu"}  # GPU dropout draws its masks with Philox, in bulk: nothing to gain there
    try:
        for parent, name, child in replaced if on_cpu else []:
            substitute = CheapMaskDropout(child.p)
            substitute.train(child.training)
            setattr(parent, name, substitute)
        with _t5_training_paths(model) if on_cpu else contextlib.nullcontext():
            yield len(replaced) if on_cpu else 0
    finally:
        for parent, name, child in replaced if on_cpu else []:
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)
