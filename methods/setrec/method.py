"""The ``setrec`` plugin: order-agnostic set identifiers (Lin et al., SIGIR 2025, arXiv 2502.10833).

A run goes through these steps:

1. **CF tokenizer**: SASRec item embeddings from the training split, trained once and
   cached (:mod:`methods.setrec.cf_tokenizer`).
2. **Item text embeddings** by the profile's sentence encoder
   (:func:`bench.engine.text_embeddings.item_text_embeddings`, cached).
3. **Training** of the T5 backbone, the queries, the CF projection and the semantic
   autoencoder together (:mod:`methods.setrec.model`), by the engine's common loop; every
   position ``t >= 1`` of a training sequence is one example (history = up to
   ``max_history`` items before it).
4. **Grounding weight beta** chosen on the *validation* targets over ``beta_grid``; the
   grid's validation values go into the record. (The official inference script picks beta
   by the best *test* recall; the harness never reads test targets to choose anything.)
5. **Scoring**: one encoder and one decoder pass per batch of users, scores over all items
   (the harness ranks them).

Ablations (the paper's component study) are switches: ``cf_token=false``,
``semantic_tokens=false``, ``shared_query=true``, ``item_positions=sequential``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np

from bench.config import AT_LEAST_ONE, NON_NEGATIVE, UNIT_INTERVAL, EvalConfig, option
from bench.data.prepare import cache_root
from bench.data.split import Split
from bench.engine.model import T5EngineConfig, build_model, count_parameters
from bench.engine.selection import Validator, sample_validation_users
from bench.errors import BenchError
from bench.method import Method, RunContext, TrainingData

if TYPE_CHECKING:
    import torch

    from methods.setrec.model import SETRecModel

# The official template (code/templates/template.json): instruction, items, response.
INSTRUCTION = "What would user be likely to purchase next after buying items"
RESPONSE = "?;"
OFFICIAL_BETA_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclasses.dataclass(frozen=True)
class SETRecConfig(T5EngineConfig):
    """The engine's T5 and training options plus SETRec's own; defaults are the official
    script's (scripts/train_t5.sh: t5-small, n_sem 4, alpha 0.7, lr 1e-3, 30 epochs,
    batch 512 as 128 x 4 accumulation, history of 50)."""

    max_history: int = option(50, "most recent history items in the encoder input")
    epochs: int = option(30, "passes over the training examples")
    batch_size: int = option(128, "training examples per forward pass")
    gradient_accumulation: int = option(4, "forward passes per optimizer step")
    n_sem: int = option(4, "semantic tokens per item (n_query = 1 + n_sem)", range=AT_LEAST_ONE)
    alpha: float = option(0.7, "weight of the semantic autoencoder's reconstruction loss (Eq. 8)", range=NON_NEGATIVE)
    autoencoder_layers: tuple[int, ...] = option((512, 256, 128), "hidden sizes of the autoencoder's encoder MLP "
                                                                  "(the decoder mirrors them)", range=AT_LEAST_ONE)
    text_encoder: str | None = option(None, "sentence encoder of the item text (none: the profile's default, "
                                            "Sentence-T5 for paper, the offline all-MiniLM-L6-v2 for cpu)")
    cf_hidden_size: int = option(64, "size of the CF tokenizer's SASRec item embeddings", range=AT_LEAST_ONE)
    cf_epochs: int = option(300, "maximum epochs of the CF tokenizer's SASRec (early stopping on its inner "
                                 "validation item)", range=AT_LEAST_ONE)
    cf_max_seq_length: int = option(50, "most recent items the CF tokenizer's SASRec reads", range=AT_LEAST_ONE)
    cf_max_train_minutes: float = option(0.0, "wall-clock limit of the CF tokenizer's training (0: none)")
    beta_grid: tuple[float, ...] = option(OFFICIAL_BETA_GRID, "candidate grounding weights beta (Eq. 9: "
                                                              "(1 - beta) CF + beta semantic), chosen on validation",
                                                              range=UNIT_INTERVAL)
    beta_metric: str = option("NDCG@10", "validation metric that picks beta")
    cf_token: bool = option(True, "ablation: false drops the CF token (semantic tokens only)")
    semantic_tokens: bool = option(True, "ablation: false drops the semantic tokens (CF token only)")
    shared_query: bool = option(False, "ablation: one query vector for every dimension instead of one each")
    item_positions: Literal["shared", "sequential"] = option(
        "shared", "shared: the tokens of an item share one position (paper); sequential (ablation): every token its "
                  "own position")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.cf_token or self.semantic_tokens):
            raise BenchError("config keys 'cf_token' and 'semantic_tokens' are both false: an item needs at least "
                             "one token")
        if not self.beta_grid:
            raise BenchError("config key 'beta_grid' is empty: it needs at least one beta to choose from")
        if self.with_user_id:
            raise BenchError("config key 'with_user_id' is not used by setrec (its input holds item tokens only)")

    def effective_beta_grid(self) -> tuple[float, ...]:
        """Without one kind of token beta has nothing to weigh: CF only is beta 0, semantic only beta 1."""
        if not self.semantic_tokens:
            return (0.0,)
        if not self.cf_token:
            return (1.0,)
        return tuple(self.beta_grid)


def select_beta(values: dict[float, dict[str, float]], metric: str) -> float:
    """The grid value with the best validation ``metric`` (the smaller beta on a tie)."""
    missing = [beta for beta, metrics in values.items() if metric not in metrics]
    if missing:
        raise BenchError(f"config key 'beta_metric': validation gives no '{metric}' "
                         f"(it gives {', '.join(sorted(values[missing[0]]))})")
    return max(sorted(values), key=lambda beta: (values[beta][metric], -beta))


class _FixedScores(Method):
    """Scores computed beforehand for some users, weighted by ``beta``: the grid is evaluated
    with one model pass per validation user, not one per grid value."""

    config_class = EvalConfig

    def __init__(self, users: np.ndarray, collaborative: np.ndarray, semantic: np.ndarray, context: RunContext) -> None:
        super().__init__(EvalConfig(), context)
        self.row = {int(user): row for row, user in enumerate(users.tolist())}
        self.collaborative, self.semantic, self.beta = collaborative, semantic, 0.0

    def fit(self, data: TrainingData) -> None:
        raise RuntimeError("_FixedScores is never fitted")

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        rows = [self.row[int(user)] for user in np.asarray(users).tolist()]
        return (1.0 - self.beta) * self.collaborative[rows] + self.beta * self.semantic[rows]


class SETRecTask:
    """Training examples for the engine's loop: every position ``t >= 1`` of each training
    sequence (or only the last), predicting item ``t`` from up to ``max_history`` items before it."""

    def __init__(self, train_sequences: Sequence[np.ndarray], max_history: int, last_position_only: bool) -> None:
        from bench.engine.batching import SequentialExamples

        self.sequences, self.max_history = train_sequences, max_history
        positions = SequentialExamples(train_sequences, [], max_history, 0, last_position_only=last_position_only)
        self.examples = list(zip(positions.users.tolist(), positions.positions.tolist()))

    def examples_for_epoch(self, epoch: int) -> list[tuple[int, int]]:
        return self.examples  # the loop shuffles them per (seed, epoch)

    def example_length(self, example: tuple[int, int]) -> int:
        return min(example[1], self.max_history)

    def collate(self, examples: Sequence[tuple[int, int]]) -> dict[str, "torch.Tensor"]:
        import torch

        histories = [self.sequences[user][max(0, position - self.max_history):position] for user, position in examples]
        return {"history": history_tensor(histories, self.max_history),
                "target": torch.as_tensor([int(self.sequences[user][position]) for user, position in examples])}

    @staticmethod
    def loss(model: "torch.nn.Module", batch: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return model(**batch)


def length_groups(lengths: Sequence[int], shortest: int = 8) -> list[np.ndarray]:
    """Rows grouped by length, ascending: a group takes rows while the longest is at most
    twice its shortest (or ``shortest``), so padding at most doubles a group's tokens."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    groups, start = [], 0
    for end in range(1, len(order) + 1):
        if end == len(order) or lengths[order[end]] > 2 * max(lengths[order[start]], shortest):
            groups.append(order[start:end])
            start = end
    return groups


