"""The cpu profile's SentencePiece tokenizer, the paper profile's refusal to fall back, added tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.engine.tokenizer import (EOS_ID, PAD_ID, SPM_FILE, UNK_ID, add_tokens, build_tokenizer,
                                    load_pretrained_tokenizer, train_cpu_tokenizer)
from bench.errors import BenchError

CORPUS = ([f"title: wooden puzzle number {i}; categories: toys, café; brand: Ëmber" for i in range(40)]
          + [f"item {i}" for i in range(40)] + ["Considering the user has interacted with items"])


def test_cpu_tokenizer_has_t5_special_ids_and_appends_eos(tmp_path: Path) -> None:
    tokenizer = train_cpu_tokenizer(CORPUS, tmp_path, vocab_size=120, seed=0)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (PAD_ID, EOS_ID, UNK_ID)
    assert (tmp_path / SPM_FILE).is_file()
    ids = tokenizer("item 17").input_ids
    assert ids[-1] == EOS_ID and EOS_ID not in ids[:-1]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "item 17"


def test_cpu_tokenizer_training_is_deterministic(tmp_path: Path) -> None:
    train_cpu_tokenizer(CORPUS, tmp_path / "a", vocab_size=120, seed=3)
    train_cpu_tokenizer(CORPUS, tmp_path / "b", vocab_size=120, seed=3)
    assert (tmp_path / "a" / SPM_FILE).read_bytes() == (tmp_path / "b" / SPM_FILE).read_bytes()


def test_rare_characters_of_the_corpus_never_become_unknown(tmp_path: Path) -> None:
    tokenizer = train_cpu_tokenizer(CORPUS, tmp_path, vocab_size=120, seed=0)
    for text in ("café", "Ëmber", "item 39"):
        assert UNK_ID not in tokenizer(text).input_ids, text


def test_small_corpus_gives_a_smaller_vocabulary_instead_of_failing(tmp_path: Path) -> None:
    tokenizer = train_cpu_tokenizer(["item 1", "item 2", "item 3"], tmp_path, vocab_size=5000, seed=0)
    assert 3 < len(tokenizer) < 5000


def test_added_tokens_are_single_tokens_after_the_vocabulary(tmp_path: Path) -> None:
    tokenizer = train_cpu_tokenizer(CORPUS, tmp_path, vocab_size=120, seed=0)
    base = len(tokenizer)
    assert add_tokens(tokenizer, ["<CI12>", "<CI3>", "<CI12>"]) == 2
    assert len(tokenizer) == base + 2
    ids = tokenizer("<CI12><CI3>", add_special_tokens=False).input_ids
    assert ids == [tokenizer.convert_tokens_to_ids("<CI12>"), tokenizer.convert_tokens_to_ids("<CI3>")]
    assert min(ids) >= base


def test_blank_extra_token_is_refused(tmp_path: Path) -> None:
    tokenizer = train_cpu_tokenizer(CORPUS, tmp_path, vocab_size=120, seed=0)
    with pytest.raises(BenchError, match="whitespace"):
        add_tokens(tokenizer, [" <CI1>"])


def test_build_tokenizer_adds_extra_tokens(tmp_path: Path) -> None:
    tokenizer = build_tokenizer("cpu", "t5-small", CORPUS, tmp_path, 120, 0, extra_tokens=["<C1>"])
    assert tokenizer.convert_tokens_to_ids("<C1>") == len(tokenizer) - 1


def test_paper_profile_without_hub_raises_instead_of_falling_back(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-checkpoint")
    with pytest.raises(BenchError, match="--profile cpu"):
        load_pretrained_tokenizer(missing, offline=True)


def test_paper_profile_honours_hf_hub_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: t5-small is not there
    with pytest.raises(BenchError, match="t5-small"):
        build_tokenizer("paper", "t5-small", CORPUS, tmp_path, 120, 0)


def test_unknown_profile_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="unknown profile 'gpu'"):
        build_tokenizer("gpu", "t5-small", CORPUS, tmp_path, 120, 0)


def test_prompt_words_become_single_pieces(tmp_path: Path) -> None:
    from bench.engine.prompts import TEMPLATES_WITHOUT_USER, template_words

    tokenizer = train_cpu_tokenizer(template_words(False) + CORPUS, tmp_path, vocab_size=400, seed=0)
    words = {word for template in TEMPLATES_WITHOUT_USER for word in template.split() if "{" not in word}
    split_words = [word for word in words if len(tokenizer(word, add_special_tokens=False).input_ids) > 1]
    assert split_words == []
