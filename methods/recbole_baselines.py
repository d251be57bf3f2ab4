"""Sequential baselines from RecBole 1.2.1 (FPMC, GRU4Rec, Caser, HGN, SASRec, BERT4Rec, FDSA,
S3Rec): RecBole's own models and trainers, ranked by the harness from their full-sort scores.

Hand-off: each user's *training part* (plus, for early stopping, the validation item) is
written as RecBole atomic files and split by RecBole's leave-one-out ``valid_only``. RecBole
turns a sequence ``i1..in`` into the samples ``i1..ik -> i(k+1)`` and keeps the last sample
for validation, so every training target lies in ``split.train`` and the test item is never
written. A user with a single training item would have only the validation sample, which
RecBole's splitter would put into *training*; such users are written without their
validation item (they have nothing to train on and are left out of early stopping).

Scores come back in RecBole's internal item ids (0 is padding); ``score`` gathers the
columns in the harness's item order.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.config import asdict_before_added_options
from bench.errors import BenchError
from bench.identity import identity_digest
from bench.method import Method, TrainingData
from bench.storage import atomic_write_text
from methods.recbole_atomic import CATEGORY_FIELD, RECBOLE_DATASET, write_atomic_files
from methods.recbole_configs import (BERT4RecConfig, CaserConfig, FPMCConfig, GRU4RecConfig, HGNConfig, RecBoleConfig,
                                     S3RecConfig, TransformerConfig)

# Early stopping watches RecBole's own full-ranking NDCG@10 over the validation users.
VALID_METRIC = "NDCG@10"
# The state of the last finished epoch, for an exact resume (bench.recbole_compat.ExactResume).
TRAINING_STATE_FILE = "training-state.pth"
# S3Rec's pre-training stage keeps its own resumable state (bench.recbole_compat.ExactResume).
PRETRAINING_STATE_FILE = "pretraining-state.pth"


class _TimeBudgetReached(Exception):
    """Raised from RecBole's per-validation callback, which runs after the best checkpoint is saved."""


