"""The seq2seq loop: it learns, it schedules, and a killed run resumes to identical weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.engine.model import T5EngineConfig, build_model
from bench.engine.prompts import TEMPLATES_WITHOUT_USER
from bench.engine.tokenizer import train_cpu_tokenizer
from bench.engine.batching import SequentialExamples
from bench.engine.checkpoints import latest_checkpoint
from bench.engine.training import train_seq2seq
from bench.errors import BenchError
from bench.method import RunContext

CONFIG = T5EngineConfig(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=100, epochs=2,
                        batch_size=2, gradient_accumulation=2, learning_rate=5e-3, warmup_ratio=0.25)
SEQUENCES = [np.array([0, 1, 2, 3]), np.array([4, 5]), np.array([6]), np.array([2, 3, 4, 5, 6])]
IDS = [f"item {i}" for i in range(7)]



@pytest.fixture
def tokenizer(tmp_path: Path):
    corpus = IDS + [t.replace("{history}", " ") for t in TEMPLATES_WITHOUT_USER]
    return train_cpu_tokenizer(corpus, tmp_path / "tokenizer", vocab_size=100, seed=0)


def context(tmp_path: Path, seed: int = 0) -> RunContext:
    return RunContext(work_dir=tmp_path, seed=seed, profile="cpu", show_progress=False)


def test_every_position_after_the_first_is_an_example() -> None:
    examples = SequentialExamples(SEQUENCES, IDS, max_history=2, seed=0)
    assert len(examples) == 3 + 1 + 0 + 4
    pairs = examples(0)
    assert [target for _, target in pairs] == ["item 1", "item 2", "item 3", "item 5", "item 3", "item 4",
                                               "item 5", "item 6"]
    # Position 3 of the first user: history items 1, 2 (max_history=2), not item 0.
    assert "item 1, item 2 " in pairs[2][0] and "item 0" not in pairs[2][0]


def test_last_position_only_and_user_ids() -> None:
    users = ["u0", "u1", "u2", "u3"]
    examples = SequentialExamples(SEQUENCES, IDS, max_history=20, seed=0, user_identifiers=users,
                                  last_position_only=True)
    pairs = examples(0)
    assert [target for _, target in pairs] == ["item 3", "item 5", "item 6"]
    assert [user in source for (source, _), user in zip(pairs, ["u0", "u1", "u3"])] == [True] * 3


def test_templates_are_drawn_per_epoch_from_the_seed() -> None:
    sequences = [np.arange(7)] * 30
    examples = SequentialExamples(sequences, IDS, max_history=20, seed=0)
    assert examples(1) == SequentialExamples(sequences, IDS, max_history=20, seed=0)(1)
    assert examples(0) != examples(1)
    assert [t for _, t in examples(0)] == [t for _, t in examples(1)]


def _loss(model, tokenizer, pairs) -> float:
    sources = tokenizer([s for s, _ in pairs], padding=True, return_tensors="pt")
    labels = tokenizer([t for _, t in pairs], padding=True, return_tensors="pt").input_ids
    labels[labels == tokenizer.pad_token_id] = -100
    model.eval()
    with torch.no_grad():
        return float(model(**sources, labels=labels).loss)


def test_training_lowers_the_loss_and_schedules_to_zero(tokenizer, tmp_path: Path) -> None:
    examples = SequentialExamples(SEQUENCES, IDS, max_history=20, seed=0)
    config = dataclasses.replace(CONFIG, epochs=6)
    model = build_model(config, "cpu", tokenizer, seed=0)
    before = _loss(model, tokenizer, examples(0))
    report = train_seq2seq(model, tokenizer, examples, config, tmp_path / "checkpoints", context(tmp_path))
    assert _loss(model, tokenizer, examples(0)) < before * 0.8
    # 8 examples, batches of 2, 2 batches per step: 2 optimizer steps per epoch.
    assert report.optimizer_steps == 12 and report.examples_per_epoch == 8
    state = torch.load(latest_checkpoint(tmp_path / "checkpoints") / "state.pt", weights_only=False)
    assert state["scheduler"]["last_epoch"] == 12 and state["epoch"] == 6
    assert state["optimizer"]["param_groups"][0]["lr"] == 0.0  # linear decay ends at zero
    assert not model.training


class Killed(Exception):
    pass


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_killed_run_resumes_to_identical_weights(tokenizer, tmp_path: Path, precision: str) -> None:
    examples = SequentialExamples(SEQUENCES, IDS, max_history=20, seed=0)
    config = dataclasses.replace(CONFIG, precision=precision)
    straight = build_model(config, "cpu", tokenizer, seed=0)
    train_seq2seq(straight, tokenizer, examples, config, tmp_path / "straight", context(tmp_path))

    def killed_in_second_epoch(epoch: int):
        if epoch == 1:
            raise Killed
        return examples(epoch)

    first = build_model(config, "cpu", tokenizer, seed=0)
    with pytest.raises(Killed):
        train_seq2seq(first, tokenizer, killed_in_second_epoch, config, tmp_path / "killed", context(tmp_path))
    # A half-written checkpoint of a later kill must be ignored.
    (tmp_path / "killed" / ".tmp-epoch-0002-999").mkdir()
    torch.manual_seed(999)  # the new process's RNG differs; the checkpoint's must win
    resumed = build_model(config, "cpu", tokenizer, seed=7)  # weights must come from the checkpoint
    report = train_seq2seq(resumed, tokenizer, examples, config, tmp_path / "killed", context(tmp_path))
    assert report.resumed_from_epoch == 1
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == ["epoch-0002"]


def test_a_run_cut_short_of_its_schedule_matches_the_longer_run_at_that_epoch(tokenizer, tmp_path: Path) -> None:
    examples = SequentialExamples(SEQUENCES, IDS, max_history=20, seed=0)
    longer_config = dataclasses.replace(CONFIG, epochs=3)

    def killed_in_second_epoch(epoch: int):
        if epoch == 1:
            raise Killed
        return examples(epoch)

    longer = build_model(longer_config, "cpu", tokenizer, seed=0)
    with pytest.raises(Killed):  # the 3-epoch run, stopped after its first epoch
        train_seq2seq(longer, tokenizer, killed_in_second_epoch, longer_config, tmp_path / "longer", context(tmp_path))
    short_config = dataclasses.replace(CONFIG, epochs=1, schedule_epochs=3)
    short = build_model(short_config, "cpu", tokenizer, seed=0)
    train_seq2seq(short, tokenizer, examples, short_config, tmp_path / "short", context(tmp_path))
    for (name, a), b in zip(longer.named_parameters(), short.parameters()):
        assert torch.equal(a, b), name
    state = torch.load(latest_checkpoint(tmp_path / "short") / "state.pt", weights_only=False)
    assert state["optimizer"]["param_groups"][0]["lr"] > 0.0  # partway down the 3-epoch decay
    plain = build_model(CONFIG, "cpu", tokenizer, seed=0)  # a 1-epoch schedule ends elsewhere
    train_seq2seq(plain, tokenizer, examples, dataclasses.replace(CONFIG, epochs=1), tmp_path / "plain",
                  context(tmp_path))
    assert not all(torch.equal(a, b) for a, b in zip(plain.parameters(), short.parameters()))


def test_a_schedule_shorter_than_the_cap_is_refused() -> None:
    with pytest.raises(BenchError, match="'schedule_epochs' \\(2\\) must be 0 or at least 'epochs' \\(3\\)"):
        dataclasses.replace(CONFIG, epochs=3, schedule_epochs=2)


def test_finished_run_is_not_trained_again(tokenizer, tmp_path: Path) -> None:
    examples = SequentialExamples(SEQUENCES, IDS, max_history=20, seed=0)
    model = build_model(CONFIG, "cpu", tokenizer, seed=0)
    train_seq2seq(model, tokenizer, examples, CONFIG, tmp_path / "checkpoints", context(tmp_path))

    def never(epoch: int):
        if epoch > 0:
            raise AssertionError("trained again")
        return examples(epoch)

    again = build_model(CONFIG, "cpu", tokenizer, seed=1)
    report = train_seq2seq(again, tokenizer, never, CONFIG, tmp_path / "checkpoints", context(tmp_path))
    assert report.resumed_from_epoch == CONFIG.epochs
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))


def test_checkpoint_of_another_setup_is_refused(tokenizer, tmp_path: Path) -> None:
    examples = SequentialExamples(SEQUENCES, IDS, max_history=20, seed=0)
    config = dataclasses.replace(CONFIG, epochs=1)
    train_seq2seq(build_model(config, "cpu", tokenizer, seed=0), tokenizer, examples, config,
                  tmp_path / "checkpoints", context(tmp_path))
    other = dataclasses.replace(CONFIG, epochs=1, batch_size=4)
    with pytest.raises(BenchError, match="epoch-0001"):
        train_seq2seq(build_model(other, "cpu", tokenizer, seed=0), tokenizer, examples, other,
                      tmp_path / "checkpoints", context(tmp_path))


def test_no_examples_is_an_error(tokenizer, tmp_path: Path) -> None:
    examples = SequentialExamples([np.array([0]), np.array([1])], IDS, max_history=20, seed=0)
    with pytest.raises(BenchError, match="no training examples"):
        train_seq2seq(build_model(CONFIG, "cpu", tokenizer, seed=0), tokenizer, examples, CONFIG,
                      tmp_path / "checkpoints", context(tmp_path))


def test_cheap_mask_dropout_keeps_one_minus_p_scales_and_is_put_back() -> None:
    from bench.engine.dropout import CheapMaskDropout, cheap_mask_dropout

    torch.manual_seed(0)
    dropout = CheapMaskDropout(0.25)
    hidden = torch.randn(400, 500, requires_grad=True)
    out = dropout(hidden)
    out.sum().backward()
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.005
    assert torch.allclose(out[kept], hidden[kept] / 0.75)
    assert torch.allclose(hidden.grad[kept], torch.full_like(hidden.grad[kept], 1 / 0.75))
    assert bool((hidden.grad[~kept] == 0).all())
    dropout.eval()
    assert torch.equal(dropout(hidden), hidden)

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.1), torch.nn.Dropout(0.3))
    originals = list(model)
    with cheap_mask_dropout(model) as replaced:
        assert replaced == 2 and [type(m) for m in model][1:] == [CheapMaskDropout] * 2
        assert [m.p for m in list(model)[1:]] == [0.1, 0.3]
    assert list(model) == originals


def _small_t5():
    """A 2+2-layer T5 with T5's dropout 0.1 (its attention on SDPA)."""
    from transformers import T5Config, T5ForConditionalGeneration

    return T5ForConditionalGeneration(T5Config(vocab_size=40, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                               dropout_rate=0.1, pad_token_id=0, eos_token_id=1,
                                               decoder_start_token_id=0))