def history_tensor(histories: Sequence[np.ndarray], max_history: int) -> "torch.Tensor":
    """The most recent ``max_history`` items of each history, left-padded to the longest."""
    import torch

    from methods.setrec.model import PAD_ITEM

    recent = [np.asarray(history, dtype=np.int64)[-max_history:] for history in histories]
    width = max(1, max((len(history) for history in recent), default=0))
    padded = np.full((len(recent), width), PAD_ITEM, dtype=np.int64)
    for row, history in enumerate(recent):
        if len(history):
            padded[row, width - len(history):] = history
    return torch.from_numpy(padded)


class SETRec(Method):
    config_class = SETRecConfig
    # cpu: the engine's small T5 from scratch (its vocabulary only has to cover the
    # instruction words), one thread, 10 epochs, batches of 128 without accumulation, and the
    # time-to-quality path (benchmarks/time_to_quality.py): no dropout, a constant rate after
    # 100 warm-up steps, 20 history items (on chronological Toys it reached the validation
    # score of the official settings' third epoch in its second, at 2.6x less CPU time). The
    # CF tokenizer's SASRec gets the RecBole plugins' cpu budget.
    # Precision auto: bf16 where the CPU computes it natively (the long Toys runs), else fp32.
    profiles = {"cpu": {"vocab_size": 500, "threads": 1, "batch_size": 128, "gradient_accumulation": 1,
                        "epochs": 10, "cf_epochs": 30, "precision": "auto", "dropout_rate": 0.0,
                        "lr_schedule": "constant", "warmup_steps": 100, "max_history": 20}}

    # ----------------------------------------------------------------- fit

    def fit(self, data: TrainingData) -> None:
        from bench.engine.tokenizer import build_tokenizer

        config, context = self.config, self.context
        self.data = data
        cf_embeddings, self.cf_facts = self._cf_embeddings(data)
        text_embeddings = self._text_embeddings(data)
        # cpu: the tokenizer only has to cover the instruction and response words.
        tokenizer = build_tokenizer(context.profile, config.backbone, [INSTRUCTION, RESPONSE] + list(data.dataset.item_text),
                                    context.work_dir / "tokenizer", config.vocab_size, context.seed)
        self.network = self._build_network(tokenizer, cf_embeddings, text_embeddings)
        self.training_report = self._train(data.split)
        self._freeze_item_tokens()
        self.beta_values = self.validation_grid(data.split)
        self.beta = select_beta(self.beta_values, config.beta_metric)

    def _cf_embeddings(self, data: TrainingData) -> tuple[np.ndarray | None, dict[str, Any]]:
        from methods.setrec.cf_tokenizer import cf_item_embeddings

        config = self.config
        if not config.cf_token:
            return None, {}
        options = {"hidden_size": config.cf_hidden_size, "epochs": config.cf_epochs,
                   "max_seq_length": config.cf_max_seq_length, "max_train_minutes": config.cf_max_train_minutes,
                   "threads": max(config.threads, 1)}
        return cf_item_embeddings(data.dataset, data.split, options, self.context)

    def _text_embeddings(self, data: TrainingData) -> np.ndarray | None:
        from bench.engine.text_embeddings import item_text_embeddings, resolve_encoder

        config = self.config
        if not config.semantic_tokens:
            return None
        self.text_encoder = resolve_encoder(self.context.profile, config.text_encoder)
        return item_text_embeddings(list(data.dataset.item_text), self.context.profile, config.text_encoder,
                                    cache_root() / "text-embeddings", self.context)

    def _build_network(self, tokenizer, cf_embeddings, text_embeddings) -> "SETRecModel":
        import torch

        from methods.setrec.model import SETRecModel

        config, context = self.config, self.context
        backbone = build_model(config, context.profile, tokenizer, context.seed)
        words = tokenizer([INSTRUCTION, RESPONSE], add_special_tokens=False).input_ids
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(context.seed)
            return SETRecModel(backbone, words[0], words[1], cf_embeddings, text_embeddings, config.n_sem,
                               config.autoencoder_layers, config.alpha, config.shared_query, config.item_positions)

    def _train(self, split: Split) -> Any:
        from bench.engine.training import train_model

        task = SETRecTask(split.train, self.config.max_history, self.config.last_position_only)
        if not task.examples:
            raise BenchError("setrec: no training examples (every user's training part has fewer than 2 items)")
        return train_model(self.network, task, self.config, self.context.work_dir / "checkpoints", self.context,
                           validate=BetaGridValidator(self, split), description="setrec")

    def _use_network(self, network: "SETRecModel") -> None:
        """Validation during training ranks with the network being trained."""
        self.network = network

    def _validate_during_training(self, users: np.ndarray) -> dict[str, float]:
        """Model selection: validation metrics at the best beta of the grid, on the loop's
        sample of validation users."""
        self._freeze_item_tokens()
        values = self.validation_grid(self.data.split, users)
        beta = select_beta(values, self.config.beta_metric)
        return {**values[beta], "beta": beta}

    # ------------------------------------------------------------ scoring

    def _freeze_item_tokens(self) -> None:
        """Every item's token set, computed once for scoring (the autoencoder is not re-run per batch)."""
        import torch

        self.runtime = self.context.runtime
        self.network = self.runtime.place(self.network)
        self.network.eval()
        with torch.no_grad(), self.runtime.autocast():
            self.item_tokens = self.network.item_tokens()

    def score_parts(self, histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The CF score and the sum of the semantic scores of every item (each
        ``[len(histories), n_items]``; zeros for an ablated kind), one model pass per user.

        Users go through in groups of similar history length: a history of 50 items is 250
        encoder tokens, the typical Toys history a tenth of that, and one padded batch
        would make every user pay for the longest."""
        import torch

        network = self.network
        collaborative = np.zeros((len(histories), network.n_items), dtype=np.float32)
        semantic = np.zeros_like(collaborative)
        for rows in length_groups([min(len(h), self.config.max_history) for h in histories]):
            history = self.runtime.to_device(history_tensor([histories[row] for row in rows], self.config.max_history))
            with torch.no_grad(), self.runtime.autocast():
                scores = network.dimension_scores(history, self.item_tokens).cpu().numpy()
            if network.has_cf:
                collaborative[rows] = scores[:, 0]
            if network.n_sem:
                semantic[rows] = scores[:, int(network.has_cf):].sum(axis=1)
        return collaborative, semantic

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        collaborative, semantic = self.score_parts(histories)
        return (1.0 - self.beta) * collaborative + self.beta * semantic

    def validation_grid(self, split: Split, users: np.ndarray | None = None) -> dict[float, dict[str, float]]:
        """Validation metrics of every beta of the grid (one model pass per validation user).

        Only the validation phase is evaluated: test targets are never read here."""
        from bench.evaluation.protocol import evaluate, phase_users

        evaluated = phase_users(split, "valid", users)
        histories = split.histories("valid")
        batch_size = EvalConfig().batch_size
        parts = [self.score_parts([histories[user] for user in evaluated[start:start + batch_size].tolist()])
                 for start in range(0, len(evaluated), batch_size)]
        quiet = dataclasses.replace(self.context, show_progress=False)
        fixed = _FixedScores(evaluated, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                             quiet)
        values = {}
        for beta in self.config.effective_beta_grid():
            fixed.beta = beta
            result = evaluate(fixed, split, "valid", EvalConfig(), quiet, users=evaluated)
            values[float(beta)] = {name: round(value, 6) for name, value in result.means().items()}
        return values

    # -------------------------------------------------------------- record

    def metadata(self) -> dict[str, Any]:
        config, network = self.config, self.network
        report = self.training_report
        found: dict[str, Any] = {
            "profile": self.context.profile,
            "parameters": count_parameters(network),
            "dimensions": {"cf": network.has_cf, "semantic": network.n_sem},
            "n_query": int(network.queries.weight.shape[0]),
            "item_positions": config.item_positions,
            "beta": self.beta,
            "beta_metric": config.beta_metric,
            "beta_validation": {str(beta): values for beta, values in self.beta_values.items()},
            "training": report.record(),
        }
        found["training_curve"] = found["training"].pop("training_curve")  # the runner lifts it into the record
        found["selection"] = found["training"].pop("selection")  # where every engine method records it
        if network.has_cf:
            found["cf_tokenizer"] = self.cf_facts
        if network.n_sem:
            found["text_encoder"] = self.text_encoder
        if self.context.profile == "paper":
            found["backbone"] = config.backbone
        return found


class BetaGridValidator(Validator):
    """SETRec's validation during training: the engine's users and description, scored at the
    best beta of the grid (:meth:`SETRec.validation_grid`)."""

    def __init__(self, method: SETRec, split: Split) -> None:
        users = sample_validation_users(split.phase_users("valid"), method.config.validation_users, method.context.seed)
        super().__init__(method, split, users, EvalConfig(), method.context, install=method._use_network)

    def __call__(self) -> dict[str, float]:
        return self.method._validate_during_training(self.users)