class RecBoleSequential(Method):
    """One RecBole sequential model; subclasses name it and its config."""

    recbole_model: ClassVar[str]
    config_class = RecBoleConfig
    uses_categories: ClassVar[bool] = False
    # RecBole's 300 epochs are days of CPU time on Amazon Toys (one CE epoch of SASRec is
    # minutes on one core); bound a run by wall clock with max_train_minutes where it matters.
    profiles = {"cpu": {"epochs": 30, "stopping_step": 5}}
    # RecBole's DDP reports wrong metrics (RecBole#1872); one process trains on one device. The
    # runner refuses a RecBole run of several processes; inside one (SETRec's CF tokenizer, a
    # shared artifact) the main process trains it alone while the others wait.
    supports_processes = False

    def fit(self, data: TrainingData) -> None:
        from recbole.utils import init_seed

        from bench import recbole_compat

        self.runtime = self.context.runtime
        work_dir = Path(self.context.work_dir)
        written = write_atomic_files(data.dataset, data.split, work_dir / "recbole" / RECBOLE_DATASET,
                                     self.uses_categories)
        recbole_config = recbole_compat.make_config(self.recbole_model, self._recbole_options(work_dir),
                                                    device=self.runtime.device)
        with recbole_compat.recbole_logging(type(self).__name__.lower(), echo=self.context.show_progress):
            init_seed(self.context.seed, True)
            self._prepare_data(recbole_config)
            finished_file = work_dir / "finished.json"
            fingerprint = self._fingerprint(written["digest"], dataclasses.asdict(self.config))
            # A run made before some options existed fingerprinted its config without them.
            earlier = self._fingerprint(written["digest"], asdict_before_added_options(self.config))
            finished = json.loads(finished_file.read_text()) if finished_file.is_file() else {}
            best_file = self._checkpoint_dir(work_dir) / f"{self.recbole_model}-best.pth"
            if finished.get("fingerprint") in (fingerprint, earlier) and best_file.is_file():
                init_seed(self.context.seed, True)
                self.model = self._new_model(recbole_config, work_dir)
                facts = finished["facts"]
            else:
                facts = self._train(recbole_config, work_dir, best_file, fingerprint)
                atomic_write_text(finished_file, json.dumps({"fingerprint": fingerprint, "facts": facts}))
        checkpoint = recbole_compat.load_checkpoint(best_file)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.model.eval()
        self.facts = {**facts, **{key: value for key, value in written.items() if key != "digest"}}
        token_id = self.recbole_dataset.field2token_id
        self.item_to_internal = np.asarray([token_id["item_id"][str(i)] for i in range(data.n_items)], dtype=np.int64)
        self.user_to_internal = np.asarray([token_id["user_id"][str(u)] for u in range(data.split.n_users)],
                                           dtype=np.int64)

    def _recbole_options(self, work_dir: Path) -> dict[str, Any]:
        from bench import recbole_compat

        options = dataclasses.asdict(self.config)
        for harness_only in ("threads", "max_train_minutes", "device", "precision"):
            options.pop(harness_only)
        load_item = ["item_id", CATEGORY_FIELD] if self.uses_categories else ["item_id"]
        options.update({
            "MAX_ITEM_LIST_LENGTH": options.pop("max_seq_length"),
            "dataset": RECBOLE_DATASET, "data_path": str(work_dir / "recbole"),
            "checkpoint_dir": str(self._checkpoint_dir(work_dir)),
            "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
            "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": load_item},
            "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
            "eval_args": {"split": {"LS": "valid_only"}, "order": "TO", "group_by": "user", "mode": "full"},
            "metrics": ["NDCG", "Hit"], "topk": [10], "valid_metric": VALID_METRIC,
            "train_neg_sample_args": None if self.config.loss_type == "CE" else {
                "distribution": "uniform", "sample_num": 1, "alpha": 1.0, "dynamic": False, "candidate_num": 0},
            "seed": self.context.seed, "reproducibility": True,
            "show_progress": self.context.show_progress, "worker": 0, "log_wandb": False,
            "save_dataset": False, "save_dataloaders": False,
            **recbole_compat.device_options(self.runtime.device, self.config.precision),
        })
        options.update(self._extra_options())
        return options

    def _extra_options(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def _checkpoint_dir(work_dir: Path) -> Path:
        return work_dir / "checkpoints"

    def _fingerprint(self, data_digest: str, config: dict[str, Any]) -> str:
        # Keyed by RecBole's model name (not the method's), as the finished trainings stored so far are.
        return identity_digest({"model": self.recbole_model, "config": config, "data": data_digest,
                                "seed": self.context.seed})

    def _prepare_data(self, recbole_config) -> None:
        from recbole.data import create_dataset, data_preparation

        from bench import recbole_compat

        with recbole_compat.elementwise_series_len():
            self.recbole_dataset = create_dataset(recbole_config)
            self.train_data, self.valid_data, _ = data_preparation(recbole_config, self.recbole_dataset)
        if len(self.train_data.dataset) == 0:
            raise BenchError(f"{self.recbole_model}: no user has two training items; nothing to train on")

    def _new_model(self, recbole_config, work_dir: Path):
        from recbole.utils import get_model

        return self.runtime.place(get_model(self.recbole_model)(recbole_config, self.recbole_dataset))

    def _trainer(self, recbole_config, model):
        from recbole.utils import get_trainer

        return get_trainer(recbole_config["MODEL_TYPE"], self.recbole_model)(recbole_config, model)

    def _train(self, recbole_config, work_dir: Path, best_file: Path, fingerprint: str) -> dict[str, Any]:
        """Train with RecBole's trainer (early stopping on validation NDCG@10), resuming a
        killed run of the same fingerprint exactly where its last finished epoch left it."""
        from recbole.utils import init_seed

        from bench import recbole_compat

        facts: dict[str, Any] = self._before_training(recbole_config, work_dir, fingerprint)
        init_seed(self.context.seed, True)
        # Pre-training (S3Rec) drew from the loaders' shuffling generators: fine-tuning starts
        # from their seed whether pre-training ran in this process or in a killed one.
        for loader in (self.train_data, self.valid_data):
            loader.generator.manual_seed(self.context.seed)
        self.model = self._new_model(recbole_config, work_dir)
        trainer = self._trainer(recbole_config, self.model)
        trainer.saved_model_file = str(best_file)
        # Training time and validations of this run so far, across resumes (the time budget
        # counts them all), and the validation score per validated epoch.
        progress: dict[str, Any] = {"training_seconds": 0.0, "validations": 0, "valid_scores": {}}
        started = time.monotonic()

        def training_seconds() -> float:
            return progress["training_seconds"] + time.monotonic() - started

        resume = recbole_compat.ExactResume(
            trainer, self._checkpoint_dir(work_dir) / TRAINING_STATE_FILE, fingerprint,
            (self.train_data, self.valid_data), lambda: {**progress, "training_seconds": training_seconds()})
        saved = resume.restore()
        if saved is None:
            # A best checkpoint without the state of its run cannot be continued exactly.
            best_file.unlink(missing_ok=True)
        else:
            progress.update(saved)
            facts["resumed_after_epoch"] = trainer.start_epoch - 1
        started = time.monotonic()

        def after_validation(epoch: int, valid_score: float) -> None:
            progress["validations"] += 1
            progress["valid_scores"][epoch] = float(valid_score)
            # Stop when one more validation interval, at the mean pace so far, would overrun.
            budget = 60 * self.config.max_train_minutes
            if budget and training_seconds() * (1 + 1 / progress["validations"]) > budget:
                raise _TimeBudgetReached()

        out_of_time = False
        if trainer.start_epoch < self.config.epochs:
            resume.save_each_epoch()
            try:
                with recbole_compat.autocast_dtype(self.runtime.device, self.config.precision):
                    trainer.fit(self.train_data, self.valid_data, saved=True,
                                show_progress=self.context.show_progress, callback_fn=after_validation)
            except _TimeBudgetReached:
                out_of_time = True
        checkpoint = recbole_compat.load_checkpoint(best_file)
        epochs_trained = max(trainer.train_loss_dict, default=trainer.start_epoch - 1) + 1
        stopped_by = "time budget" if out_of_time else \
            "early stopping" if epochs_trained < self.config.epochs else "max epochs"
        facts.update({"epochs_trained": int(epochs_trained), "stopped_by": stopped_by,
                      "best_epoch": int(checkpoint["epoch"]),
                      "recbole_valid_ndcg@10": round(float(checkpoint["best_valid_score"]), 6),
                      "training_seconds": round(training_seconds(), 2),
                      # The engine's curve layout (bench.engine.selection), in RecBole's epoch numbers.
                      "training_curve": [
                          {"epoch": int(epoch), "train_loss": round(float(loss), 6),
                           **({"validation": {VALID_METRIC: round(progress["valid_scores"][epoch], 6)}}
                              if epoch in progress["valid_scores"] else {})}
                          for epoch, loss in sorted(trainer.train_loss_dict.items())]})
        return facts

    def _before_training(self, recbole_config, work_dir: Path, fingerprint: str) -> dict[str, Any]:
        return {}

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        import torch
        from recbole.data.interaction import Interaction

        max_length = self.config.max_seq_length
        lengths = np.asarray([len(history) for history in histories], dtype=np.int64)
        kept = np.minimum(lengths, max_length)
        flat = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if len(histories) else \
            np.zeros(0, dtype=np.int64)
        # RecBole's layout: the most recent ``max_length`` items, left-aligned, 0-padded.
        rows = np.repeat(np.arange(len(histories)), kept)
        columns = np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept)
        sources = np.repeat(np.cumsum(lengths) - kept, kept) + columns
        item_seq = np.zeros((len(histories), max_length), dtype=np.int64)
        item_seq[rows, columns] = self.item_to_internal[flat[sources]]
        interaction = Interaction(self.runtime.to_device({
            "item_id_list": torch.from_numpy(item_seq),
            "item_length": torch.from_numpy(np.maximum(kept, 1)),
            "user_id": torch.from_numpy(self.user_to_internal[np.asarray(users, dtype=np.int64)]),
        }))
        self.model.eval()
        with torch.no_grad():
            scores = self.model.full_sort_predict(interaction).reshape(len(histories), -1).cpu()
        return scores[:, torch.from_numpy(self.item_to_internal)].double().numpy()

    def metadata(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"recbole_model": self.recbole_model, "recbole_version": version("recbole"),
                "loss_type": self.config.loss_type, "max_seq_length": self.config.max_seq_length,
                "n_parameters": int(sum(p.numel() for p in self.model.parameters())),
                "training_samples": len(self.train_data.dataset),
                "recbole_valid_protocol": "RecBole full ranking, no history masking, users with >= 2 training items",
                **self.facts}


