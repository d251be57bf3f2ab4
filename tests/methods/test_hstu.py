"""HSTU's attention against a hand computation, its bias, and its causal mask."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from methods.hstu.model import HSTUModel, RelativeBias, hstu_attention  # noqa: E402


def test_pointwise_attention_matches_a_hand_computed_case():
    # Two positions, one head, d_qk = d_v = 1, N = 2; position weights for j - i = -1, 0, +1.
    bias_module = RelativeBias(max_length=2, time_buckets=0)
    with torch.no_grad():
        bias_module.position_weights.copy_(torch.tensor([0.5, -1.0, 0.25]))
    bias = bias_module(2, None)
    assert torch.allclose(bias[0], torch.tensor([[-1.0, 0.25], [0.5, -1.0]]))
    q = torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1)
    k = torch.tensor([1.0, -1.0]).reshape(1, 2, 1, 1)
    v = torch.tensor([1.0, 3.0]).reshape(1, 2, 1, 1)
    causal = torch.tensor([[True, False], [True, True]])[None]
    output = hstu_attention(q, k, v, bias, causal, sequence_length=2)
    # (0,0): SiLU(1*1 - 1) / 2 = 0, so the first output is 0.
    # (1,0): SiLU(2*1 + 0.5) / 2 = 2.5 * sigmoid(2.5) / 2 = 1.155178
    # (1,1): SiLU(2*-1 - 1) / 2 = -3 * sigmoid(-3) / 2 = -0.071139
    # second output: 1.155178 * 1 - 0.071139 * 3 = 0.941761 (no softmax: the weights do not sum to 1)
    assert output.shape == (1, 2, 1)
    assert output[0, 0, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert output[0, 1, 0].item() == pytest.approx(0.941761, abs=1e-5)


def test_time_bias_buckets_log_gaps():
    bias_module = RelativeBias(max_length=2, time_buckets=8)
    with torch.no_grad():
        bias_module.position_weights.zero_()
        bias_module.time_weights.copy_(torch.arange(9, dtype=torch.float32))
    bias = bias_module(2, torch.tensor([[0.0, 8.0]]))
    # gap 0 (clamped to 1): log(1) / 0.301 = 0 -> bucket 0; gap 8: log(8) / 0.301 = 6.91 -> bucket 6
    assert int(math.log(8) / 0.301) == 6
    assert torch.equal(bias[0], torch.tensor([[0.0, 6.0], [6.0, 0.0]]))


def test_a_position_never_sees_later_items_or_padding():
    torch.manual_seed(0)
    model = HSTUModel(n_items=10, hidden_size=8, num_layers=2, num_heads=2, attention_dim=4, linear_dim=4,
                      dropout=0.0, max_length=5, time_buckets=0, temperature=0.05, negatives=3).eval()
    first = model.encode(torch.tensor([[1, 2, 3, 0, 0]]))
    changed = model.encode(torch.tensor([[1, 2, 7, 4, 0]]))
    assert torch.allclose(first[0, :2], changed[0, :2], atol=1e-6)
    assert not torch.allclose(first[0, 2], changed[0, 2])
    shorter = model.encode(torch.tensor([[1, 2, 3]]))
    assert torch.allclose(first[0, :3], shorter[0], atol=1e-6)


@pytest.mark.parametrize("negatives", [0, 4])
def test_loss_is_finite_and_trains(negatives):
    torch.manual_seed(0)
    model = HSTUModel(n_items=6, hidden_size=8, num_layers=1, num_heads=1, attention_dim=4, linear_dim=4,
                      dropout=0.0, max_length=4, time_buckets=0, temperature=0.05, negatives=negatives)
    items, targets = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[2, 3, 4, 5]])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        loss = model(items, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert math.isfinite(losses[0]) and losses[-1] < losses[0]


def test_window_times_keep_second_gaps_of_epoch_timestamps():
    import numpy as np

    from methods.hstu.method import window_times

    times = window_times([np.array([1.7e9, 1.7e9 + 61.0, 1.7e9 + 62.0]), np.array([1.6e9])], 3)
    # float32 of the raw epoch seconds would round 1.7e9 + 61 to a multiple of 128
    assert times.tolist() == [[0.0, 61.0, 62.0], [0.0, 0.0, 0.0]]
