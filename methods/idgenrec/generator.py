"""The ID generator of IDGenRec (Tan et al., SIGIR 2024, Sec. 3.1): a T5 that reads an item's
plain text (``key: value; key: value``) and writes a short textual ID in ordinary words.

``paper`` profile: the pre-trained tag generator the paper starts from
(``generator_checkpoint``, by default ``nandkishormpai/t5-small-machine-articles-tag-generation``,
a t5-small fine-tuned to write tags for articles). It shares t5-small's vocabulary with the
recommender. If it cannot be loaded offline the run stops; nothing else is substituted.

``cpu`` profile: no pre-trained checkpoint is available, so a small T5 is built with the
engine's builder over the recommender's own tokenizer (IDGenRec shares one vocabulary
between the two models, so every token of a generated ID is a recommender token), then
warm-started for ``generator_warm_start_epochs`` epochs (more on a small catalogue, to reach
``generator_warm_start_min_steps`` optimizer steps) with the engine's training loop on a
self-supervised copy task:

    target = the first ``generator_warm_start_words`` (6) words of the item's title field
    (``title``, else ``name``, else the first field), lower-cased, punctuation removed,
    stop-words dropped, in their original order.

Why this target and not the words of highest within-catalogue TF-IDF: the paper's initial
IDs, which its tag generator wrote, are mostly the first content words of the title,
sometimes followed by category words ("plush dr seuss cat", "monopoly city toys games
board games"; 1 to 10 words, median 6 on Toys), so a title prefix reproduces their look
and length. Copying a prefix is also learnt in a few epochs by a small model trained from
scratch, whereas picking TF-IDF words would ask it to learn catalogue statistics first.
Items whose title prefixes collide are exactly what diverse ID generation (Algorithm 1,
:mod:`methods.idgenrec.diverse_ids`) is for: the other beam groups write other words.

Generated IDs are lower-cased and reduced to runs of letters and digits joined by single
spaces (the form of the paper's released IDs, e.g. "dutch 7quot"), so that the tags of
the pre-trained generator ("a, b, c") and the small model's output read alike.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import TYPE_CHECKING, Sequence

from bench.config import AT_LEAST_ONE, NON_NEGATIVE, Options, option
from bench.errors import BenchError
from methods.idgenrec.diverse_ids import Progress, UniqueIds, generate_unique_ids

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, T5ForConditionalGeneration

    from bench.engine.training import TrainingReport
    from bench.method import RunContext
    from bench.runtime import Runtime

# Small catalogues make epochs of a few batches; a checkpoint every such epoch cost more
# than the epoch itself.
WARM_START_CHECKPOINT_SECONDS = 60.0
PAPER_GENERATOR = "nandkishormpai/t5-small-machine-articles-tag-generation"
TITLE_KEYS = ("title", "name")
WORD = re.compile(r"[^\W_]+")
# Function words that carry nothing about the item (a short fixed list, so that the
# warm-start target does not depend on a downloaded stop-word corpus).
STOP_WORDS = frozenset("""
a an the and or but nor of for to in on at by with from into onto over under as is are was were be been
being it its this that these those than then so such very too can will just not no only own same other
all any both each few more most some s t about above after again against before below between
during off out through up down until while your you yours our we us i me my he him his she her they
them their what which who whom whose why how where when here there also per via
""".split())



@dataclasses.dataclass(frozen=True)
class IDGeneratorConfig(Options):
    """The ID generator's options (a method config inherits them)."""

    generator_checkpoint: str = option(PAPER_GENERATOR, "paper profile: pre-trained ID generator (hub name or "
                                                        "local folder)")
    generator_d_model: int = option(128, "cpu profile: hidden size of the ID generator trained from scratch",
                                    range=AT_LEAST_ONE)
    generator_d_ff: int = option(512, "cpu profile: feed-forward size of the ID generator", range=AT_LEAST_ONE)
    generator_num_layers: int = option(2, "cpu profile: encoder layers of the ID generator (decoder: as many)",
                                       range=AT_LEAST_ONE)
    generator_num_heads: int = option(4, "cpu profile: attention heads of the ID generator", range=AT_LEAST_ONE)
    generator_warm_start_epochs: int = option(10, "cpu profile: epochs of the warm-start copy task (0: untrained)",
                                              range=NON_NEGATIVE)
    generator_warm_start_min_steps: int = option(600, "cpu profile: at least this many warm-start optimizer "
                                                       "steps (a small catalogue gets more epochs)", range=NON_NEGATIVE)
    generator_warm_start_words: int = option(6, "cpu profile: content words of the title the warm start "
                                                "teaches the generator to write", range=AT_LEAST_ONE)
    generator_warm_start_batch_size: int = option(32, "cpu profile: items per warm-start batch", range=AT_LEAST_ONE)
    generator_learning_rate: float = option(2e-3, "cpu profile: peak learning rate of the warm start")
    generator_max_text_tokens: int = option(256, "tokens of item text the ID generator reads (the rest is cut)",
                                            range=AT_LEAST_ONE)
    id_num_groups: int = option(10, "k: diverse beam search groups, one candidate ID each (Alg. 1)", range=AT_LEAST_ONE)
    id_max_diversity_penalty: int = option(10, "largest diversity penalty lambda tried per length range (Alg. 1)",
                                           range=AT_LEAST_ONE)
    id_length_range: tuple[int, ...] = option((1, 10), "min and max ID length in tokens, first try (Alg. 1)")
    id_longer_length_range: tuple[int, ...] = option((10, 20), "min and max ID length in tokens once lambda is "
                                                               "exhausted (Alg. 1)")
    id_batch_size: int = option(64, "items decoded together during diverse ID generation", range=AT_LEAST_ONE)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_generator_config(self)