class FPMC(RecBoleSequential):
    """Factorizing personalized Markov chains (Rendle et al., WWW 2010) with RecBole's basket
    size of one: a user-item factor plus a last item-next item factor."""

    recbole_model = "FPMC"
    config_class = FPMCConfig
    # RecBole's own 300 epochs and patience 10: an FPMC epoch is seconds on a CPU (two embedding
    # lookups per BPR pair, no sequence encoder), and BPR at lr 1e-3 still improves after the
    # other baselines' 30 (demo: best epoch 29 of 30).
    profiles = {"cpu": {"epochs": 300, "stopping_step": 10}}


class GRU4Rec(RecBoleSequential):
    recbole_model = "GRU4Rec"
    config_class = GRU4RecConfig


class Caser(RecBoleSequential):
    recbole_model = "Caser"
    config_class = CaserConfig


class HGN(RecBoleSequential):
    recbole_model = "HGN"
    config_class = HGNConfig


class SASRec(RecBoleSequential):
    recbole_model = "SASRec"
    config_class = TransformerConfig


class BERT4Rec(RecBoleSequential):
    recbole_model = "BERT4Rec"
    config_class = BERT4RecConfig


class FDSA(RecBoleSequential):
    recbole_model = "FDSA"
    config_class = TransformerConfig
    uses_categories = True

    def _extra_options(self) -> dict[str, Any]:
        return {"selected_features": [CATEGORY_FIELD]}


