"""Prompts for sequential recommendation, in the manner of P5 and IDGenRec.

Both papers train on a set of ten paraphrased sequential-recommendation prompts (one
drawn per example, a cheap form of data augmentation) and test on one fixed prompt. The
wording here is our own; each prompt exists with the user's ID (P5) and without it
(IDGenRec's ID-free setting). Items are written by their ID strings, most recent last.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

TEST_TEMPLATE = 0
HISTORY_SEPARATOR = ", "

# {user} is the user's ID string, {history} the joined item IDs.
TEMPLATES_WITH_USER: tuple[str, ...] = (
    "Considering {user} has interacted with items {history} . What is the next recommendation for the user ?",
    "User {user} has bought {history} in this order . Which item will {user} buy next ?",
    "Here is the purchase history of {user} : {history} . Predict the next item for this user .",
    "{user} interacted with {history} . Recommend the item {user} is most likely to choose next .",
    "Given the items {history} that user {user} chose before , what should be recommended next ?",
    "The interaction sequence of {user} is {history} . Guess the following item .",
    "After {history} , which item would user {user} pick next ?",
    "Items consumed so far by {user} : {history} . Name the next item to recommend .",
    "Based on the history {history} of {user} , suggest one item for the user to try next .",
    "{user} has visited {history} , one after another . What comes next for {user} ?",
)
TEMPLATES_WITHOUT_USER: tuple[str, ...] = (
    "Considering the user has interacted with items {history} . What is the next recommendation for the user ?",
    "A user has bought {history} in this order . Which item will the user buy next ?",
    "Here is the purchase history of a user : {history} . Predict the next item for this user .",
    "A user interacted with {history} . Recommend the item the user is most likely to choose next .",
    "Given the items {history} that a user chose before , what should be recommended next ?",
    "The interaction sequence of a user is {history} . Guess the following item .",
    "After {history} , which item would the user pick next ?",
    "Items consumed so far by a user : {history} . Name the next item to recommend .",
    "Based on the history {history} of a user , suggest one item for the user to try next .",
    "A user has visited {history} , one after another . What comes next for the user ?",
)
N_TEMPLATES = len(TEMPLATES_WITH_USER)


def templates(with_user_id: bool) -> tuple[str, ...]:
    return TEMPLATES_WITH_USER if with_user_id else TEMPLATES_WITHOUT_USER


def format_history(history_ids: Sequence[str], max_history: int) -> str:
    """The ``max_history`` most recent item IDs, oldest first."""
    return HISTORY_SEPARATOR.join(history_ids[-max_history:] if max_history > 0 else [])


def build_prompt(history_ids: Sequence[str], max_history: int, template_index: int = TEST_TEMPLATE,
                 user_id: str | None = None) -> str:
    """A prompt; with ``user_id`` the with-user wording, without it the ID-free one."""
    template = templates(user_id is not None)[template_index]
    return template.format(user=user_id, history=format_history(history_ids, max_history))


def sample_template_indices(count: int, rng: np.random.Generator) -> np.ndarray:
    """One training template per example, uniformly (P5 draws a prompt per sample)."""
    return rng.integers(0, N_TEMPLATES, size=count)


def template_words(with_user_id: bool) -> list[str]:
    """The prompts' wording as tokenizer-training text: the distinct words in every rotation.

    SentencePiece proposes pieces from substrings seen in more than one context; fed the
    ten templates verbatim, it learned no whole word of them (``Considering`` became seven
    pieces), which made every prompt several times longer. Rotations give each word many
    neighbours, and each word becomes one piece.
    """
    words = sorted({word for template in templates(with_user_id) for word in template.split()
                    if "{" not in word})
    return [" ".join(words[start:] + words[:start]) for start in range(len(words))]
