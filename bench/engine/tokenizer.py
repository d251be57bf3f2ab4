"""Tokenizers for the T5 engine, one per profile, and no silent fallback between them.

``paper``: the backbone's own SentencePiece tokenizer (``t5-small`` in P5 and IDGenRec),
loaded with transformers. Without the Hugging Face hub, and with nothing cached, that
fails: the run stops with a message instead of quietly training something else.

``cpu``: a small SentencePiece unigram model trained on the dataset's own text (item
text, item ID strings, prompt wording), wrapped as a transformers ``T5Tokenizer`` with
T5's special-token layout (pad=0, eos=1, unk=2), so the rest of the engine cannot tell
the two apart.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from bench.errors import BenchError
from bench.storage import atomic_write_bytes

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# T5's layout: the trie, the beam search and the model config rely on these ids.
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
SPM_FILE = "spiece.model"  # the file name transformers' T5Tokenizer looks for
_REQUIRED_PIECES = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


def load_pretrained_tokenizer(name_or_path: str, offline: bool | None = None) -> "PreTrainedTokenizerBase":
    """The backbone's tokenizer: a local folder, the Hugging Face cache, or the hub unless
    ``offline`` (:func:`bench.engine.hub.load_cached_or_hub`)."""
    from transformers import AutoTokenizer

    from bench.engine.hub import load_cached_or_hub

    return load_cached_or_hub(lambda local_only: AutoTokenizer.from_pretrained(name_or_path,
                                                                               local_files_only=local_only),
                              name_or_path, "the tokenizer of checkpoint", offline)


def train_sentencepiece(texts: Iterable[str], vocab_size: int, seed: int) -> bytes:
    """A unigram SentencePiece model (serialised) trained on ``texts``, deterministically:
    one thread, input in the given order, the library's random generator seeded."""
    import sentencepiece

    lines = [line for line in (" ".join(text.split()) for text in texts) if line]
    if not lines:
        raise BenchError("cannot train a tokenizer: the dataset has no item text and no item identifiers")
    special_tokens = len({PAD_ID, EOS_ID, UNK_ID})
    if vocab_size <= special_tokens:
        raise BenchError(f"config key 'vocab_size' must be more than the {special_tokens} special tokens "
                         f"(and at least one piece per distinct character of the text), got {vocab_size}")
    sentencepiece.set_random_generator_seed(seed)
    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, model_type="unigram", vocab_size=vocab_size,
            pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
            # Every character of the corpus gets a piece: an item ID must never contain <unk>,
            # or two different IDs could become the same token sequence.
            character_coverage=1.0,
            # A small catalogue may not support the requested size; take what it supports.
            hard_vocab_limit=False,
            num_threads=1, shuffle_input_sentence=False, input_sentence_size=0, minloglevel=2)
    except RuntimeError as error:
        # The smallest size is known only after SentencePiece normalised the text: one piece per
        # distinct character plus the special tokens. It reports both numbers ("10 vs 32").
        needed = _REQUIRED_PIECES.search(str(error))
        if needed is None:
            raise
        raise BenchError(f"config key 'vocab_size' must be at least {needed.group(2)} for this dataset's text "
                         f"(one piece per distinct character plus the special tokens), got {vocab_size}") from None
    return model.getvalue()


def train_cpu_tokenizer(texts: Iterable[str], directory: Path, vocab_size: int,
                        seed: int) -> "PreTrainedTokenizerBase":
    """Train the ``cpu`` profile's tokenizer into ``directory`` and load it as a T5 tokenizer."""
    from transformers import T5Tokenizer

    atomic_write_bytes(Path(directory) / SPM_FILE, train_sentencepiece(texts, vocab_size, seed))
    # No sentinel tokens: they serve T5's span-corruption pre-training, which a model
    # trained from scratch on recommendation prompts never sees.
    tokenizer = T5Tokenizer.from_pretrained(str(directory), extra_ids=0)
    if (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) != (PAD_ID, EOS_ID, UNK_ID):
        raise RuntimeError(f"{directory / SPM_FILE}: special tokens are not at T5's positions")
    return tokenizer


def build_tokenizer(profile: str, backbone: str, corpus: Iterable[str], directory: Path, vocab_size: int,
                    seed: int, extra_tokens: Sequence[str] = ()) -> "PreTrainedTokenizerBase":
    """The tokenizer of a profile, with ``extra_tokens`` (e.g. collaborative ``<CI12>``) added."""
    if profile == "paper":
        tokenizer = load_pretrained_tokenizer(backbone)
    elif profile == "cpu":
        tokenizer = train_cpu_tokenizer(corpus, directory, vocab_size, seed)
    else:
        raise BenchError(f"unknown profile '{profile}' for the T5 engine; known: cpu, paper")
    add_tokens(tokenizer, extra_tokens)
    return tokenizer


def add_tokens(tokenizer: "PreTrainedTokenizerBase", tokens: Sequence[str]) -> int:
    """Add whole-word tokens the ID scheme needs; returns how many were new. The model's
    embeddings must then be resized (:func:`bench.engine.model.build_model` does)."""
    tokens = list(dict.fromkeys(tokens))
    blank = [token for token in tokens if not token.strip() or token != token.strip()]
    if blank:
        raise BenchError(f"extra token {blank[0]!r} is empty or has surrounding whitespace")
    return tokenizer.add_tokens(tokens) if tokens else 0


def whole_token_tokenizer(tokens: Sequence[str]) -> "PreTrainedTokenizerBase":
    """A tokenizer whose vocabulary is exactly ``tokens`` (plus T5's pad/eos/unk at 0/1/2):
    text is split on whitespace, each word is one token, and EOS is appended, as T5's
    tokenizer does. For methods whose inputs are code tokens only (TIGER's semantic IDs),
    where a SentencePiece model of the item text would only add unused pieces."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = {"<pad>": PAD_ID, "</s>": EOS_ID, "<unk>": UNK_ID}
    vocabulary = dict(specials)
    for token in tokens:
        if not token or token != token.strip() or len(token.split()) != 1:
            raise BenchError(f"whole-word token {token!r} is empty or contains whitespace")
        if token in vocabulary:
            raise BenchError(f"whole-word token {token!r} appears twice")
        vocabulary[token] = len(vocabulary)
    model = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    model.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS_ID)])
    return PreTrainedTokenizerFast(tokenizer_object=model, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
