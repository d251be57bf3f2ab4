"""TIGER (Rajput et al., "Recommender Systems with Generative Retrieval", NeurIPS 2023) as a
:class:`~bench.engine.recommender.GenerativeRecommender`.

Items are named by Semantic IDs: the RQ-VAE codes of their text embedding plus a collision
code (:mod:`methods.tiger.rqvae`), each code its own token (``<a_12> <b_3> <c_200> <d_0>``).
The input is the user's hashed ID token then the codes of the last ``max_history`` items,
with no worded prompt (§3.2); the target is the next item's codes. The sequence model is the
engine's T5 built from scratch at the paper's sizes in every profile (§4.1: 4 encoder and 4
decoder layers, d_model 128, 6 heads of 64, feed-forward 1024, ReLU, dropout 0.1), trained
and model-selected by the engine's loop and ranked by its beam search constrained to the
items' code tuples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

import numpy as np

from bench.config import option, require_at_least_one
from bench.engine.model import T5EngineConfig, build_small_model
from bench.engine.recommender import GenerativeRecommender
from bench.errors import BenchError
from bench.method import TrainingData
from bench.storage import atomic_write_bytes
from methods.tiger.rqvae import RQVAESettings, SemanticIds, semantic_ids

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, T5ForConditionalGeneration

LEVEL_LETTERS = "abcdefghijklmnopqrstuvwxyz"
CODES_FILE = "semantic_ids.npz"


@dataclasses.dataclass(frozen=True)
class TIGERConfig(T5EngineConfig):
    # The sequence model (§4.1), in both profiles: TIGER trains it from scratch.
    d_model: int = option(128, "T5 hidden size (TIGER §4.1: 128)")
    d_ff: int = option(1024, "T5 feed-forward size (TIGER §4.1: 1024)")
    num_layers: int = option(4, "T5 encoder layers; the decoder has as many (TIGER §4.1: 4 + 4)")
    num_heads: int = option(6, "T5 attention heads (TIGER §4.1: 6)")
    d_kv: int = option(64, "size of each attention head (TIGER §4.1: 64)")
    batch_size: int = option(256, "training examples per optimizer micro-step (TIGER §4.1: 256)")
    epochs: int = option(200, "passes over the training examples, at most (patience stops earlier); TIGER §4.1 "
                              "trains 100k steps of 256 on Toys, about 230 passes over its ~110k training positions")
    with_user_id: bool = option(True, "start the input with the user's hashed ID token (TIGER §4.1)")
    # Semantic IDs (§3.1, §4.1).
    semantic_ids: Literal["rqvae", "rkmeans", "random"] = option(
        "rqvae", "rqvae: RQ-VAE codes of the item text embedding; rkmeans: residual k-means codes of it (no "
                 "auto-encoder, as GRID's RK-Means); random: codes drawn at random with the same shape (the "
                 "paper's Random ID ablation, §4.4)")
    encoder: Optional[str] = option(
        None, "sentence encoder of the item text (hub name or local folder); none = the profile's: "
              "sentence-transformers/sentence-t5-base (paper, TIGER §4.1) or all-MiniLM-L6-v2 from its wheel (cpu)")
    codebook_size: int = option(256, "codes per RQ-VAE level, and values of the collision code (TIGER §4.1: 256)")
    levels: int = option(3, "RQ-VAE levels; the collision code comes on top (TIGER §4.1: 3)")
    latent_dim: int = option(32, "RQ-VAE latent and code size (TIGER §4.1: 32)")
    rqvae_epochs: int = option(20_000, "RQ-VAE training epochs (TIGER §4.1: 20k)")
    rqvae_batch_size: int = option(1024, "RQ-VAE batch size (TIGER §4.1: 1024)")
    rqvae_learning_rate: float = option(0.4, "RQ-VAE Adagrad learning rate (TIGER §4.1: 0.4)")
    commitment_weight: float = option(0.25, "β of the RQ-VAE commitment loss (TIGER §3.1: 0.25)")
    restart_dead_codes: bool = option(False, "restart codes no item chose in an epoch at residuals of the batch "
                                             "(SoundStream's cure for codebook collapse; not in TIGER)")
    user_tokens: int = option(2000, "user ID tokens; a user's ID is hashed to one of them (TIGER §4.1: 2000)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least_one(self, ("codebook_size", "levels", "latent_dim", "rqvae_epochs", "rqvae_batch_size",
                                    "user_tokens"))
        if self.levels + 1 > len(LEVEL_LETTERS):
            raise BenchError(f"config key 'levels' must be at most {len(LEVEL_LETTERS) - 1}, got {self.levels}")
        if self.rqvae_learning_rate <= 0 or self.commitment_weight < 0:
            name = "rqvae_learning_rate" if self.rqvae_learning_rate <= 0 else "commitment_weight"
            raise BenchError(f"config key '{name}' must be positive, got {getattr(self, name)}")

    def rqvae_settings(self) -> RQVAESettings:
        return RQVAESettings(latent_dim=self.latent_dim, levels=self.levels, codebook_size=self.codebook_size,
                             epochs=self.rqvae_epochs, batch_size=self.rqvae_batch_size,
                             learning_rate=self.rqvae_learning_rate, commitment_weight=self.commitment_weight,
                             restart_dead_codes=self.restart_dead_codes)


def code_token(level: int, code: int) -> str:
    return f"<{LEVEL_LETTERS[level]}_{code}>"


def user_token(user_id: str, user_tokens: int) -> str:
    """§4.1: the hashing trick; a stable hash, so a user keeps the token across runs."""
    digest = int.from_bytes(hashlib.sha256(user_id.encode("utf-8")).digest()[:8], "little")
    return f"<u_{digest % user_tokens}>"


class CodeSequenceExamples:
    """Every position t >= 1 of a user's training sequence: (user token and the codes of the
    items before t, codes of item t). No templates, so every epoch has the same pairs."""

    def __init__(self, train_sequences: list[np.ndarray], identifiers: list[str], max_history: int,
                 users: list[str] | None) -> None:
        self.examples = []
        for user, sequence in enumerate(train_sequences):
            for position in range(1, len(sequence)):
                history = sequence[max(0, position - max_history):position]
                self.examples.append((code_prompt(history, identifiers, users[user] if users else None),
                                      identifiers[sequence[position]]))

    def __len__(self) -> int:
        return len(self.examples)

    def __call__(self, epoch: int) -> list[tuple[str, str]]:
        return self.examples


def code_prompt(history: np.ndarray, identifiers: list[str], user: str | None) -> str:
    return " ".join(([user] if user else []) + [identifiers[item] for item in history.tolist()])


class TIGER(GenerativeRecommender):
    config_class = TIGERConfig
    # cpu: the MiniLM encoder (its profile default) and an RQ-VAE budget of minutes, not
    # hours (20k epochs of Toys' 12 batches of 1024 take ~17 h on one core at ~0.25 s a
    # batch); with so few epochs, dead codes are restarted. The sequence model keeps the
    # paper's sizes; 4 epochs as the engine's other cpu runs (demo: ~1.5 min an epoch on a
    # loaded core), long runs set their own budget (docs/tiger.md).
    # Precision auto: bf16 where the CPU computes it natively, else fp32 (bench.engine.accelerator).
    profiles = {"cpu": {"threads": 1, "rqvae_epochs": 100, "restart_dead_codes": True, "epochs": 4,
                        "precision": "auto"}}

    def item_identifiers(self, data: TrainingData) -> list[str]:
        self.semantic = self._semantic_ids(data)
        return [" ".join(code_token(level, int(code)) for level, code in enumerate(row))
                for row in self.semantic.codes]

    def _semantic_ids(self, data: TrainingData) -> SemanticIds:
        """The items' codes, computed once per run folder (a resumed run reuses them)."""
        from bench.data.prepare import cache_root
        from bench.engine.accelerator import distributed_runtime
        from bench.engine.text_embeddings import item_text_embeddings, resolve_encoder

        config: TIGERConfig = self.config
        path = Path(self.context.work_dir) / CODES_FILE
        self.text_encoder = None if config.semantic_ids == "random" else resolve_encoder(self.context.profile,
                                                                                         config.encoder)
        if path.is_file():
            stored = np.load(path, allow_pickle=False)
            return SemanticIds(codes=stored["codes"], report=json.loads(str(stored["report"])))
        embeddings = None
        if config.semantic_ids != "random":
            embeddings = item_text_embeddings(list(data.dataset.item_text), self.context.profile, config.encoder,
                                              cache_root() / "text-embeddings", self.context)
        result = semantic_ids(embeddings, data.n_items, config.rqvae_settings(), config.semantic_ids,
                              self.context.seed, self.context)
        if embeddings is not None:
            result.report["text_embedding_dim"] = int(embeddings.shape[1])
        runtime = distributed_runtime()
        if runtime is not None:
            # Each process trained the same RQ-VAE, but GPU kernels need not give bit-identical
            # codes: every process takes the main one's, so an item has one ID in all of them.
            result = runtime.broadcast(result)
            if not runtime.is_main_process:
                return result
        buffer = io.BytesIO()
        np.savez(buffer, codes=result.codes, report=np.asarray(json.dumps(result.report)))
        atomic_write_bytes(path, buffer.getvalue())
        return result

    def user_identifiers(self, data: TrainingData) -> list[str]:
        return [user_token(str(user), self.config.user_tokens) for user in data.dataset.user_ids]

    def vocabulary(self) -> list[str]:
        config: TIGERConfig = self.config
        codes = [code_token(level, code) for level in range(config.levels + 1) for code in range(config.codebook_size)]
        users = [f"<u_{index}>" for index in range(config.user_tokens)] if config.with_user_id else []
        return codes + users

    def build_tokenizer(self, data: TrainingData, identifiers: list[str],
                        users: list[str] | None) -> "PreTrainedTokenizerBase":
        from bench.engine.tokenizer import whole_token_tokenizer

        # §4.1: the vocabulary is the codes of every level and the user tokens, nothing else.
        return whole_token_tokenizer(self.vocabulary())

    def build_model(self, tokenizer: "PreTrainedTokenizerBase") -> "T5ForConditionalGeneration":
        # From scratch in every profile: TIGER has no pre-trained checkpoint.
        return build_small_model(self.config, len(tokenizer), self.context.seed)

    def training_examples(self, data: TrainingData, identifiers: list[str],
                          users: list[str] | None) -> CodeSequenceExamples:
        return CodeSequenceExamples(data.split.train, identifiers, self.config.max_history, users)

    def prompts(self, users: np.ndarray, histories: list[np.ndarray]) -> list[str]:
        max_history = self.config.max_history
        return [code_prompt(history[-max_history:], self.identifiers, self.users[user] if self.users else None)
                for user, history in zip(np.asarray(users).tolist(), histories)]

    def metadata(self) -> dict[str, Any]:
        found = super().metadata()
        found.pop("backbone", None)  # no pre-trained backbone in any profile
        found["semantic_ids"] = self.config.semantic_ids
        found["text_encoder"] = self.text_encoder
        found.update(self.semantic.report)
        return found