def check_generator_config(config: IDGeneratorConfig) -> None:
    """What ties the generator's options together (each one's range is declared on its field)."""
    config.require_multiple("generator_d_model", "generator_num_heads")
    for name in ("id_length_range", "id_longer_length_range"):
        value = tuple(getattr(config, name))
        if len(value) != 2 or not 1 <= value[0] <= value[1]:
            raise BenchError(f"config key '{name}' must be two token counts 1 <= min <= max, got {value}")


def clean_id(text: str) -> str:
    """Lower-case runs of letters and digits joined by single spaces ("" if none)."""
    return " ".join(WORD.findall(str(text).lower()))


def text_fields(text: str) -> list[tuple[str, str]]:
    """``key: value; key: value`` as pairs (a part without ``:`` has an empty key)."""
    fields = []
    for part in str(text).split("; "):
        key, separator, value = part.partition(": ")
        fields.append((key.strip().lower(), value.strip()) if separator else ("", part.strip()))
    return [(key, value) for key, value in fields if value]


def warm_start_target(text: str, n_words: int) -> str:
    """The first ``n_words`` content words of the title field (see the module docstring)."""
    fields = text_fields(text)
    if not fields:
        return ""
    title = next((value for key, value in fields if key in TITLE_KEYS), fields[0][1])
    words = clean_id(title).split()
    content = [word for word in words if word not in STOP_WORDS]
    # A title of stop-words only ("it") still names the item better than nothing.
    return " ".join((content or words)[:n_words])


class IDGenerator:
    """A seq2seq model that writes candidate IDs; :meth:`candidates` is Algorithm 1's
    ``generate_fn`` and :meth:`unique_ids` runs Algorithm 1 over a catalogue."""

    def __init__(self, model: "T5ForConditionalGeneration", tokenizer: "PreTrainedTokenizerBase",
                 config: IDGeneratorConfig, runtime: "Runtime") -> None:
        check_generator_config(config)
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.runtime = runtime  # the run's device and precision, which the generator decodes in

    def encode(self, texts: Sequence[str]):
        return self.tokenizer(list(texts), padding=True, truncation=True,
                              max_length=self.config.generator_max_text_tokens, return_tensors="pt")

    def candidates(self, texts: Sequence[str], diversity_penalty: float, min_length: int,
                   max_length: int) -> list[list[str]]:
        """Up to ``id_num_groups`` distinct cleaned IDs per text, best first."""
        from bench.engine.diverse_beam_search import diverse_beam_search

        encoded = self.encode(texts)
        # Eq. 4 / Alg. 1: k groups of one beam each, Hamming diversity penalty λ.
        rows = diverse_beam_search(self.model, encoded.input_ids, encoded.attention_mask,
                                   num_groups=self.config.id_num_groups, beams_per_group=1,
                                   diversity_penalty=diversity_penalty, min_length=min_length,
                                   max_length=max_length, runtime=self.runtime)
        flat = [tokens for row in rows for tokens, _ in row]
        decoded = iter(self.tokenizer.batch_decode(flat, skip_special_tokens=True)) if flat else iter(())
        result = []
        for row in rows:
            # Ranked as transformers ranks beam hypotheses (length penalty 1): log-probability
            # per generated token, EOS included; groups keep their order on ties.
            scored = [(score / (len(tokens) + 1), clean_id(next(decoded))) for tokens, score in row]
            ranked = sorted(range(len(scored)), key=lambda index: -scored[index][0])
            result.append(list(dict.fromkeys(scored[index][1] for index in ranked if scored[index][1])))
        return result

    def unique_ids(self, texts: Sequence[str], progress: Progress | None = None,
                   batch_size: int | None = None) -> UniqueIds:
        """One unique ID per text by diverse ID generation (Algorithm 1)."""
        config = self.config
        return generate_unique_ids(self.candidates, texts, batch_size or config.id_batch_size,
                                   (tuple(config.id_length_range), tuple(config.id_longer_length_range)),
                                   config.id_max_diversity_penalty, progress)


