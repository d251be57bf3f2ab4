"""A prefix trie over the items' ID token sequences, stored as tensors for batched decoding.

Every generative method decodes an item ID token by token and may only write IDs that
exist (the constrained decoding of P5 and IDGenRec). The trie answers the two questions a
beam search asks at every step, for all beams at once and without a Python loop over
beams: which tokens may follow each beam's prefix (:meth:`ItemTrie.allowed_mask`) and
which node a beam reaches after one more token (:meth:`ItemTrie.advance`).

Layout (compressed sparse rows, nodes numbered breadth-first, node 0 the root, which is
the state after T5's decoder start token): the edges leaving node ``n`` are
``offsets[n]:offsets[n + 1]``, with their tokens in ascending order in ``tokens`` and the
nodes they lead to in ``children``. Every item's sequence ends with EOS, so an ID that is
a prefix of another ID still ends at its own leaf; ``node_item`` maps leaves to items.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch

from bench.errors import BenchError


@dataclasses.dataclass(frozen=True, eq=False)
class ItemTrie:
    offsets: torch.Tensor  # [n_nodes + 1] int64
    tokens: torch.Tensor  # [n_edges] int64, ascending within each node
    children: torch.Tensor  # [n_edges] int64
    # node * key_base + token for every edge; ascending because nodes are numbered in
    # order and tokens sorted within a node, so one searchsorted finds any edge.
    edge_keys: torch.Tensor  # [n_edges] int64
    node_item: torch.Tensor  # [n_nodes] int64, the item at a leaf, -1 elsewhere
    item_sequences: tuple[tuple[int, ...], ...]  # each item's tokens, EOS excluded
    eos_token_id: int
    pad_token_id: int
    key_base: int  # 1 + the largest token in the trie
    max_depth: int  # tokens on the longest path, EOS included
    # Tries of item subsets (restricted()), by subset.
    _restricted: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls, token_sequences: Sequence[Sequence[int]], eos_token_id: int, pad_token_id: int,
        allowed: Sequence[bool] | None = None,
    ) -> "ItemTrie":
        """Trie over ``token_sequences[item]`` (one per item, EOS appended here).

        Trailing pads and one trailing EOS are stripped first, so padded tokenizer output
        may be passed as is. The item order of ``token_sequences`` is the item index.
        ``allowed`` (one bool per item): only those items are in the trie, with their indices.
        """
        if not token_sequences:
            raise BenchError("ItemTrie.build: no item sequences given")
        sequences = [_clean_sequence(item, seq, eos_token_id, pad_token_id) for item, seq in enumerate(token_sequences)]
        kept = [item for item in range(len(sequences)) if allowed is None or allowed[item]]
        if not kept:
            raise BenchError("ItemTrie.build: no item is allowed")

        # Build a dict-of-dicts once (build time, not the decoding hot path).
        root: dict = {}
        for item in kept:
            sequence = sequences[item]
            node = root
            for token in sequence:
                node = node.setdefault(token, {})
            if eos_token_id in node:
                other = node[eos_token_id]
                raise BenchError(
                    f"ItemTrie.build: items {other} and {item} have the same ID tokens {list(sequence)}"
                )
            node[eos_token_id] = item

        # Breadth-first numbering, then the CSR arrays.
        offsets, tokens, children, node_item = [0], [], [], [-1]
        queue = [root]
        next_node = 1
        head = 0
        while head < len(queue):
            node = queue[head]
            head += 1
            for token in sorted(node):
                child = node[token]
                tokens.append(token)
                children.append(next_node)
                next_node += 1
                if token == eos_token_id and not isinstance(child, dict):
                    node_item.append(child)
                    queue.append({})  # a leaf: no edges
                else:
                    node_item.append(-1)
                    queue.append(child)
            offsets.append(len(tokens))

        key_base = max(tokens) + 1
        offsets_t = torch.tensor(offsets, dtype=torch.long)
        tokens_t = torch.tensor(tokens, dtype=torch.long)
        edge_nodes = torch.repeat_interleave(torch.arange(len(offsets) - 1), offsets_t.diff())
        return cls(
            offsets=offsets_t,
            tokens=tokens_t,
            children=torch.tensor(children, dtype=torch.long),
            edge_keys=edge_nodes * key_base + tokens_t,
            node_item=torch.tensor(node_item, dtype=torch.long),
            item_sequences=tuple(tuple(sequence) for sequence in sequences),
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            key_base=key_base,
            max_depth=max(len(sequences[item]) for item in kept) + 1,
        )

    def restricted(self, allowed) -> "ItemTrie":
        """The trie of the allowed items only (a bool mask over items), item indices kept, so a
        beam search over it can return only those items; built once per mask."""
        mask = np.asarray(allowed, dtype=bool)
        if mask.shape != (self.n_items,):
            raise BenchError(f"ItemTrie.restricted: a mask over {self.n_items} items is needed, got shape {mask.shape}")
        key = mask.tobytes()
        if key not in self._restricted:
            self._restricted[key] = ItemTrie.build(self.item_sequences, self.eos_token_id, self.pad_token_id, mask)
        return self._restricted[key]

    @property
    def n_items(self) -> int:
        return len(self.item_sequences)

    @property
    def n_nodes(self) -> int:
        return self.node_item.numel()

    def edges(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every edge leaving ``nodes[i]``, as ``(row i, token, child node)``, rows ascending.

        A node id of -1 (a dead beam) has no edges. One gather over the concatenated CSR
        slices of all the nodes, no loop over nodes.
        """
        nodes = nodes.reshape(-1)
        valid = nodes >= 0
        safe = torch.where(valid, nodes, 0)
        starts = self.offsets[safe]
        counts = torch.where(valid, self.offsets[safe + 1] - starts, 0)
        total = int(counts.sum())
        rows = torch.repeat_interleave(torch.arange(nodes.numel()), counts, output_size=total)
        # Position of each edge inside its node's slice, then its global edge index.
        slice_starts = torch.cumsum(counts, 0) - counts
        edge_index = torch.arange(total) - slice_starts[rows] + starts[rows]
        return rows, self.tokens[edge_index], self.children[edge_index]

    def allowed_mask(self, nodes: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """Bool ``[N, vocab_size]``: True where a token may follow node ``nodes[i]`` (one scatter)."""
        if self.key_base > vocab_size:
            raise BenchError(
                f"ItemTrie.allowed_mask: the trie uses token {self.key_base - 1} but the vocabulary has {vocab_size}"
            )
        rows, tokens, _ = self.edges(nodes)
        mask = torch.zeros(nodes.numel(), vocab_size, dtype=torch.bool)
        mask[rows, tokens] = True
        return mask

    def advance(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The node reached from ``nodes[i]`` by ``tokens[i]``; -1 where there is no such edge."""
        keys = nodes * self.key_base + tokens
        positions = torch.searchsorted(self.edge_keys, keys).clamp_(max=self.edge_keys.numel() - 1)
        found = (self.edge_keys[positions] == keys) & (nodes >= 0) & (tokens >= 0) & (tokens < self.key_base)
        return torch.where(found, self.children[positions], -1)

    def items(self, nodes: torch.Tensor) -> torch.Tensor:
        """The item whose ID ends at each node (a leaf); -1 for inner and dead nodes."""
        return torch.where(nodes >= 0, self.node_item[nodes.clamp(min=0)], -1)


def _clean_sequence(item: int, sequence: Sequence[int], eos_token_id: int, pad_token_id: int) -> tuple[int, ...]:
    tokens = [int(token) for token in sequence]
    while tokens and tokens[-1] == pad_token_id:
        tokens.pop()
    if tokens and tokens[-1] == eos_token_id:
        tokens.pop()
    if not tokens:
        raise BenchError(f"ItemTrie.build: item {item} has an empty ID token sequence")
    for token in tokens:
        if token in (eos_token_id, pad_token_id) or token < 0:
            raise BenchError(
                f"ItemTrie.build: item {item} has token {token} inside its ID {tokens} "
                f"(EOS={eos_token_id} and pad={pad_token_id} may not appear there)"
            )
    return tuple(tokens)
