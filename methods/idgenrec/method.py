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
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.data.fusion import build_fusion
from bench.engine.model import build_model, count_parameters
from bench.engine.output_head import output_facts, use_id_token_head
from bench.engine.prompt_encoding import PromptEncoder, pad_token_lists
from bench.engine.prompts import TEST_TEMPLATE
from bench.engine.recommender import check_unique_identifiers
from bench.engine.selection import SELECTION_METRIC, validation_scorer
from bench.engine.training import train_seq2seq
from bench.method import Method, TrainingData
from bench.storage import locked
from bench.data.split import Phase
from methods.idgenrec.config import IDGenRecConfig, TrainingPhase, schedule
from methods.idgenrec.corpus import Corpus, dataset_corpus, fusion_corpus
from methods.idgenrec.generator_phase import generator_phase
from methods.idgenrec.prompting import PromptWriter
from methods.idgenrec.snapshots import (BEST_SNAPSHOT_FILE, SNAPSHOT_FILE, Snapshot, read_snapshot, save_snapshot,
                                        write_ids_table)
from methods.idgenrec.start import foundation_folder, shared_start
from methods.idgenrec.state import ScheduleState
from methods.idgenrec.user_ids import user_id_texts

if TYPE_CHECKING:
    from bench.engine.trie import ItemTrie