def build_id_generator(config: IDGeneratorConfig, profile: str, tokenizer: "PreTrainedTokenizerBase",
                       seed: int, runtime: "Runtime") -> IDGenerator:
    """``paper``: the pre-trained checkpoint; ``cpu``: a small untrained T5 over ``tokenizer``
    (the recommender's, so the two share one vocabulary)."""
    from bench.engine.model import T5EngineConfig, build_small_model, load_pretrained_model, resize_embeddings

    check_generator_config(config)
    if profile == "paper":
        try:
            model = load_pretrained_model(config.generator_checkpoint)
        except BenchError:
            raise BenchError(f"the ID generator checkpoint '{config.generator_checkpoint}' cannot be loaded "
                             "(no Hugging Face hub access and not in the local cache); use --profile cpu, "
                             "or set generator_checkpoint=<local folder with the checkpoint>") from None
    elif profile == "cpu":
        sizes = T5EngineConfig(d_model=config.generator_d_model, d_ff=config.generator_d_ff,
                               num_layers=config.generator_num_layers, num_heads=config.generator_num_heads,
                               d_kv=config.generator_d_model // config.generator_num_heads)
        model = build_small_model(sizes, len(tokenizer), seed)
    else:
        raise BenchError(f"unknown profile '{profile}' for the ID generator; known: cpu, paper")
    resize_embeddings(model, len(tokenizer), seed)
    model.eval()
    return IDGenerator(model, tokenizer, config, runtime)


def warm_start_examples(texts: Sequence[str], tokenizer: "PreTrainedTokenizerBase", n_words: int,
                        max_text_tokens: int) -> list[tuple[str, str]]:
    """(item text, target words) pairs of the copy task; items without words are left out.
    Sources are cut to ``max_text_tokens`` as the generator will read them."""
    examples = []
    lengths = [len(ids) for ids in tokenizer(list(texts)).input_ids]
    for text, length in zip(texts, lengths):
        target = warm_start_target(text, n_words)
        if not target:
            continue
        if length > max_text_tokens:
            cut = tokenizer(text, truncation=True, max_length=max_text_tokens).input_ids
            text = tokenizer.decode(cut, skip_special_tokens=True)
        examples.append((text, target))
    return examples


def warm_start(generator: IDGenerator, texts: Sequence[str], context: "RunContext") -> "TrainingReport | None":
    """cpu profile: train the copy task with the engine's loop (resumable from
    ``context.work_dir / "generator-warm-start"``); None when 0 epochs are configured."""
    from bench.engine.model import T5EngineConfig
    from bench.engine.training import train_seq2seq

    config = generator.config
    if config.generator_warm_start_epochs == 0:
        return None
    examples = warm_start_examples(texts, generator.tokenizer, config.generator_warm_start_words,
                                   config.generator_max_text_tokens)
    if not examples:
        raise BenchError("ID generator warm start: no item text has a word to copy")
    batches = math.ceil(len(examples) / config.generator_warm_start_batch_size)
    epochs = max(config.generator_warm_start_epochs, math.ceil(config.generator_warm_start_min_steps / batches))
    # Trained on the context's runtime, the run's device and precision.
    schedule = T5EngineConfig(epochs=epochs,
                              batch_size=config.generator_warm_start_batch_size,
                              learning_rate=config.generator_learning_rate)
    report = train_seq2seq(generator.model, generator.tokenizer, lambda epoch: examples, schedule,
                           context.work_dir / "generator-warm-start", context, description="ID generator warm start",
                           checkpoint_interval_seconds=WARM_START_CHECKPOINT_SECONDS)
    generator.model.eval()
    return report