class S3Rec(RecBoleSequential):
    """Pre-trains (RecBole's four self-supervised tasks over item categories) and then
    fine-tunes from that checkpoint, as RecBole runs S3Rec in two stages."""

    recbole_model = "S3Rec"
    config_class = S3RecConfig
    uses_categories = True
    profiles = {"cpu": {"epochs": 30, "stopping_step": 5, "pretrain_epochs": 10}}

    def _extra_options(self) -> dict[str, Any]:
        return {"item_attribute": CATEGORY_FIELD, "train_stage": "finetune",
                "save_step": self.config.pretrain_epochs}

    def _pretrained_file(self, work_dir: Path) -> Path:
        # The name RecBole's PretrainTrainer gives its checkpoint after the last epoch.
        return self._checkpoint_dir(work_dir) / f"S3Rec-{RECBOLE_DATASET}-{self.config.pretrain_epochs}.pth"

    def _before_training(self, recbole_config, work_dir: Path, fingerprint: str) -> dict[str, Any]:
        """Pre-trains unless the pre-trained file exists. A killed pre-training resumes from
        the state its last finished epoch left, to the model an uninterrupted one gives."""
        from recbole.utils import init_seed

        from bench import recbole_compat

        pretrained = self._pretrained_file(work_dir)
        facts: dict[str, Any] = {"pretrain_epochs": self.config.pretrain_epochs}
        state_file = self._checkpoint_dir(work_dir) / PRETRAINING_STATE_FILE
        if not pretrained.is_file():
            recbole_config["train_stage"] = "pretrain"
            init_seed(self.context.seed, True)
            model = self._new_model(recbole_config, work_dir)
            trainer = self._trainer(recbole_config, model)
            recbole_compat.write_pretrained_model_atomically(trainer)
            resume = recbole_compat.ExactResume(trainer, state_file, fingerprint, (self.train_data,), dict)
            if resume.restore() is not None:
                facts["pretraining_resumed_after_epoch"] = trainer.start_epoch - 1
            resume.save_each_epoch()
            with recbole_compat.autocast_dtype(self.runtime.device, self.config.precision):
                trainer.pretrain(self.train_data, show_progress=self.context.show_progress)
            recbole_config["train_stage"] = "finetune"
        # The pre-trained file is the stage's result; its resumable state is no longer needed.
        state_file.unlink(missing_ok=True)
        return facts

    def _new_model(self, recbole_config, work_dir: Path):
        from bench import recbole_compat

        recbole_config["pre_model_path"] = str(self._pretrained_file(work_dir))
        with recbole_compat.trusted_checkpoints(work_dir):
            return super()._new_model(recbole_config, work_dir)