IDS_FILE = "ids.tsv"


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
    # generator phase's task runs the generator itself, not the loop's data-parallel wrapper.
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
        started = time.perf_counter()
        start = shared_start(config, context, corpus, self._progress)
        self.start_seconds = round(time.perf_counter() - started, 2)
        tokenizer, generator, initial, self.start_dir = start.tokenizer, start.generator, start.initial, start.directory
        self.tokenizer, self.generator = tokenizer, generator
        self.prompts = PromptWriter(tokenizer, PromptEncoder(tokenizer, config.with_users), config, context.seed)
        self.recommender = build_model(config, context.profile, tokenizer, context.seed)
        self.vocabulary_head = self.recommender.lm_head  # T5's own layer, for the generator phases
        # Model selection on the validation targets of what the run trains on: the evaluated
        # dataset's, or (zero-shot) the foundation sources', ranked among the foundation's
        # catalogue; nothing of the evaluated dataset is read before its evaluation.
        self.validate = validation_scorer(self, corpus.split, config.validation_users, context)

        state = ScheduleState(item_ids=list(initial["ids"]))
        # A zero-shot foundation depends on the sources and the config, not on the evaluated
        # dataset: its schedule runs in a shared folder, so a second target (Toys, then Yelp)
        # loads the finished, selected foundation instead of training it again.
        self.schedule_dir = foundation_folder(config, context, corpus) if zero_shot else context.work_dir
        with locked(self.schedule_dir) if zero_shot else contextlib.nullcontext():
            state = self._run_schedule(corpus, state)
        self.log = state.log
        self.selected_phase, self.selection = state.selected_phase, state.selection
        if zero_shot and self.selection is not None:
            self.selection = {**self.selection, "on": "validation items of the foundation sources "
                              f"({', '.join(corpus.sources)}), ranked among their {len(corpus.item_texts)} items"}
        self.initial_item_ids = list(initial["ids"])
        self.initial_item_stats = initial["stats"]
        self.train_item_stats = state.item_stats if state.item_stats is not None else initial["stats"]

        # IDs of the evaluated dataset: the trained ones, or (zero-shot) new ones written
        # by the selected generator for a catalogue it never saw.
        if zero_shot:
            unique = generator.unique_ids(list(data.dataset.item_text), self._progress("item IDs, evaluated"))
            self.item_ids, self.eval_item_stats = unique.ids, unique.stats.to_dict()
        else:
            self.item_ids, self.eval_item_stats = state.item_ids, None
        # User IDs per evaluated phase, made when that phase is first ranked (a run that
        # evaluates only the test phase never pays for the validation phase's).
        self.user_ids: dict[str, list[str]] = {}
        if config.with_users and not zero_shot:
            self.user_ids["valid"] = state.user_ids  # the training prompts' IDs
        self._build_trie(data.dataset.item_ids)
        self.ranked_phase: Phase = "test"  # until the evaluator names the phase it ranks
        # All item IDs of the run (initial and final) for ``bench ids show``.
        initial_ids = self.initial_item_ids if not config.foundation_datasets else [""] * data.n_items
        self.ids_file = write_ids_table(self.context.work_dir / IDS_FILE, data.dataset, initial_ids, self.item_ids)

    def _progress(self, label: str):
        return lambda iterable, **kwargs: self.context.progress(iterable, **{**kwargs, "desc": f"{label}: "
                                                                             f"{kwargs.get('desc', '')}"})

    # ------------------------------------------------------------ schedule

    def _run_schedule(self, corpus: Corpus, state: ScheduleState) -> ScheduleState:
        """Run the phases after the last one a snapshot records (resume at a phase boundary)."""
        snapshot_file = self.schedule_dir / SNAPSHOT_FILE
        done = 0
        if snapshot_file.is_file():
            saved = read_snapshot(snapshot_file)
            self.recommender.load_state_dict(saved.recommender)
            self.generator.model.load_state_dict(saved.generator)
            state, done = saved.state, saved.phases_done
        elif self.config.with_users:
            users = self.generator.unique_ids(corpus.user_texts, self._progress("user IDs"))
            state.user_ids, state.user_stats = users.ids, users.stats.to_dict()
        self.phases_loaded = done
        for phase in schedule(self.config)[done:]:
            clock = time.perf_counter()
            if phase.kind == "recommender":
                entry = self._recommender_phase(phase, corpus, state)
            else:
                entry = self._generator_phase(phase, corpus, state)
            entry.update({"phase": phase.index, "kind": phase.kind, "round": phase.round,
                          "seconds": round(time.perf_counter() - clock, 2)})
            state.log.append(entry)
            best = entry.get("best_validation")
            improved = best is not None and (state.selected_phase is None or best > state.selected_value)
            if improved:
                state.selected_phase, state.selected_value = phase.index, best
            snapshot = Snapshot(self.recommender.state_dict(), self.generator.model.state_dict(), state,
                                phases_done=phase.index + 1)
            save_snapshot(snapshot, (self.schedule_dir / BEST_SNAPSHOT_FILE, snapshot_file) if improved
                          else (snapshot_file,))
        state = self._selected(state)
        self.generator.model.eval()
        self.recommender.eval()
        return state

    def _selected(self, state: ScheduleState) -> ScheduleState:
        """Test with the recommender phase of best validation NDCG@10 (each phase already
        ended on its best epoch): its recommender, its generator and its IDs, which belong
        together. The log keeps every phase."""
        selected = state.selected_phase
        last = max((entry["phase"] for entry in state.log if entry["kind"] == "recommender"), default=None)
        if selected is None or selected == last:
            return state
        saved = read_snapshot(self.schedule_dir / BEST_SNAPSHOT_FILE)
        self.recommender.load_state_dict(saved.recommender)
        self.generator.model.load_state_dict(saved.generator)
        return dataclasses.replace(saved.state, log=state.log, selected_phase=selected,
                                   selected_value=state.selected_value)

    def _use_ids(self, state: ScheduleState) -> None:
        """Rank the corpus' catalogue with the schedule's current IDs (validation inside a
        recommender phase)."""
        self.item_ids = list(state.item_ids)
        self.user_ids = {"valid": state.user_ids} if self.config.with_users else {}
        self._build_trie(self.corpus.item_names)

    def _recommender_phase(self, phase: TrainingPhase, corpus: Corpus, state: ScheduleState) -> dict[str, Any]:
        """Train the recommender on prompts written with the current IDs (the engine's loop,
        model-selected on validation); the phase's log entry."""
        config, context = self.config, self.context
        examples = self.prompts.recommender_examples(corpus, state, phase.index)
        self._use_ids(state)  # validation ranks with them; an ID-token layer scores their tokens
        report = train_seq2seq(self.recommender, self.tokenizer, examples, config,
                               self.schedule_dir / f"phase-{phase.index:02d}-recommender", context,
                               validate=self.validate, description=f"round {phase.round}/{config.rounds} recommender")
        found = report.record()
        for key in ("max_epochs", "optimizer_steps", "selection"):
            found.pop(key)
        if report.best_epoch is not None:
            found["best_validation"] = next(entry["validation"][SELECTION_METRIC] for entry in report.training_curve
                                            if entry["epoch"] == report.best_epoch)
        state.selection = report.selection
        return found

    def _generator_phase(self, phase: TrainingPhase, corpus: Corpus, state: ScheduleState) -> dict[str, Any]:
        """Train the generator through the frozen recommender, then regenerate all IDs."""
        self.recommender.lm_head = self.vocabulary_head  # the IDs it writes may hold any token
        return generator_phase(self.generator, self.recommender, self.prompts, phase, corpus, state, self.config,
                               self.context, self.schedule_dir / f"phase-{phase.index:02d}-generator",
                               self._progress)

    # ---------------------------------------------------------- evaluation

    def _build_trie(self, item_names: list[str]) -> None:
        from bench.engine.trie import ItemTrie

        owner = "method idgenrec"
        check_unique_identifiers(self.item_ids, item_names, owner)
        tokens = [tokens + [self.tokenizer.eos_token_id] for tokens in self.prompts.token_lists(self.item_ids)]
        check_unique_identifiers([tuple(t) for t in tokens], item_names, owner, what="the token sequence")
        self.item_tokens = [t[:-1] for t in tokens]
        self._user_token_cache: dict[str, list[list[int]]] = {}
        self.trie: ItemTrie = ItemTrie.build(tokens, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id)
        if self.config.output_head == "id_tokens":
            use_id_token_head(self.recommender, [token for item_tokens in tokens for token in item_tokens])

    def _user_tokens(self, phase: str) -> list[list[int]]:
        """Token lists of the phase's user IDs, generated from what the phase may see."""
        if phase not in self.user_ids:
            config = self.config
            texts = user_id_texts(self.data.split, self.data.dataset, phase, config.user_id_max_items)
            self.user_ids[phase] = self.generator.unique_ids(texts, self._progress(f"user IDs, {phase}")).ids
        if phase not in self._user_token_cache:
            self._user_token_cache[phase] = self.prompts.token_lists(self.user_ids[phase])
        return self._user_token_cache[phase]

    def prepare_phase(self, phase: Phase) -> None:
        # The user IDs of a phase are made from what that phase may see.
        self.ranked_phase = phase

    def rank(self, users: np.ndarray, histories: list[np.ndarray], k: int,
             candidates: np.ndarray | None = None) -> np.ndarray:
        from bench.engine.beam_search import rank_items

        config = self.config
        prompts = []
        for user, history in zip(np.asarray(users).tolist(), histories):
            user_tokens = self._user_tokens(self.ranked_phase)[user] if config.with_users else None
            prompts.append(self.prompts.prompt(TEST_TEMPLATE, np.asarray(history)[-config.max_history:],
                                               self.item_tokens, user_tokens).input_ids)
        input_ids, attention_mask = pad_token_lists(prompts, self.tokenizer.pad_token_id)
        return rank_items(self.recommender, input_ids, attention_mask, self.trie, k, config.beam_width, candidates,
                          runtime=self.context.runtime)

    # -------------------------------------------------------------- record

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
            **output_facts(self.recommender),
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
