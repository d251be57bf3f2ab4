"""The RecBole baselines' options (:mod:`methods.recbole_baselines`): RecBole's defaults, each
option with its range, so a bad value is a one-line error naming the key, not a traceback
from RecBole."""

from __future__ import annotations

import dataclasses
from typing import Literal

from bench.config import AT_LEAST_ONE, BELOW_ONE, NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, Range, option
from bench.devices import DeviceConfig, threads_option

# No masked item means no cloze target (BERT4Rec) and no masked-item task (S3Rec).
MASK_RATIO = Range(lambda value: 0 < value < 1, "in (0, 1)")


@dataclasses.dataclass(frozen=True)
class RecBoleConfig(DeviceConfig):
    """Training options shared by every RecBole baseline; defaults are RecBole's. The device
    options are given to RecBole as its use_gpu/gpu_id (one process: RecBole's own DDP is not
    used) and its autocast switch (enable_amp, with its loss scaler for fp16); scores are
    computed in fp32."""

    epochs: int = option(300, "maximum training epochs (RecBole's default)", range=AT_LEAST_ONE)
    train_batch_size: int = option(2048, "training samples per batch", range=AT_LEAST_ONE)
    learning_rate: float = option(0.001, "Adam learning rate", range=POSITIVE)
    weight_decay: float = option(0.0, "Adam weight decay", range=NON_NEGATIVE)
    max_seq_length: int = option(20, "most recent history items the model reads (MAX_ITEM_LIST_LENGTH)",
                                 range=AT_LEAST_ONE)
    loss_type: Literal["CE", "BPR"] = option(
        "CE", "CE: softmax over all items; BPR: one uniform negative per target "
              "(RecBole's sequential models offer no BCE)")
    stopping_step: int = option(10, "early stopping: validations without a better NDCG@10 before stopping",
                                range=AT_LEAST_ONE)
    eval_step: int = option(1, "epochs between validations", range=AT_LEAST_ONE)
    eval_batch_size: int = option(1024, "users per validation batch", range=AT_LEAST_ONE)
    threads: int = threads_option(2)  # the default every RecBole run was made with
    max_train_minutes: float = option(
        0.0, "stop training when one more validation interval would end past this many minutes of "
             "training, counted across resumes (0: no limit); the best checkpoint so far is kept", range=NON_NEGATIVE)


@dataclasses.dataclass(frozen=True)
class FPMCConfig(RecBoleConfig):
    # RecBole's FPMC is pairwise (InputType.PAIRWISE) and raises for any loss but BPR.
    loss_type: Literal["BPR"] = option("BPR", "BPR with one uniform negative per target: the only loss "
                                              "RecBole's FPMC accepts (as in the paper's S-BPR)")
    embedding_size: int = option(64, "size of the user-item and the last item-next item factors", range=AT_LEAST_ONE)


@dataclasses.dataclass(frozen=True)
class GRU4RecConfig(RecBoleConfig):
    embedding_size: int = option(64, "item embedding size", range=AT_LEAST_ONE)
    hidden_size: int = option(128, "GRU hidden state size", range=AT_LEAST_ONE)
    num_layers: int = option(1, "GRU layers", range=AT_LEAST_ONE)
    dropout_prob: float = option(0.3, "dropout on the item embeddings", range=BELOW_ONE)


@dataclasses.dataclass(frozen=True)
class CaserConfig(RecBoleConfig):
    embedding_size: int = option(64, "user and item embedding size", range=AT_LEAST_ONE)
    dropout_prob: float = option(0.4, "dropout before the output layer", range=BELOW_ONE)
    reg_weight: float = option(1e-4, "L2 weight on the convolution filters", range=NON_NEGATIVE)
    nv: int = option(4, "vertical convolution filters", range=AT_LEAST_ONE)
    nh: int = option(8, "horizontal convolution filters per height", range=AT_LEAST_ONE)


@dataclasses.dataclass(frozen=True)
class HGNConfig(RecBoleConfig):
    embedding_size: int = option(64, "user and item embedding size", range=AT_LEAST_ONE)
    pooling_type: Literal["average", "max"] = option("average", "pooling of the gated item embeddings")


@dataclasses.dataclass(frozen=True)
class TransformerConfig(RecBoleConfig):
    n_layers: int = option(2, "transformer layers", range=AT_LEAST_ONE)
    n_heads: int = option(2, "attention heads", range=AT_LEAST_ONE)
    hidden_size: int = option(64, "hidden (and item embedding) size", range=AT_LEAST_ONE)
    inner_size: int = option(256, "feed-forward size", range=AT_LEAST_ONE)
    hidden_dropout_prob: float = option(0.5, "dropout on hidden states", range=BELOW_ONE)
    attn_dropout_prob: float = option(0.5, "dropout on attention weights", range=BELOW_ONE)

    def __post_init__(self) -> None:
        super().__post_init__()
        # RecBole's multi-head attention splits the hidden state evenly over the heads.
        self.require_multiple("hidden_size", "n_heads")


@dataclasses.dataclass(frozen=True)
class BERT4RecConfig(TransformerConfig):
    hidden_dropout_prob: float = option(0.2, "dropout on hidden states", range=BELOW_ONE)
    attn_dropout_prob: float = option(0.2, "dropout on attention weights", range=BELOW_ONE)
    mask_ratio: float = option(0.2, "share of items replaced by the mask token (cloze task)", range=MASK_RATIO)
    ft_ratio: float = option(0.5, "share of samples that mask only the last item", range=UNIT_INTERVAL)


@dataclasses.dataclass(frozen=True)
class S3RecConfig(TransformerConfig):
    pretrain_epochs: int = option(500, "self-supervised pre-training epochs before fine-tuning", range=AT_LEAST_ONE)
    mask_ratio: float = option(0.2, "share of items masked in pre-training", range=MASK_RATIO)
