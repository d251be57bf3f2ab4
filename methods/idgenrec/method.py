"""The ``idgenrec`` plugin: ID generator + diverse IDs + T5 recommender, alternate training,
the paper's ablations as config switches, and the zero-shot foundation model.

A run goes through these steps (each resumable; see :meth:`IDGenRec.fit`):

1. **Start** (shared by every run with the same data, profile, seed and generator
   options, so the ablations of one dataset do it once): the tokenizer (``cpu``: trained
   on the item text and the prompts' words), the ID generator (``cpu``: warm-started, see
   :mod:`methods.idgenrec.generator`) and the initial item IDs by Algorithm 1.
2. **Schedule** of phases, after Sec. 2.5: ``rounds`` rounds of (ID generator phase,
   recommender phase). A generator phase trains the generator for ``generator_epochs``
   through the frozen recommender (:mod:`methods.idgenrec.soft_ids`), then regenerates the
   IDs of all items (and users). A recommender phase trains the recommender for
   ``epochs`` on prompts written with the current IDs. ``training`` picks the phases:
   ``alternate`` both, ``rec-only`` only recommender phases (the initial IDs stay),
   ``id-only`` only generator phases (the recommender keeps its initial weights).
3. **Evaluation** by beam search constrained to the final item IDs. User IDs of the test
   phase are generated from the training part plus the validation item; never from the
   test item.

With ``foundation_datasets`` set, steps 1-2 run on the fusion of those datasets instead
of the evaluated one, model-selected on the fusion's validation items (the rule UniSRec's
pre-training follows), and step 3 generates IDs for the evaluated dataset's items and
users with the selected generator: nothing of it is trained on or read before the
evaluation (zero-shot, Sec. 3.5). The foundation's schedule runs in
``$GENREC_BENCH_CACHE/idgenrec-foundation/<key>``, keyed by the sources and the options only,
so a second target (Table 7's Yelp row after Toys) reuses the trained, selected foundation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bench.config import AT_LEAST_ONE, NON_NEGATIVE, option
from bench.data.fusion import FoundationConfig, build_fusion
from bench.data.prepare import cache_root
from bench.engine.model import T5EngineConfig, build_model, count_parameters
from bench.engine.prompt_encoding import USER_SLOT, PromptEncoder, pad_token_lists
from bench.engine.prompts import TEST_TEMPLATE, sample_template_indices, template_words
from bench.engine.recommender import check_unique_identifiers
from bench.engine.tokenizer import build_tokenizer
from bench.engine.batching import SequentialExamples
from bench.engine.selection import SELECTION_METRIC, validation_scorer
from bench.engine.training import train_seq2seq
from bench.errors import BenchError
from bench.method import Method, TrainingData
from bench.identity import identity_digest
from bench.shared_artifacts import atomic_save
from bench.storage import atomic_write_text, locked
from methods.idgenrec.corpus import Corpus, dataset_corpus, fusion_corpus
from methods.idgenrec.generator import IDGeneratorConfig, build_id_generator, clean_id, warm_start
from methods.idgenrec.soft_ids import SoftBatch, frozen, soft_id_loss
from methods.idgenrec.user_ids import user_id_texts

if TYPE_CHECKING:
    from bench.engine.trie import ItemTrie

SNAPSHOT_FILE = "snapshot.pt"
BEST_SNAPSHOT_FILE = "best-snapshot.pt"
IDS_FILE = "ids.tsv"


@dataclasses.dataclass(frozen=True)
class IDGenRecConfig(T5EngineConfig, IDGeneratorConfig, FoundationConfig):
    """Recommender (engine) options, ID generator options, the zero-shot foundation's sources,
    and IDGenRec's own. ``epochs`` is the recommender's epochs per round; ``learning_rate`` its
    learning rate."""

    training: Literal["alternate", "id-only", "rec-only"] = option(
        "alternate", "training strategy (Table 5): alternate | id-only | rec-only")
    ids: Literal["item", "user", "user+item"] = option("user+item", "IDs written into prompts (Table 6): item | user | "
                                                                    "user+item")
    rounds: int = option(3, "rounds of (ID generator phase, recommender phase)", range=AT_LEAST_ONE)
    generator_first: bool = option(True, "each round starts with the ID generator phase, the first round too "
                                         "(paper); off: the first round trains the recommender only")
    generator_epochs: int = option(1, "ID generator epochs per round (through the frozen recommender)",
                                   range=AT_LEAST_ONE)
    generator_phase_learning_rate: float = option(1e-8, "AdamW learning rate of the ID generator phase")
    generator_phase_examples: int = option(0, "training examples per generator epoch, drawn afresh each "
                                              "round (0: all of them)", range=NON_NEGATIVE)
    user_id_max_items: int = option(20, "most recent visible items whose text makes a user's ID", range=AT_LEAST_ONE)

    @property
    def with_items(self) -> bool:
        return "item" in self.ids

    @property
    def with_users(self) -> bool:
        return "user" in self.ids


@dataclasses.dataclass(frozen=True)
class Phase:
    index: int
    kind: str  # "generator" or "recommender"
    round: int


def schedule(config: IDGenRecConfig) -> list[Phase]:
    kinds: list[tuple[str, int]] = []
    for round_number in range(1, config.rounds + 1):
        if config.training != "rec-only" and (round_number > 1 or config.generator_first):
            kinds.append(("generator", round_number))
        if config.training != "id-only":
            kinds.append(("recommender", round_number))
    return [Phase(index, kind, round_number) for index, (kind, round_number) in enumerate(kinds)]


class IDGenRec(Method):
    config_class = IDGenRecConfig
    output = "ranking"
    supports_candidates = True  # the beam search runs over the trie of the candidates
    # cpu: a small recommender trained from scratch, so fewer epochs per round than the
    # paper's 10 (a few minutes on demo; Toys runs set their budget in benchmarks/configs).
    # The generator phase's learning rate: the paper's 1e-8 moves AdamW's weights by about
    # 1e-8 per step, which changes no decoded token of a small generator in one epoch
    # (its IDs would never change); 1e-4 lets the phase matter. The first round starts with
    # the recommender, as a randomly initialised recommender gives the generator no signal
    # (the paper's recommender starts from pre-trained t5-small).
    # The generator phase reads every ID of a batch's prompts through the generator (item
    # text and user text), so it costs several recommender epochs per epoch; the cpu
    # profile draws 512 examples for it, and builds user IDs from the 5 most recent items.
    # 2,000 validation users as the engine's cpu profile (GenerativeRecommender), but fp32:
    # bf16 once made two identical fits in one process differ (the runtime was shared state;
    # fixed since: one runtime per precision, and the test below runs every phase in bf16),
    # and the long Toys runs were made in fp32, so the default stays until bf16 is measured.
    # One process: the shared start is built under a file lock that a second process would
    # wait on while the first waits for it in the data-parallel warm start; and the
    # generator phase's loop does not go through the runtime's data-parallel wrapper.
    supports_processes = False
    profiles = {"cpu": {"epochs": 3, "threads": 1, "generator_phase_learning_rate": 1e-4, "generator_first": False,
                        "generator_phase_examples": 512, "user_id_max_items": 5, "validation_users": 2000}}

    # ----------------------------------------------------------------- fit

    def fit(self, data: TrainingData) -> None:
        config: IDGenRecConfig = self.config
        context = self.context
        self.data = data
        zero_shot = bool(config.foundation_datasets)
        if zero_shot:
            # Of the evaluated dataset only its name, folder and split protocol are read here.
            fusion = build_fusion(config, data.dataset, context.seed, data.split.protocol)
            corpus = fusion_corpus(fusion, config.with_users, config.user_id_max_items)
        else:
            corpus = dataset_corpus(data.dataset, data.split, config.with_users, config.user_id_max_items)
        self.corpus = corpus
        # The split that rank() serves: the corpus' during training (validation), the
        # evaluated dataset's after fit; the same split unless zero-shot.
        self.ranked_split = corpus.split
        started = time.perf_counter()
        tokenizer, generator, initial = self._start(corpus)
        self.start_seconds = round(time.perf_counter() - started, 2)
        self.tokenizer, self.generator = tokenizer, generator
        self.encoder = PromptEncoder(tokenizer, config.with_users)
        recommender = build_model(config, context.profile, tokenizer, context.seed)
        self.recommender = recommender
        # Model selection on the validation targets of what the run trains on: the evaluated
        # dataset's, or (zero-shot) the foundation sources', ranked among the foundation's
        # catalogue; nothing of the evaluated dataset is read before its evaluation.
        self.validate = validation_scorer(self, corpus.split, config.validation_users, context)

        state = {"item_ids": list(initial["ids"]), "user_ids": None, "log": [],
                 "initial_item_stats": initial["stats"], "user_stats": None}
        # A zero-shot foundation depends on the sources and the config, not on the evaluated
        # dataset: its schedule runs in a shared folder, so a second target (Toys, then Yelp)
        # loads the finished, selected foundation instead of training it again.
        self.schedule_dir = self._foundation_dir(corpus) if zero_shot else context.work_dir
        with locked(self.schedule_dir) if zero_shot else contextlib.nullcontext():
            state = self._run_schedule(corpus, state)
        self.log = state["log"]
        self.selected_phase, self.selection = state.get("selected_phase"), state.get("selection")
        if zero_shot and self.selection is not None:
            self.selection = {**self.selection, "on": "validation items of the foundation sources "
                              f"({', '.join(corpus.sources)}), ranked among their {len(corpus.item_texts)} items"}
        self.initial_item_ids = list(initial["ids"])
        self.initial_item_stats = initial["stats"]
        self.train_item_stats = state.get("item_stats", initial["stats"])

        # IDs of the evaluated dataset: the trained ones, or (zero-shot) new ones written
        # by the selected generator for a catalogue it never saw.
        self.ranked_split = data.split
        if zero_shot:
            unique = generator.unique_ids(list(data.dataset.item_text), self._progress("item IDs, evaluated"))
            self.item_ids, self.eval_item_stats = unique.ids, unique.stats.to_dict()
        else:
            self.item_ids, self.eval_item_stats = state["item_ids"], None
        # User IDs per evaluated phase, made when that phase is first ranked (a run that
        # evaluates only the test phase never pays for the validation phase's).
        self.user_ids: dict[str, list[str]] = {}
        if config.with_users and not zero_shot:
            self.user_ids["valid"] = state["user_ids"]  # the training prompts' IDs
        self._build_trie(data.dataset.item_ids)
        self._write_ids(data)

    def _foundation_dir(self, corpus: Corpus) -> Path:
        """``$GENREC_BENCH_CACHE/idgenrec-foundation/<key>``: the key holds what the foundation
        is trained from (profile, seed, every option but ``threads``, the fused sources' item
        texts, training sequences, validation items and user texts), never the evaluated dataset."""
        options = {name: value for name, value in dataclasses.asdict(self.config).items() if name != "threads"}
        content = hashlib.sha256(("\n".join(corpus.item_texts) + "\0" + "\n".join(corpus.user_texts or [])).encode())
        for items in corpus.split.train + [np.full(1, -1)] + corpus.split.valid_items:
            content.update(np.asarray(items, dtype=np.int64).tobytes() + b"|")
        key = identity_digest({"profile": self.context.profile, "seed": self.context.seed, "options": options,
                       "content": content.hexdigest()})
        return cache_root() / "idgenrec-foundation" / key

    def _progress(self, label: str):
        return lambda iterable, **kwargs: self.context.progress(iterable, **{**kwargs, "desc": f"{label}: "
                                                                             f"{kwargs.get('desc', '')}"})

    def _start(self, corpus: Corpus):
        """Tokenizer, warm-started generator and initial item IDs, from the shared start folder."""
        config, context = self.config, self.context
        generator_options = {field.name: getattr(config, field.name) for field in dataclasses.fields(IDGeneratorConfig)}
        key_fields = {"profile": context.profile, "seed": context.seed, "backbone": config.backbone,
                      "vocab_size": config.vocab_size, "generator": generator_options,
                      "items": hashlib.sha256("\n".join(corpus.item_texts).encode()).hexdigest()}
        # The warm start trains under the run's precision, so a bf16 start is not an fp32 one.
        # fp32 stays out of the key so that starts made before precision existed are reused.
        if config.precision != "fp32":
            key_fields["precision"] = config.precision
        key = identity_digest(key_fields)
        directory = cache_root() / "idgenrec-start" / key
        with locked(directory):
            # One tokenizer for both wordings (with and without user IDs), so that every
            # ablation of a dataset shares the start.
            lowered = [clean_id(text) for text in corpus.item_texts]
            tokenizer_corpus = corpus.item_texts + lowered + template_words(True) + template_words(False)
            tokenizer = build_tokenizer(context.profile, config.backbone, tokenizer_corpus, directory / "tokenizer",
                                        config.vocab_size, context.seed)
            generator = build_id_generator(config, context.profile, tokenizer, context.seed, context.runtime)
            if context.profile == "cpu":
                warm_start(generator, corpus.item_texts, dataclasses.replace(context, work_dir=directory))
            initial_file = directory / "initial-ids.json"
            if initial_file.is_file():
                initial = json.loads(initial_file.read_text())
            else:
                unique = generator.unique_ids(corpus.item_texts, self._progress("initial item IDs"))
                initial = {"ids": unique.ids, "stats": unique.stats.to_dict()}
                atomic_write_text(initial_file, json.dumps(initial))
        self.start_dir = directory
        return tokenizer, generator, initial

    # ------------------------------------------------------------ schedule

    def _run_schedule(self, corpus: Corpus, state: dict[str, Any]) -> dict[str, Any]:
        """Run the phases after the last one a snapshot records (resume at a phase boundary)."""
        import torch

        snapshot_file = self.schedule_dir / SNAPSHOT_FILE
        done = 0
        if snapshot_file.is_file():
            try:
                saved = torch.load(snapshot_file, map_location="cpu", weights_only=False)
            except (OSError, RuntimeError, EOFError) as error:
                raise BenchError(f"{snapshot_file}: cannot read ({error}); delete it to train from scratch") from None
            self.recommender.load_state_dict(saved["recommender"])
            self.generator.model.load_state_dict(saved["generator"])
            state, done = saved["state"], saved["phases_done"]
        elif self.config.with_users:
            users = self.generator.unique_ids(corpus.user_texts, self._progress("user IDs"))
            state["user_ids"], state["user_stats"] = users.ids, users.stats.to_dict()
        self.phases_loaded = done
        for phase in schedule(self.config)[done:]:
            clock = time.perf_counter()
            if phase.kind == "recommender":
                entry = self._recommender_phase(phase, corpus, state)
            else:
                entry = self._generator_phase(phase, corpus, state)
            entry.update({"phase": phase.index, "kind": phase.kind, "round": phase.round,
                          "seconds": round(time.perf_counter() - clock, 2)})
            state["log"].append(entry)
            best = entry.get("best_validation")
            improved = best is not None and (state.get("selected_phase") is None or best > state["selected_value"])
            if improved:
                state["selected_phase"], state["selected_value"] = phase.index, best
            snapshot = {"recommender": self.recommender.state_dict(), "generator": self.generator.model.state_dict(),
                        "state": state, "phases_done": phase.index + 1}
            for path in ((self.schedule_dir / BEST_SNAPSHOT_FILE, snapshot_file) if improved else (snapshot_file,)):
                atomic_save(path, lambda stream: torch.save(snapshot, stream))
        state = self._selected(state)
        self.generator.model.eval()
        self.recommender.eval()
        return state

    def _selected(self, state: dict[str, Any]) -> dict[str, Any]:
        """Test with the recommender phase of best validation NDCG@10 (each phase already
        ended on its best epoch): its recommender, its generator and its IDs, which belong
        together. The log keeps every phase."""
        import torch

        selected = state.get("selected_phase")
        last = max((entry["phase"] for entry in state["log"] if entry["kind"] == "recommender"), default=None)
        if selected is None or selected == last:
            return state
        saved = torch.load(self.schedule_dir / BEST_SNAPSHOT_FILE, map_location="cpu", weights_only=False)
        self.recommender.load_state_dict(saved["recommender"])
        self.generator.model.load_state_dict(saved["generator"])
        return {**saved["state"], "log": state["log"], "selected_phase": selected,
                "selected_value": state["selected_value"]}

    def _use_ids(self, state: dict[str, Any]) -> None:
        """Rank the corpus' catalogue with the schedule's current IDs (validation inside a
        recommender phase)."""
        self.item_ids = list(state["item_ids"])
        self.user_ids = {"valid": state["user_ids"]} if self.config.with_users else {}
        self._build_trie(self.corpus.item_names)

    def _token_lists(self, ids: list[str]) -> list[list[int]]:
        return [list(tokens) for tokens in self.tokenizer(ids, add_special_tokens=False).input_ids]

    def _positions(self, corpus: Corpus) -> SequentialExamples:
        # Only its (user, position) pairs are used: which example predicts which item.
        return SequentialExamples(corpus.train_sequences, [""] * len(corpus.item_texts), self.config.max_history,
                                  self.context.seed, last_position_only=self.config.last_position_only)

    def _prompt(self, template: int, history: np.ndarray, item_tokens, user_tokens) -> Any:
        config = self.config
        written = [item_tokens[item] for item in history.tolist()] if config.with_items else []
        return self.encoder.encode(template, written, config.max_history if config.with_items else 0, user_tokens)

    def _recommender_phase(self, phase: Phase, corpus: Corpus, state: dict[str, Any]) -> dict[str, Any]:
        config, context = self.config, self.context
        item_tokens = self._token_lists(state["item_ids"])
        user_tokens = self._token_lists(state["user_ids"]) if config.with_users else None
        positions = self._positions(corpus)
        eos = self.tokenizer.eos_token_id

        def examples(epoch: int) -> list[tuple[list[int], list[int]]]:
            rng = np.random.default_rng([context.seed, phase.index, epoch, 0])
            templates = sample_template_indices(len(positions), rng)
            made = []
            for user, position, template in zip(positions.users.tolist(), positions.positions.tolist(),
                                                templates.tolist()):
                sequence = corpus.train_sequences[user]
                history = sequence[max(0, position - config.max_history):position]
                prompt = self._prompt(template, history, item_tokens, user_tokens[user] if user_tokens else None)
                made.append((prompt.input_ids, item_tokens[sequence[position]] + [eos]))
            return made

        if self.validate is not None:
            self._use_ids(state)
        report = train_seq2seq(self.recommender, self.tokenizer, examples, config,
                               self.schedule_dir / f"phase-{phase.index:02d}-recommender", context,
                               validate=self.validate, description=f"round {phase.round}/{config.rounds} recommender")
        found = report.record()
        for key in ("max_epochs", "optimizer_steps", "selection"):
            found.pop(key)
        if report.best_epoch is not None:
            found["best_validation"] = next(entry["validation"][SELECTION_METRIC] for entry in report.training_curve
                                            if entry["epoch"] == report.best_epoch)
        state["selection"] = report.selection
        return found

    def _generator_phase(self, phase: Phase, corpus: Corpus, state: dict[str, Any]) -> dict[str, Any]:
        """Train the generator through the frozen recommender, then regenerate all IDs."""
        import torch

        config, context = self.config, self.context
        generator, recommender = self.generator, self.recommender
        item_tokens = self._token_lists(state["item_ids"])
        user_tokens = self._token_lists(state["user_ids"]) if config.with_users else None
        positions = self._positions(corpus)
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        torch.manual_seed(context.seed + 1000 + phase.index)
        optimizer = torch.optim.AdamW(generator.model.parameters(), lr=config.generator_phase_learning_rate,
                                      weight_decay=0.0)
        losses = []
        generator.model.train()
        with frozen(recommender):
            for epoch in range(config.generator_epochs):
                rng = np.random.default_rng([context.seed, phase.index, epoch, 1])
                order = rng.permutation(len(positions))
                if config.generator_phase_examples:
                    order = order[:config.generator_phase_examples]
                templates = sample_template_indices(len(order), rng)
                starts = range(0, len(order), config.batch_size)
                bar = context.progress(starts, desc=f"round {phase.round}/{config.rounds} ID generator "
                                                    f"epoch {epoch + 1}/{config.generator_epochs}", unit="batch")
                for start in bar:
                    batch = self._soft_batch(corpus, positions, order[start:start + config.batch_size],
                                             templates[start:start + config.batch_size], item_tokens, user_tokens,
                                             state, eos)
                    loss = soft_id_loss(generator, recommender, batch, pad)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if config.max_grad_norm > 0:
                        torch.nn.utils.clip_grad_norm_(generator.model.parameters(), config.max_grad_norm)
                    optimizer.step()
                    losses.append(float(loss.detach()))
        generator.model.eval()
        previous = state["item_ids"]
        unique = generator.unique_ids(corpus.item_texts, self._progress(f"round {phase.round} item IDs"))
        state["item_ids"], state["item_stats"] = unique.ids, unique.stats.to_dict()
        entry = {"examples": int(len(order) * config.generator_epochs),
                 "mean_loss": round(float(np.mean(losses)), 6) if losses else None,
                 "item_ids_changed": int(sum(a != b for a, b in zip(previous, unique.ids))),
                 "item_id_stats": unique.stats.to_dict()}
        if config.with_users:
            users = generator.unique_ids(corpus.user_texts, self._progress(f"round {phase.round} user IDs"))
            entry["user_ids_changed"] = int(sum(a != b for a, b in zip(state["user_ids"], users.ids)))
            state["user_ids"], state["user_stats"] = users.ids, users.stats.to_dict()
        return entry

    def _soft_batch(self, corpus: Corpus, positions: SequentialExamples, examples: np.ndarray,
                    templates: np.ndarray, item_tokens, user_tokens, state: dict[str, Any], eos: int) -> SoftBatch:
        config = self.config
        prompts, span_entities, targets = [], [], []
        entity_text: dict[Any, str] = {}
        entity_tokens: dict[Any, list[int]] = {}
        for example, template in zip(examples.tolist(), templates.tolist()):
            user, position = int(positions.users[example]), int(positions.positions[example])
            sequence = corpus.train_sequences[user]
            history = sequence[max(0, position - config.max_history):position]
            prompt = self._prompt(template, history, item_tokens, user_tokens[user] if user_tokens else None)
            written = history[-config.max_history:].tolist() if config.with_items else []
            entities = []
            for span in prompt.spans:
                if span.slot == USER_SLOT:
                    entity = ("user", user)
                    entity_text[entity], entity_tokens[entity] = corpus.user_texts[user], user_tokens[user]
                else:
                    item = written[span.slot]
                    entity = ("item", item)
                    entity_text[entity], entity_tokens[entity] = corpus.item_texts[item], item_tokens[item]
                entities.append(entity)
            prompts.append(prompt)
            span_entities.append(entities)
            targets.append(item_tokens[sequence[position]] + [eos])
        return SoftBatch(prompts, span_entities, entity_text, entity_tokens, targets)

    # ---------------------------------------------------------- evaluation

    def _build_trie(self, item_names: list[str]) -> None:
        from bench.engine.trie import ItemTrie

        owner = "method idgenrec"
        check_unique_identifiers(self.item_ids, item_names, owner)
        tokens = [tokens + [self.tokenizer.eos_token_id] for tokens in self._token_lists(self.item_ids)]
        check_unique_identifiers([tuple(t) for t in tokens], item_names, owner, what="the token sequence")
        self.item_tokens = [t[:-1] for t in tokens]
        self._user_token_cache: dict[str, list[list[int]]] = {}
        self.trie: ItemTrie = ItemTrie.build(tokens, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id)

    def _user_tokens(self, phase: str) -> list[list[int]]:
        """Token lists of the phase's user IDs, generated from what the phase may see."""
        if phase not in self.user_ids:
            config = self.config
            texts = user_id_texts(self.data.split, self.data.dataset, phase, config.user_id_max_items)
            self.user_ids[phase] = self.generator.unique_ids(texts, self._progress(f"user IDs, {phase}")).ids
        if phase not in self._user_token_cache:
            self._user_token_cache[phase] = self._token_lists(self.user_ids[phase])
        return self._user_token_cache[phase]

    def _phase_of(self, user: int, history: np.ndarray) -> str:
        """The evaluator hands over histories only; the validation one is the training part."""
        return "valid" if len(history) == len(self.ranked_split.train[user]) else "test"

    def rank(self, users: np.ndarray, histories: list[np.ndarray], k: int,
             candidates: np.ndarray | None = None) -> np.ndarray:
        from bench.engine.beam_search import rank_items

        config = self.config
        prompts = []
        for user, history in zip(np.asarray(users).tolist(), histories):
            user_tokens = self._user_tokens(self._phase_of(user, history))[user] if config.with_users else None
            prompts.append(self._prompt(TEST_TEMPLATE, np.asarray(history)[-config.max_history:], self.item_tokens,
                                        user_tokens).input_ids)
        input_ids, attention_mask = pad_token_lists(prompts, self.tokenizer.pad_token_id)
        return rank_items(self.recommender, input_ids, attention_mask, self.trie, k, config.beam_width, candidates,
                          runtime=self.context.runtime)

    # -------------------------------------------------------------- record

    def _write_ids(self, data: TrainingData) -> None:
        """All item IDs of the run (initial and final) for ``bench ids show``."""
        initial = self.initial_item_ids if not self.config.foundation_datasets else [""] * data.n_items
        lines = ["item\tinitial_id\tfinal_id\ttext"]
        for item, (name, text) in enumerate(zip(data.dataset.item_ids, data.dataset.item_text)):
            cells = [name, initial[item], self.item_ids[item], " ".join(text.split())]
            lines.append("\t".join(cell.replace("\t", " ") for cell in cells))
        self.ids_file = self.context.work_dir / IDS_FILE
        atomic_write_text(self.ids_file, "\n".join(lines) + "\n")

    def metadata(self) -> dict[str, Any]:
        config = self.config
        found = {
            "profile": self.context.profile,
            "zero_shot": bool(config.foundation_datasets),
            "trained_on": self.corpus.sources,
            "recommender_parameters": count_parameters(self.recommender),
            "generator_parameters": count_parameters(self.generator.model),
            "vocab_size": len(self.tokenizer),
            "schedule": [{key: value for key, value in entry.items() if key != "training_curve"} for entry in self.log],
            "selection": self.selection,
            "selected_phase": self.selected_phase,
            "training_curve": [{"phase": entry["phase"], "round": entry["round"], **point}
                               for entry in self.log for point in entry.get("training_curve", ())],
            "start_seconds": self.start_seconds,
            "initial_item_id_stats": self.initial_item_stats,
            "final_item_id_stats": self.train_item_stats,
            "max_item_id_tokens": self.trie.max_depth - 1,
            "mean_item_id_words": round(float(np.mean([len(i.split()) for i in self.item_ids])), 3),
            "ids_file": str(self.ids_file),
        }
        if self.eval_item_stats is not None:
            found["evaluated_item_id_stats"] = self.eval_item_stats
        if config.foundation_datasets:
            # phases_loaded = phases: the foundation was trained by an earlier run (another target).
            found["foundation"] = {"folder": str(self.schedule_dir), "phases": len(schedule(config)),
                                   "phases_loaded": self.phases_loaded}
        if self.context.profile == "paper":
            found["backbone"], found["generator_checkpoint"] = config.backbone, config.generator_checkpoint
        return found
