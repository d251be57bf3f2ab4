"""What an IDGenRec run starts from, shared by the runs that can share it: the tokenizer, the
warm-started ID generator and the initial item IDs by Algorithm 1 (one folder per data,
profile, seed and generator options, so the ablations of a dataset make it once); and the
folder of a zero-shot foundation's schedule, keyed by its sources and options only."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from bench.config import recorded_options
from bench.data.prepare import cache_root
from bench.engine.prompts import template_words
from bench.engine.tokenizer import build_tokenizer
from bench.identity import identity_digest
from bench.method import RunContext
from bench.storage import atomic_write_text, locked
from methods.idgenrec.config import IDGenRecConfig
from methods.idgenrec.corpus import Corpus
from methods.idgenrec.generator import IDGenerator, IDGeneratorConfig, build_id_generator, clean_id, warm_start

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclasses.dataclass(frozen=True)
class Start:
    tokenizer: "PreTrainedTokenizerBase"
    generator: IDGenerator
    initial: dict[str, Any]  # "ids": the initial item IDs, "stats": how Algorithm 1 made them
    directory: Path


def shared_start(config: IDGenRecConfig, context: RunContext, corpus: Corpus, progress: Callable[[str], Any]) -> Start:
    """Tokenizer, warm-started generator and initial item IDs, from the shared start folder."""
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
            unique = generator.unique_ids(corpus.item_texts, progress("initial item IDs"))
            initial = {"ids": unique.ids, "stats": unique.stats.to_dict()}
            atomic_write_text(initial_file, json.dumps(initial))
    return Start(tokenizer, generator, initial, directory)


def foundation_folder(config: IDGenRecConfig, context: RunContext, corpus: Corpus) -> Path:
    """``$GENREC_BENCH_CACHE/idgenrec-foundation/<key>``: the key holds what the foundation
    is trained from (profile, seed, every option but ``threads``, the fused sources' item
    texts, training sequences, validation items and user texts), never the evaluated dataset."""
    options = {name: value for name, value in recorded_options(config).items() if name != "threads"}
    content = hashlib.sha256(("\n".join(corpus.item_texts) + "\0" + "\n".join(corpus.user_texts or [])).encode())
    for items in corpus.split.train + [np.full(1, -1)] + corpus.split.valid_items:
        content.update(np.asarray(items, dtype=np.int64).tobytes() + b"|")
    key = identity_digest({"profile": context.profile, "seed": context.seed, "options": options,
                   "content": content.hexdigest()})
    return cache_root() / "idgenrec-foundation" / key
