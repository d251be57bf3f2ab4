"""Prompt templates: ten per variant, recent history only, seeded template choice."""

from __future__ import annotations

import numpy as np

from bench.engine.prompts import (N_TEMPLATES, TEMPLATES_WITH_USER, TEMPLATES_WITHOUT_USER, TEST_TEMPLATE,
                                  build_prompt, format_history, sample_template_indices, template_words)


def test_ten_distinct_templates_in_each_variant() -> None:
    assert N_TEMPLATES == len(TEMPLATES_WITH_USER) == len(TEMPLATES_WITHOUT_USER) == 10
    assert len(set(TEMPLATES_WITH_USER)) == len(set(TEMPLATES_WITHOUT_USER)) == 10
    for with_user, without_user in zip(TEMPLATES_WITH_USER, TEMPLATES_WITHOUT_USER):
        assert "{user}" in with_user and "{history}" in with_user
        assert "{user}" not in without_user and without_user.count("{history}") == 1


def test_history_keeps_the_most_recent_items_in_order() -> None:
    items = [f"item {i}" for i in range(30)]
    assert format_history(items, 3) == "item 27, item 28, item 29"
    assert format_history(items[:2], 20) == "item 0, item 1"


def test_prompt_with_and_without_user() -> None:
    with_user = build_prompt(["a", "b", "c"], 2, TEST_TEMPLATE, user_id="user_7")
    without_user = build_prompt(["a", "b", "c"], 2, TEST_TEMPLATE)
    assert "user_7" in with_user and "b, c" in with_user and "a," not in with_user
    assert "user_7" not in without_user and "b, c" in without_user
    assert build_prompt(["x"], 20, 3) == TEMPLATES_WITHOUT_USER[3].format(history="x")


def test_template_sampling_is_seeded_and_uses_every_template() -> None:
    first = sample_template_indices(500, np.random.default_rng(1))
    second = sample_template_indices(500, np.random.default_rng(1))
    assert np.array_equal(first, second)
    assert set(first.tolist()) == set(range(N_TEMPLATES))


def test_template_words_hold_no_placeholders() -> None:
    for words in template_words(True) + template_words(False):
        assert "{" not in words and "}" not in words
