"""SETRec's network: set tokens share a position, queries never see each other, one pass per user."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.method import RunContext
from methods.setrec import model as setrec_model
from methods.setrec.method import SETRec, SETRecConfig, length_groups
from methods.setrec.model import PAD_ITEM, SETRecModel, encoder_position_ids

N_ITEMS, CF_DIM, TEXT_DIM, N_SEM = 12, 8, 10, 2


def tiny_network(item_positions: str = "shared", shared_query: bool = False, seed: int = 0) -> SETRecModel:
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    backbone = T5ForConditionalGeneration(T5Config(vocab_size=30, d_model=16, d_ff=32, d_kv=8, num_layers=2,
                                                   num_heads=2, dropout_rate=0.0))
    rng = np.random.default_rng(seed)
    network = SETRecModel(backbone, [3, 4, 5], [6, 7], rng.normal(size=(N_ITEMS, CF_DIM)).astype(np.float32),
                          rng.normal(size=(N_ITEMS, TEXT_DIM)).astype(np.float32), N_SEM, (12,), 0.7,
                          shared_query=shared_query, item_positions=item_positions)
    return network.eval()


def test_position_ids_give_all_tokens_of_an_item_one_position():
    # Instruction of 2 tokens, 3 item slots of 3 tokens, response of 1; user 0 has 2 items.
    ids = encoder_position_ids(torch.tensor([2, 3]), 3, 3, 2, 1, "shared")
    # Slots 2..4 of user 0 are padding (masked out of attention; their ids do not matter).
    assert ids[0].tolist()[:2] + ids[0].tolist()[5:] == [0, 1, 2, 2, 2, 3, 3, 3, 4]
    assert ids[1].tolist() == [0, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5]
    sequential = encoder_position_ids(torch.tensor([2]), 3, 3, 2, 1, "sequential")
    assert sequential[0].tolist()[5:] == [2, 3, 4, 5, 6, 7, 8]


def test_token_order_inside_an_item_does_not_matter_but_item_order_does():
    network = tiny_network()
    tokens = network.item_tokens().detach()
    history = torch.tensor([[1, 5, 7, 2]])
    with torch.no_grad():
        reference = network.query_outputs(history, tokens)
        # Swapping two dimensions' tokens reorders the tokens inside every item's set; the
        # queries keep their dimension, so compare against the same swap of the outputs.
        swapped = network.query_outputs(history, tokens[[1, 0, 2]])
        reordered_items = network.query_outputs(torch.tensor([[5, 1, 7, 2]]), tokens)
    assert torch.allclose(reference, swapped, atol=1e-5)
    assert not torch.allclose(reference, reordered_items, atol=1e-3)


def test_sequential_positions_make_token_order_matter():
    """The ablation (and the control of the test above): own positions break the set."""
    network = tiny_network(item_positions="sequential")
    tokens = network.item_tokens().detach()
    history = torch.tensor([[1, 5, 7, 2]])
    with torch.no_grad():
        assert not torch.allclose(network.query_outputs(history, tokens),
                                  network.query_outputs(history, tokens[[1, 0, 2]]), atol=1e-3)


def test_padding_does_not_change_a_users_output():
    network = tiny_network()
    tokens = network.item_tokens().detach()
    with torch.no_grad():
        alone = network.query_outputs(torch.tensor([[4, 9]]), tokens)
        batched = network.query_outputs(torch.tensor([[PAD_ITEM, PAD_ITEM, 4, 9], [1, 2, 3, 4]]), tokens)
    assert torch.allclose(alone[0], batched[0], atol=1e-5)


def _outputs_with_query_changed(network: SETRecModel, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = network.item_tokens().detach()
    history = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        before = network.query_outputs(history, tokens)
        network.queries.weight[index] += 1.0
        after = network.query_outputs(history, tokens)
    return before[0], after[0]


def test_queries_do_not_attend_to_each_other():
    before, after = _outputs_with_query_changed(tiny_network(), index=1)
    assert not torch.allclose(before[1], after[1], atol=1e-4)
    assert torch.allclose(before[[0, 2]], after[[0, 2]], atol=1e-6)


def test_without_the_diagonal_mask_queries_would_see_each_other(monkeypatch):
    """Control: the same change leaks into the other queries once the mask lets them attend."""
    def open_mask(n_queries, batch, dtype, device):
        return torch.zeros(batch, 1, n_queries, n_queries, dtype=dtype, device=device)

    monkeypatch.setattr(setrec_model, "query_attention_mask", open_mask)
    before, after = _outputs_with_query_changed(tiny_network(), index=1)
    assert not torch.allclose(before[0], after[0], atol=1e-4)


def test_shared_query_serves_every_dimension():
    network = tiny_network(shared_query=True)
    assert network.queries.weight.shape[0] == 1
    outputs = network.query_outputs(torch.tensor([[1, 2]]), network.item_tokens().detach())
    assert outputs.shape == (1, 1 + N_SEM, 16)


def test_loss_trains_every_part():
    network = tiny_network().train()
    loss = network(torch.tensor([[PAD_ITEM, 1, 2], [3, 4, 5]]), torch.tensor([3, 6]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(parameter.grad is not None for parameter in network.parameters())
    assert network.cf_embeddings.grad is None  # the CF tokenizer stays frozen


def test_scoring_is_one_forward_pass_per_user(tmp_path):
    config = SETRecConfig(max_history=50)
    method = SETRec(config, RunContext(work_dir=tmp_path, seed=0, profile="cpu", show_progress=False))
    method.network = tiny_network()
    method._freeze_item_tokens()
    method.beta = 0.5
    encoder_rows, decoder_calls = [], []

    def count_encoder(module, args, kwargs):
        encoder_rows.append(kwargs["inputs_embeds"].shape[0])

    def count_decoder(module, args, kwargs):
        decoder_calls.append(tuple(kwargs["inputs_embeds"].shape[:2]))

    method.network.encoder.register_forward_pre_hook(count_encoder, with_kwargs=True)
    method.network.decoder.register_forward_pre_hook(count_decoder, with_kwargs=True)
    rng = np.random.default_rng(0)
    histories = [rng.integers(0, N_ITEMS, size=length) for length in (3, 1, 40, 2, 7, 30, 12)]
    scores = method.score(np.arange(len(histories)), histories)
    assert scores.shape == (len(histories), N_ITEMS)
    # Every user goes through the encoder once and through the decoder once, all of its
    # n_query queries in that one step: no autoregressive loop, no second pass.
    assert sum(encoder_rows) == len(histories)
    assert [rows for rows, _ in decoder_calls] == encoder_rows
    assert all(length == 1 + N_SEM for _, length in decoder_calls)
    # Grouping users by history length changes no score.
    one_by_one = np.concatenate([method.score(np.array([user]), [history]) for user, history in enumerate(histories)])
    assert np.allclose(scores, one_by_one, atol=1e-5)


def test_length_groups_bound_padding():
    lengths = [50, 3, 9, 2, 17, 40, 8, 30]
    groups = length_groups(lengths)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))
    for group in groups:
        chosen = [lengths[row] for row in group]
        assert max(chosen) <= 2 * max(min(chosen), 8)


def test_config_refuses_an_item_without_tokens():
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="cf_token"):
        SETRecConfig(cf_token=False, semantic_tokens=False)
    with pytest.raises(BenchError, match="item_positions"):
        SETRecConfig(item_positions="random")
