"""IDGenRec's options (the recommender's through the engine, the ID generator's, the zero-shot
foundation's sources and its own) and its schedule of training phases (Sec. 2.5)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from bench.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, option
from bench.data.fusion import FoundationConfig
from bench.engine.model import OutputHeadConfig, T5EngineConfig
from methods.idgenrec.generator import IDGeneratorConfig


@dataclasses.dataclass(frozen=True)
class IDGenRecConfig(OutputHeadConfig, T5EngineConfig, IDGeneratorConfig, FoundationConfig):
    """Recommender (engine) options, ID generator options, the zero-shot foundation's sources,
    and IDGenRec's own. ``epochs`` is the recommender's epochs per round; ``learning_rate`` its
    learning rate. ``output_head=id_tokens`` scores the tokens of the current item IDs in a
    recommender phase and at evaluation; a generator phase trains through the full layer, as
    the IDs it writes may use any token."""

    training: Literal["alternate", "id-only", "rec-only"] = option(
        "alternate", "training strategy (Table 5): alternate | id-only | rec-only")
    ids: Literal["item", "user", "user+item"] = option("user+item", "IDs written into prompts (Table 6): item | user | "
                                                                    "user+item")
    rounds: int = option(3, "rounds of (ID generator phase, recommender phase)", range=AT_LEAST_ONE)
    generator_first: bool = option(True, "each round starts with the ID generator phase, the first round too "
                                         "(paper); off: the first round trains the recommender only")
    generator_epochs: int = option(1, "ID generator epochs per round (through the frozen recommender)",
                                   range=AT_LEAST_ONE)
    generator_phase_learning_rate: float = option(1e-8, "AdamW learning rate of the ID generator phase (constant)",
                                                  range=POSITIVE)
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
class TrainingPhase:
    index: int
    kind: str  # "generator" or "recommender"
    round: int


def schedule(config: IDGenRecConfig) -> list[TrainingPhase]:
    kinds: list[tuple[str, int]] = []
    for round_number in range(1, config.rounds + 1):
        if config.training != "rec-only" and (round_number > 1 or config.generator_first):
            kinds.append(("generator", round_number))
        if config.training != "id-only":
            kinds.append(("recommender", round_number))
    return [TrainingPhase(index, kind, round_number) for index, (kind, round_number) in enumerate(kinds)]
