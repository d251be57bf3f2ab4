"""The idgenrec plugin: prompt spans, the gradient path of the generator phase, the
ablation schedules, resume at a phase boundary and inside a generator phase, and zero-shot
training on other data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.config import resolve
from bench.data.split import leave_one_out
from bench.engine.model import T5EngineConfig, build_small_model
from bench.engine.prompt_encoding import USER_SLOT, PromptEncoder
from bench.engine.prompts import build_prompt, template_words
from bench.engine.tokenizer import train_cpu_tokenizer
from bench.errors import BenchError
from bench.method import RunContext, TrainingData
from bench.runtime import cpu_runtime, start_runtime
from methods.idgenrec.config import IDGenRecConfig, schedule
from methods.idgenrec.generator import IDGeneratorConfig, build_id_generator
from methods.idgenrec.method import IDGenRec
from methods.idgenrec.soft_ids import SoftBatch, soft_id_loss
from tests.conftest import tiny_dataset

TINY = dict(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=200, batch_size=16, beam_width=12,
            threads=1, epochs=1, rounds=2, generator_d_model=32, generator_d_ff=64, generator_num_layers=1,
            generator_num_heads=2, generator_warm_start_epochs=1, generator_warm_start_min_steps=0,
            id_num_groups=3, id_max_diversity_penalty=2, id_length_range=(1, 4), id_longer_length_range=(4, 6),
            user_id_max_items=3, max_history=5)


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    dataset = tiny_dataset()
    corpus = (dataset.item_text + [text.lower() for text in dataset.item_text] + template_words(True)
              + template_words(False))
    return train_cpu_tokenizer(corpus, tmp_path_factory.mktemp("tokenizer"), 200, seed=0)


def tiny_config(**changes) -> IDGenRecConfig:
    resolved = resolve("idgenrec", IDGenRecConfig, IDGenRec.profiles, "cpu", {}, {**TINY, **changes})
    return resolved.method


def fit(tmp_path, name: str, dataset=None, split=None, **changes) -> IDGenRec:
    """A fit as the runner makes it: the context's runtime built from the config's device options."""
    dataset = dataset or tiny_dataset(n_users=24, n_items=20)
    config = tiny_config(**changes)
    context = RunContext(work_dir=tmp_path / name, seed=0, profile="cpu", show_progress=False,
                         runtime=start_runtime(config))
    context.work_dir.mkdir(parents=True, exist_ok=True)
    method = IDGenRec(config, context)
    method.fit(TrainingData(dataset=dataset, split=split if split is not None else leave_one_out(dataset)))
    return method


def test_encoded_prompt_spans_hold_exactly_each_ids_tokens(tokenizer) -> None:
    item_ids = ["thing number 3", "group 1 toys", "thing"]
    tokens = [tokenizer(text, add_special_tokens=False).input_ids for text in item_ids]
    user = tokenizer("thing number", add_special_tokens=False).input_ids
    for with_user in (False, True):
        encoder = PromptEncoder(tokenizer, with_user)
        for template in range(10):
            prompt = encoder.encode(template, tokens, max_history=2, user=user if with_user else None)
            assert prompt.input_ids[-1] == tokenizer.eos_token_id
            slots = [span.slot for span in prompt.spans]
            assert sorted(slot for slot in slots if slot != USER_SLOT) == [0, 1]  # the 2 most recent
            for span in prompt.spans:
                expected = user if span.slot == USER_SLOT else tokens[1:][span.slot]
                assert prompt.input_ids[span.start:span.end] == expected
            # The pieces read as the string prompt, up to spacing around the separator.
            text = build_prompt(item_ids[1:], 2, template, "thing number" if with_user else None)
            decoded = tokenizer.decode(prompt.input_ids, skip_special_tokens=True)
            assert decoded.replace(" ", "").replace(",", "") == text.replace(" ", "").replace(",", "")


def soft_batch(tokenizer, encoder: PromptEncoder) -> SoftBatch:
    texts = {("item", i): f"title: thing number {i}; categories: toys" for i in range(4)}
    ids = {key: tokenizer(f"thing {key[1]}", add_special_tokens=False).input_ids for key in texts}
    histories = [[0, 1], [2], [1, 3]]
    prompts = [encoder.encode(0, [ids[("item", i)] for i in history], 5) for history in histories]
    targets = [ids[("item", 3)] + [tokenizer.eos_token_id], ids[("item", 0)] + [tokenizer.eos_token_id],
               ids[("item", 2)] + [tokenizer.eos_token_id]]
    return SoftBatch(prompts, [[("item", i) for i in history] for history in histories], texts, ids, targets)


def test_generator_phase_gradients_reach_the_generator_only_and_a_step_lowers_the_loss(tokenizer) -> None:
    config = IDGeneratorConfig(generator_d_model=32, generator_d_ff=64, generator_num_layers=1, generator_num_heads=2)
    generator = build_id_generator(config, "cpu", tokenizer, seed=0, runtime=cpu_runtime())
    recommender = build_small_model(T5EngineConfig(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16),
                                    len(tokenizer), seed=1)
    generator.model.eval()  # no dropout: the two losses compared below differ by the step alone
    recommender.eval()
    recommender.requires_grad_(False)
    batch = soft_batch(tokenizer, PromptEncoder(tokenizer, with_user_id=False))

    loss = soft_id_loss(generator, recommender, batch, tokenizer.pad_token_id)
    loss.backward()
    assert all(parameter.grad is None for parameter in recommender.parameters())
    generator_grads = [parameter.grad for parameter in generator.model.parameters()]
    assert all(grad is not None for grad in generator_grads)
    assert sum(float(grad.abs().sum()) for grad in generator_grads) > 0
    # The encoder reads item text only through the soft IDs: its weights get gradient too.
    assert float(generator.model.encoder.block[0].layer[0].SelfAttention.q.weight.grad.abs().sum()) > 0

    optimizer = torch.optim.SGD(generator.model.parameters(), lr=0.5)
    optimizer.step()
    with torch.no_grad():
        after = soft_id_loss(generator, recommender, batch, tokenizer.pad_token_id)
    assert float(after) < float(loss.detach())


def test_soft_loss_with_hard_one_hot_generator_equals_the_recommenders_own_loss(tokenizer) -> None:
    """A generator sure of its ID's tokens puts exactly those tokens' embeddings in place."""
    config = IDGeneratorConfig(generator_d_model=32, generator_d_ff=64, generator_num_layers=1, generator_num_heads=2)
    generator = build_id_generator(config, "cpu", tokenizer, seed=0, runtime=cpu_runtime())
    recommender = build_small_model(T5EngineConfig(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16),
                                    len(tokenizer), seed=1).eval()
    encoder = PromptEncoder(tokenizer, with_user_id=False)
    batch = soft_batch(tokenizer, encoder)

    def one_hot_logits(input_ids=None, attention_mask=None, labels=None):
        logits = torch.full((*labels.shape, len(tokenizer)), -1e4)
        logits.scatter_(2, labels.clamp(min=0).unsqueeze(-1), 1e4)
        return type("Output", (), {"logits": logits})()

    generator.model = one_hot_logits
    soft = soft_id_loss(generator, recommender, batch, tokenizer.pad_token_id)
    from bench.engine.prompt_encoding import pad_token_lists
    input_ids, mask = pad_token_lists([p.input_ids for p in batch.prompts], tokenizer.pad_token_id)
    labels, label_mask = pad_token_lists(batch.targets, tokenizer.pad_token_id)
    labels[label_mask == 0] = -100
    hard = recommender(input_ids=input_ids, attention_mask=mask, labels=labels).loss
    assert float(soft.detach()) == pytest.approx(float(hard.detach()), abs=1e-5)


@pytest.mark.parametrize("training, generator_first, expected", [
    ("alternate", True, ["generator", "recommender"] * 3),
    ("alternate", False, ["recommender", "generator", "recommender", "generator", "recommender"]),
    ("rec-only", True, ["recommender"] * 3),
    ("id-only", True, ["generator"] * 3),
])
def test_training_strategies_schedule_their_phases(training, generator_first, expected) -> None:
    config = IDGenRecConfig(training=training, generator_first=generator_first, rounds=3)
    phases = schedule(config)
    assert [phase.kind for phase in phases] == expected
    assert [phase.index for phase in phases] == list(range(len(expected)))


def test_bad_switch_values_name_the_key() -> None:
    with pytest.raises(BenchError, match="'training'"):
        IDGenRecConfig(training="both")
    with pytest.raises(BenchError, match="'ids'"):
        IDGenRecConfig(ids="items")


def test_alternate_run_resumes_at_a_phase_boundary_with_the_same_result(tmp_path, monkeypatch) -> None:
    dataset = tiny_dataset(n_users=24, n_items=20)
    split = leave_one_out(dataset)
    users = np.arange(split.n_users)
    whole = fit(tmp_path, "whole", dataset, generator_first=True)
    expected = whole.rank(users, split.histories("test"), 10)
    assert [entry["kind"] for entry in whole.log] == ["generator", "recommender"] * 2

    original = IDGenRec._recommender_phase
    calls = []

    def dies_in_second_round(self, phase, corpus, state):
        calls.append(phase.index)
        if phase.index == 3:
            raise KeyboardInterrupt("killed")
        return original(self, phase, corpus, state)

    monkeypatch.setattr(IDGenRec, "_recommender_phase", dies_in_second_round)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path, "killed", dataset, generator_first=True)
    monkeypatch.setattr(IDGenRec, "_recommender_phase", original)
    generator_phases = []
    original_generator = IDGenRec._generator_phase
    monkeypatch.setattr(IDGenRec, "_generator_phase",
                        lambda self, phase, *rest: generator_phases.append(phase.index) or
                        original_generator(self, phase, *rest))
    resumed = fit(tmp_path, "killed", dataset, generator_first=True)
    assert generator_phases == []  # phases 0-2 came from the snapshot
    assert [entry["phase"] for entry in resumed.log] == [0, 1, 2, 3]
    assert resumed.item_ids == whole.item_ids
    np.testing.assert_array_equal(resumed.rank(users, split.histories("test"), 10), expected)


def test_a_run_killed_inside_a_generator_phase_resumes_at_its_last_epoch(tmp_path, monkeypatch) -> None:
    """The generator phase trains by the engine's loop, with a checkpoint per epoch: killed in
    its second epoch, a run resumes after the first and ends as a run never killed."""
    from methods.idgenrec.generator_phase import SoftIDTask

    dataset = tiny_dataset(n_users=24, n_items=20)
    split = leave_one_out(dataset)
    users = np.arange(split.n_users)
    options = dict(generator_first=True, rounds=1, generator_epochs=2)
    batches: list[int] = []
    original_loss = SoftIDTask.loss
    monkeypatch.setattr(SoftIDTask, "loss", lambda self, *rest: batches.append(1) or original_loss(self, *rest))
    whole = fit(tmp_path, "whole", dataset, **options)
    trained_whole, batches[:] = len(batches), []
    original = SoftIDTask.examples_for_epoch

    def dies_in_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt("killed")
        return original(self, epoch)

    monkeypatch.setattr(SoftIDTask, "examples_for_epoch", dies_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path, "killed", dataset, **options)
    assert (tmp_path / "killed" / "phase-00-generator" / "epoch-0001").is_dir()
    monkeypatch.setattr(SoftIDTask, "examples_for_epoch", original)
    batches[:] = []
    resumed = fit(tmp_path, "killed", dataset, **options)
    assert 2 * len(batches) == trained_whole  # the second epoch only
    assert resumed.item_ids == whole.item_ids
    trained = resumed.generator.model.state_dict()
    for name, value in whole.generator.model.state_dict().items():
        assert torch.equal(value, trained[name]), name
    np.testing.assert_array_equal(resumed.rank(users, split.histories("test"), 10),
                                  whole.rank(users, split.histories("test"), 10))


@pytest.mark.parametrize("ids", ["item", "user", "user+item"])
def test_id_switch_decides_what_prompts_carry(tmp_path, ids) -> None:
    dataset = tiny_dataset(n_users=24, n_items=20)
    method = fit(tmp_path, ids, dataset, ids=ids, rounds=1)
    history = leave_one_out(dataset).histories("test")[0]
    user_tokens = method._user_tokens("test")[0] if "user" in ids else None
    prompt = method.prompts.prompt(0, history, method.item_tokens, user_tokens)
    slots = [span.slot for span in prompt.spans]
    assert (USER_SLOT in slots) == ("user" in ids)
    assert any(slot >= 0 for slot in slots) == ("item" in ids)
    metadata = method.metadata()
    assert metadata["zero_shot"] is False
    assert metadata["initial_item_id_stats"]["n_items"] == dataset.n_items


def test_test_phase_user_ids_differ_from_training_ones_only_by_what_is_visible(tmp_path) -> None:
    dataset = tiny_dataset(n_users=24, n_items=20)
    method = fit(tmp_path, "users", dataset, ids="user+item", rounds=1)
    assert set(method.user_ids) == {"valid"}  # the training prompts' IDs; test ones when first ranked
    method.rank(np.arange(3), leave_one_out(dataset).histories("test")[:3], 10)
    assert set(method.user_ids) == {"valid", "test"}
    assert len(method.user_ids["test"]) == 24 and len(set(method.user_ids["test"])) == 24
    assert len(method.user_ids["valid"]) == 24 and len(set(method.user_ids["valid"])) == 24


def test_the_evaluator_names_the_phase_whose_user_ids_are_ranked(tmp_path) -> None:
    """Each phase's user IDs are made from what it may see; which phase is ranked is said by the
    evaluator, not guessed from how long a history is."""
    from bench.config import EvalConfig
    from bench.evaluation.protocol import evaluate

    dataset = tiny_dataset(n_users=24, n_items=20)
    split = leave_one_out(dataset)
    method = fit(tmp_path, "phases", dataset, ids="user+item", rounds=1)
    evaluate(method, split, "valid", EvalConfig(), method.context)
    assert method.ranked_phase == "valid" and set(method.user_ids) == {"valid"}
    evaluate(method, split, "test", EvalConfig(), method.context)
    assert method.ranked_phase == "test" and set(method.user_ids) == {"valid", "test"}


def test_zero_shot_trains_on_other_datasets_and_evaluates_unseen_items(tmp_path) -> None:
    evaluated = tiny_dataset(n_users=24, n_items=20, seed=3)
    method = fit(tmp_path, "zero", evaluated, foundation_datasets=("demo",), foundation_users=30, rounds=1)
    metadata = method.metadata()
    assert metadata["zero_shot"] is True
    assert list(metadata["trained_on"]) == ["demo"] and metadata["trained_on"]["demo"]["users"] == 30
    assert 0 < metadata["trained_on"]["demo"]["items"] <= 120
    assert metadata["evaluated_item_id_stats"]["n_items"] == evaluated.n_items
    split = leave_one_out(evaluated)
    ranking = method.rank(np.arange(4), split.histories("test")[:4], 10)
    assert ranking.shape == (4, 10) and ranking.max() < evaluated.n_items


def test_zero_shot_refuses_to_train_on_the_evaluated_dataset(tmp_path) -> None:
    with pytest.raises(BenchError, match="foundation_datasets"):
        fit(tmp_path, "refused", tiny_dataset(), foundation_datasets=("tiny",))


def test_device_and_precision_options_reach_every_phase(tmp_path, monkeypatch) -> None:
    """`device`/`precision` are the same options as every torch method's: the warm start, the
    recommender phases and the soft-ID generator phase all run under the run's autocast, and a
    device this machine lacks is refused with the key named."""
    from bench.runtime import Runtime

    seen: list[tuple[str, str]] = []
    original = Runtime.autocast

    def recording_autocast(self):
        seen.append((self.device.type, self.precision))
        return original(self)

    monkeypatch.setattr(Runtime, "autocast", recording_autocast)
    monkeypatch.setattr("methods.idgenrec.start.cache_root", lambda: tmp_path / "cache")
    bf16 = fit(tmp_path, "bf16", device="cpu", precision="bf16", epochs=1, rounds=2)
    assert seen and set(seen) == {("cpu", "bf16")}
    # The warm start was trained in bf16: an fp32 run must not reuse it.
    fp32 = fit(tmp_path, "fp32", device="cpu", precision="fp32", epochs=1, rounds=2)
    assert bf16.start_dir != fp32.start_dir
    if not torch.cuda.is_available():
        with pytest.raises(BenchError, match="'device'"):
            fit(tmp_path, "cuda", device="cuda")


def test_the_id_token_layer_follows_each_phases_ids_and_a_generator_phase_trains_through_t5s(
        tmp_path, monkeypatch) -> None:
    """``output_head=id_tokens``: each recommender phase (and the evaluation) scores the tokens
    of the IDs it ranks, EOS among them; a generator phase, whose IDs may take any token, runs
    through T5's full layer."""
    import methods.idgenrec.method as method_module
    from bench.engine.output_head import IDTokenHead

    seen = []

    def trained(model, tokenizer, *rest, **options):
        method = current[0]
        tokens = {token for item in method.prompts.token_lists(method.item_ids) for token in item}
        seen.append(("recommender", set(model.lm_head.token_ids.tolist()), tokens | {tokenizer.eos_token_id}))
        return original_train(model, tokenizer, *rest, **options)

    def generated(generator, recommender, *rest):
        seen.append(("generator", type(recommender.lm_head).__name__, recommender.lm_head.weight.shape[0]))
        return original_generator(generator, recommender, *rest)

    original_train, original_generator = method_module.train_seq2seq, method_module.generator_phase
    monkeypatch.setattr(method_module, "train_seq2seq", trained)
    monkeypatch.setattr(method_module, "generator_phase", generated)
    current = []
    original_fit = IDGenRec.fit
    monkeypatch.setattr(IDGenRec, "fit", lambda self, data: current.append(self) or original_fit(self, data))
    dataset = tiny_dataset(n_users=24, n_items=20)
    split = leave_one_out(dataset)
    method = fit(tmp_path, "head", dataset, split, generator_first=True, output_head="id_tokens")

    assert [entry[0] for entry in seen] == ["generator", "recommender"] * 2
    vocabulary = len(method.tokenizer)
    for kind, first, second in seen:
        if kind == "generator":
            assert (first, second) == ("Linear", vocabulary)
        else:
            assert first == second  # the phase's own ID tokens and EOS
    head = method.recommender.lm_head
    assert isinstance(head, IDTokenHead) and head.weight is method.recommender.shared.weight
    final = {token for item in method.item_tokens for token in item} | {method.tokenizer.eos_token_id}
    assert set(head.token_ids.tolist()) == final
    assert method.metadata()["output_tokens"] == len(final) < vocabulary
    ranking = method.rank(np.arange(split.n_users), split.histories("test"), 5)
    assert ranking.min() >= 0 and ranking.max() < dataset.n_items
    assert all(len(set(row)) == 5 for row in ranking.tolist())
