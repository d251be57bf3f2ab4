"""TIGER (Rajput et al., "Recommender Systems with Generative Retrieval", NeurIPS 2023) as a
:class:`~bench.engine.recommender.GenerativeRecommender`.

Items are named by Semantic IDs: the RQ-VAE codes of their text embedding plus a collision
code (:mod:`methods.tiger.rqvae`; ``tokenizer=letter`` adds LETTER's regularisers,
:mod:`methods.tiger.letter`), each code its own token (``<a_12> <b_3> <c_200> <d_0>``).
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
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

import numpy as np

from bench.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, option
from bench.engine.model import build_small_model
from bench.engine.recommender import FixedIDConfig, GenerativeRecommender
from bench.errors import BenchError
from bench.method import TableColumn, TrainingData
from bench.shared_artifacts import shared_artifact
from methods.tiger.letter import LetterSettings
from methods.tiger.rqvae import RQVAESettings, SemanticIds, semantic_ids

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, T5ForConditionalGeneration

LEVEL_LETTERS = "abcdefghijklmnopqrstuvwxyz"
CODES_FILE = "semantic_ids.npz"
# The SASRec that gives LETTER its collaborative embeddings reads this many recent items
# (SETRec's CF tokenizer default, whose cache LETTER shares).
LETTER_CF_MAX_SEQ_LENGTH = 50


@dataclasses.dataclass(frozen=True)
class TIGERConfig(FixedIDConfig):
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
    codebook_size: int = option(256, "codes per RQ-VAE level, and values of the collision code (TIGER §4.1: 256)",
                                range=AT_LEAST_ONE)
    levels: int = option(3, "RQ-VAE levels; the collision code comes on top (TIGER §4.1: 3)", range=AT_LEAST_ONE)
    latent_dim: int = option(32, "RQ-VAE latent and code size (TIGER §4.1: 32)", range=AT_LEAST_ONE)
    rqvae_epochs: int = option(20_000, "RQ-VAE training epochs (TIGER §4.1: 20k)", range=AT_LEAST_ONE)
    rqvae_batch_size: int = option(1024, "RQ-VAE batch size (TIGER §4.1: 1024)", range=AT_LEAST_ONE)
    rqvae_learning_rate: float = option(0.4, "RQ-VAE Adagrad learning rate (TIGER §4.1: 0.4); tokenizer=letter "
                                             "trains with letter_learning_rate instead", range=POSITIVE)
    commitment_weight: float = option(0.25, "β of the RQ-VAE commitment loss (TIGER §3.1: 0.25)", range=NON_NEGATIVE)
    restart_dead_codes: bool = option(False, "restart codes no item chose in an epoch at residuals of the batch "
                                             "(SoundStream's cure for codebook collapse; not in TIGER)")
    user_tokens: int = option(2000, "user ID tokens; a user's ID is hashed to one of them (TIGER §4.1: 2000)",
                              range=AT_LEAST_ONE)
    # LETTER's tokenizer (Wang et al., CIKM 2024, §3.1) as a switch of the RQ-VAE's loss.
    tokenizer: Literal["rqvae", "letter"] = option(
        "rqvae", "the loss the RQ-VAE codes are trained with (semantic_ids=rqvae only): rqvae: TIGER's "
                 "(reconstruction + quantisation, TIGER §3.1); letter: LETTER's tokenizer, that loss plus its "
                 "collaborative regulariser (codes aligned with SASRec item embeddings) and its diversity "
                 "regulariser (code embeddings pulled towards their cluster), LETTER §3.1", added_later=True)
    letter_cf_weight: float = option(
        0.1, "α, weight of LETTER's collaborative regulariser (LETTER §3.1; 0.1 in the authors' released Beauty "
             "tokenizer command, 0.01 in their Instruments one)", added_later=True, range=NON_NEGATIVE)
    letter_diversity_weight: float = option(
        1e-4, "β, weight of LETTER's diversity regulariser, on its mean over levels (LETTER §3.1; 1e-4 in the "
              "authors' released tokenizer commands)", added_later=True, range=NON_NEGATIVE)
    letter_learning_rate: float = option(
        1e-3, "learning rate of LETTER's RQ-VAE optimizer, AdamW, in place of TIGER's Adagrad (the authors' "
              "released tokenizer: AdamW, 1e-3)", added_later=True, range=POSITIVE)
    letter_weight_decay: float = option(
        1e-4, "AdamW weight decay of LETTER's RQ-VAE (the authors' released tokenizer: 1e-4)", added_later=True,
        range=NON_NEGATIVE)
    letter_clusters: int = option(
        10, "groups the code embeddings of each level are clustered into, once per epoch, for LETTER's diversity "
            "regulariser (LETTER §3.1; 10 in the released code)", added_later=True, range=AT_LEAST_ONE)
    letter_cf_epochs: int = option(
        300, "maximum epochs of the SASRec giving LETTER its collaborative item embeddings (SETRec's CF tokenizer, "
             "latent_dim wide, early stopping on an inner validation item of the training split)", added_later=True,
             range=AT_LEAST_ONE)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.levels + 1 > len(LEVEL_LETTERS):
            raise BenchError(f"config key 'levels' must be at most {len(LEVEL_LETTERS) - 1}, got {self.levels}")
        if self.tokenizer == "letter" and self.semantic_ids != "rqvae":
            raise BenchError(f"config key 'tokenizer' is letter, which regularises the RQ-VAE: it needs "
                             f"semantic_ids=rqvae, got {self.semantic_ids}")

    def rqvae_settings(self) -> RQVAESettings:
        settings = RQVAESettings(latent_dim=self.latent_dim, levels=self.levels, codebook_size=self.codebook_size,
                                 epochs=self.rqvae_epochs, batch_size=self.rqvae_batch_size,
                                 learning_rate=self.rqvae_learning_rate, commitment_weight=self.commitment_weight,
                                 restart_dead_codes=self.restart_dead_codes)
        if self.tokenizer == "rqvae":
            return settings
        # LETTER's tokenizer as released: its optimizer and its two regularisers (LETTER §3.1).
        letter = LetterSettings(cf_weight=self.letter_cf_weight, diversity_weight=self.letter_diversity_weight,
                                clusters=self.letter_clusters)
        return dataclasses.replace(settings, optimizer="adamw", learning_rate=self.letter_learning_rate,
                                   weight_decay=self.letter_weight_decay, letter=letter)


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
    # Precision auto: bf16 where the CPU computes it natively, else fp32 (bench.devices).
    # The output layer scores the code tokens only: with residual k-means codes and the
    # paper's schedule shape (sweeps/table4.toml's TIGER settings) it reached the committed
    # settings' validation score on chronological Toys 3.6x sooner (benchmarks/README.md,
    # time to quality); on demo HR@10 0.3475 against 0.28. The schedule's 1,000 warm-up steps
    # stay the sweep's: a cpu-profile run on demo trains fewer steps than that.
    profiles = {"cpu": {"threads": 1, "rqvae_epochs": 100, "restart_dead_codes": True, "epochs": 4,
                        "precision": "auto", "output_head": "id_tokens"}}
    # The TIGER column of the papers' tables takes TIGER's own tokenizer; LETTER's is this one.
    table_columns = (TableColumn(table="standard", label="TIGER+LETTER", where={"tokenizer": "letter"},
                                 family="generative"),)

    def item_identifiers(self, data: TrainingData) -> list[str]:
        self.semantic = self._semantic_ids(data)
        return [" ".join(code_token(level, int(code)) for level, code in enumerate(row))
                for row in self.semantic.codes]

    def _semantic_ids(self, data: TrainingData) -> SemanticIds:
        """The items' codes, computed once per run folder (a resumed run reuses them)."""
        from bench.engine.text_embeddings import resolve_encoder

        config: TIGERConfig = self.config
        path = Path(self.context.work_dir) / CODES_FILE
        self.text_encoder = None if config.semantic_ids == "random" else resolve_encoder(self.context.profile,
                                                                                         config.encoder)
        # Every process trains the same RQ-VAE, but GPU kernels need not give bit-identical codes:
        # the others then read the main one's, so an item has one ID in all of them.
        return shared_artifact(path, self.context.runtime, lambda: self._computed_ids(data), _write_codes,
                               lambda stored: _read_codes(stored, config.tokenizer),
                               every_process_computes=True).value

    def _computed_ids(self, data: TrainingData) -> SemanticIds:
        from bench.data.prepare import cache_root
        from bench.engine.text_embeddings import item_text_embeddings

        config: TIGERConfig = self.config
        embeddings = None
        if config.semantic_ids != "random":
            embeddings = item_text_embeddings(list(data.dataset.item_text), self.context.profile, config.encoder,
                                              cache_root() / "text-embeddings", self.context)
        cf_embeddings, cf_facts = self._letter_cf_embeddings(data) if config.tokenizer == "letter" else (None, None)
        result = semantic_ids(embeddings, data.n_items, config.rqvae_settings(), config.semantic_ids,
                              self.context.seed, self.context, cf_embeddings)
        result.report["tokenizer"] = config.tokenizer
        if cf_facts is not None:
            result.report["letter_cf_tokenizer"] = cf_facts
        if embeddings is not None:
            result.report["text_embedding_dim"] = int(embeddings.shape[1])
        return result

    def _letter_cf_embeddings(self, data: TrainingData) -> tuple[np.ndarray, dict[str, Any]]:
        """LETTER §3.1's collaborative embeddings: SASRec item embeddings as wide as the RQ-VAE
        latent, from SETRec's CF tokenizer (trained on the training split only, cached and
        shared with any SETRec run of the same options)."""
        from methods.setrec.cf_tokenizer import cf_item_embeddings

        config: TIGERConfig = self.config
        options = {"hidden_size": config.latent_dim, "epochs": config.letter_cf_epochs,
                   "max_seq_length": LETTER_CF_MAX_SEQ_LENGTH, "max_train_minutes": 0.0,
                   "threads": max(config.threads, 1)}
        embeddings, facts = cf_item_embeddings(data.dataset, data.split, options, self.context)
        summary = {key: facts[key] for key in ("key", "reused", "epochs_trained", "best_epoch", "stopped_by",
                                             "recbole_valid_ndcg@10", "training_seconds") if key in facts}
        return embeddings, summary

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


def _write_codes(result: SemanticIds, stream) -> None:
    np.savez(stream, codes=result.codes, report=np.asarray(json.dumps(result.report)))


def _read_codes(path: Path, tokenizer: str) -> SemanticIds:
    stored = np.load(path, allow_pickle=False)
    report = json.loads(str(stored["report"]))
    # Codes stored before the switch existed are TIGER's own.
    if report.get("tokenizer", "rqvae") != tokenizer:
        raise BenchError(f"{path}: holds codes of tokenizer={report.get('tokenizer', 'rqvae')}, this run "
                         f"trains tokenizer={tokenizer}; remove the file to train them anew")
    return SemanticIds(codes=stored["codes"], report=report)