def _keep_every_weight(model: torch.nn.Module) -> None:
    """Every dropout of ``model`` at ~0: the dropout paths run, and keep every weight."""
    for module in model.modules():
        if isinstance(getattr(module, "dropout", None), float):
            module.dropout = 1e-9
        elif hasattr(module, "p"):
            module.p = 1e-9


@pytest.mark.parametrize("padded", [True, False])
def test_t5_training_paths_compute_t5s_attention_and_feed_forward(padded: bool) -> None:
    """Under cheap_mask_dropout a T5 runs its own attention (with the cheap mask on the weights)
    and feed-forward: with every dropout at ~0 it gives the outputs of the model's SDPA path,
    with and without padding (no padding: transformers passes no mask, the decoder is causal)."""
    from bench.engine.dropout import _T5_TRAINING_ATTENTION, cheap_mask_dropout

    torch.manual_seed(0)
    model = _small_t5()
    assert model.config._attn_implementation == "sdpa"
    input_ids, labels = torch.randint(2, 40, (3, 7)), torch.randint(2, 40, (3, 4))
    attention_mask = torch.ones(3, 7, dtype=torch.long)
    if padded:
        attention_mask[0, 5:] = 0
        labels[0, 3] = -100
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    model.eval()
    with torch.no_grad():
        expected = model(**batch)
    model.train()
    with cheap_mask_dropout(model):
        assert model.config._attn_implementation == _T5_TRAINING_ATTENTION
        _keep_every_weight(model)
        found = model(**batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(**batch)
    torch.testing.assert_close(found.logits, expected.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bf16.loss, expected.loss, atol=5e-2, rtol=5e-2)
    assert model.config._attn_implementation == "sdpa"
    assert all("forward" not in vars(module) for module in model.modules())  # the classes' forwards again


def test_t5_stacks_held_by_a_wrapper_take_the_training_attention_too() -> None:
    """A model that holds a T5's encoder and decoder stacks, not the T5 itself (SETRec's), gets
    the cheap-mask attention in both stacks, with the SDPA path's outputs at dropout ~0, and SDPA
    back after the block."""
    from bench.engine.dropout import _T5_TRAINING_ATTENTION, cheap_mask_dropout

    torch.manual_seed(0)
    backbone = _small_t5()
    wrapper = torch.nn.Module()
    wrapper.encoder, wrapper.decoder = backbone.get_encoder(), backbone.get_decoder()
    input_ids = torch.randint(2, 40, (3, 7))
    wrapper.eval()
    with torch.no_grad():
        expected = wrapper.encoder(input_ids=input_ids).last_hidden_state
    wrapper.train()
    with cheap_mask_dropout(wrapper):
        assert {wrapper.encoder.config._attn_implementation,
                wrapper.decoder.config._attn_implementation} == {_T5_TRAINING_ATTENTION}
        _keep_every_weight(wrapper)
        found = wrapper.encoder(input_ids=input_ids).last_hidden_state
    torch.testing.assert_close(found, expected, atol=1e-5, rtol=1e-5)
    assert {wrapper.encoder.config._attn_implementation, wrapper.decoder.config._attn_implementation} == {"sdpa"}


def test_t5_training_attention_without_dropout_is_the_explicit_path_and_equals_sdpa() -> None:
    """At dropout 0 training still takes the explicit path (not torch's SDPA, slow on the CPU
    with T5's position bias), and it computes what SDPA does."""
    from unittest import mock

    from bench.engine.dropout import _t5_training_attention

    torch.manual_seed(0)
    module = torch.nn.Module()
    query, key, value = torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8)
    bias = torch.randn(2, 4, 6, 6)
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=1.0)
    with mock.patch("torch.nn.functional.scaled_dot_product_attention", side_effect=AssertionError("SDPA")):
        found, _ = _t5_training_attention(module, query, key, value, None, scaling=1.0, dropout=0.0,
                                          position_bias=bias, is_causal=False)
    torch.testing.assert_close(found, expected.transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_t5_attention_dropout_keeps_one_minus_p_of_the_weights() -> None:
    from bench.engine.dropout import _t5_training_attention

    torch.manual_seed(0)
    module = torch.nn.Module()
    query, key, value = torch.randn(8, 4, 30, 16), torch.randn(8, 4, 30, 16), torch.eye(30).expand(8, 4, 30, 30)
    weights, _ = _t5_training_attention(module, query, key, value, None, scaling=1.0, dropout=0.25,
                                        is_causal=False)
    weights = weights.transpose(1, 2)  # [batch, heads, query, key]: the dropped-out weights, as value is I
    assert abs((weights != 0).float().mean().item() - 0.75) < 0.01
    softmax = torch.softmax(query @ key.transpose(2, 3), dim=-1)
    kept = weights != 0
    torch.testing.assert_close(weights[kept], softmax[kept] / 0.75)


@pytest.mark.parametrize("schedule", ["constant", "inverse_sqrt"])
def test_constant_and_inverse_sqrt_schedules_do_not_depend_on_the_epoch_cap(schedule):
    import torch

    from bench.engine.training import TrainingConfig, _scheduler

    def rates(epochs):
        parameter = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.AdamW([parameter], lr=0.01)
        config = TrainingConfig(lr_schedule=schedule, warmup_steps=4, epochs=epochs)
        scheduler = _scheduler(optimizer, config, total_steps=10 * epochs)
        found = []
        for _ in range(16):
            found.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return found

    assert rates(2) == rates(200)
    assert rates(2)[:5] == pytest.approx([0.0, 0.0025, 0.005, 0.0075, 0.01])
    expected_at_16 = 0.01 if schedule == "constant" else 0.01 * (4 / 15) ** 0.5
    assert rates(2)[15] == pytest.approx(expected_at_16)


def test_linear_schedule_decays_to_zero_at_the_cap():
    import torch

    from bench.engine.training import TrainingConfig, _scheduler

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    scheduler = _scheduler(optimizer, TrainingConfig(warmup_ratio=0.1, epochs=1), total_steps=10)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.0


class _OrderedTask:
    """Examples in an order drawn per epoch by the task itself; a loss with dropout."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.inputs, self.targets = inputs, targets
        self.seen: list[list[int]] = []

    def examples_for_epoch(self, epoch: int) -> list[int]:
        return np.random.default_rng([7, epoch]).permutation(len(self.inputs))[:10].tolist()

    def collate(self, examples):
        self.seen.append(list(examples))
        return {"x": self.inputs[examples], "y": self.targets[examples]}

    def loss(self, model, batch):
        return torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])


def test_kept_order_and_torch_adamw_reproduce_a_hand_written_loop_bit_for_bit(tmp_path: Path) -> None:
    """shuffle=False cuts batches from the task's own order, fused_optimizer=False is torch's
    default AdamW, seed starts the dropout stream: a loop written before train_model existed
    (IDGenRec's generator phase) moves to it without changing a bit."""
    from bench.engine.training import TrainingConfig, train_model

    generator = torch.Generator().manual_seed(0)
    inputs, targets = torch.randn(13, 6, generator=generator), torch.randn(13, 2, generator=generator)

    def network() -> torch.nn.Module:
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Dropout(0.3), torch.nn.Tanh(),
                                   torch.nn.Linear(16, 2))

    config = TrainingConfig(learning_rate=3e-2, lr_schedule="constant", warmup_ratio=0.0, weight_decay=0.0, epochs=3,
                            batch_size=4, max_grad_norm=0.5, length_bucketing=False, eval_every=0)
    model, task = network(), _OrderedTask(inputs, targets)
    train_model(model, task, config, tmp_path / "checkpoints", context(tmp_path), seed=1234, shuffle=False,
                fused_optimizer=False, cheap_dropout_masks=False)
    assert task.seen[:3] == [task.examples_for_epoch(0)[i:i + 4] for i in (0, 4, 8)]

    by_hand = network()
    torch.manual_seed(1234)
    optimizer = torch.optim.AdamW(by_hand.parameters(), lr=3e-2, weight_decay=0.0)
    by_hand.train()
    for epoch in range(3):
        order = task.examples_for_epoch(epoch)
        for start in range(0, len(order), 4):
            batch = order[start:start + 4]
            loss = task.loss(by_hand, {"x": inputs[batch], "y": targets[batch]})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(by_hand.parameters(), 0.5)
            optimizer.step()
    for trained, expected in zip(model.parameters(), by_hand.parameters()):
        assert torch.equal(trained, expected)


def test_kept_order_batches_are_consecutive_slices_and_refuse_length_buckets() -> None:
    from bench.engine.batching import epoch_batches

    batches = epoch_batches(None, 10, 4, seed=0, epoch=3, shuffle=False)
    assert [batch.tolist() for batch in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="length buckets"):
        epoch_batches(np.arange(10), 10, 4, seed=0, epoch=3, shuffle=False)
