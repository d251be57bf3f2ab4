"""IDGenRec (Tan et al., SIGIR 2024, "IDGenRec: LLM-RecSys Alignment with Textual ID Learning").

Items are named by short textual IDs in ordinary words, written by an ID generator (a T5
that reads the item's plain text) and made unique by diverse ID generation; a T5
recommender reads histories of such IDs and writes the next one.

- ``generator``: the ID generator (pre-trained tag generator for ``paper``, a small T5
  warm-started on the item text for ``cpu``).
- ``diverse_ids``: Algorithm 1, diverse beam search with a rising diversity penalty.
- ``user_ids``: optional textual user IDs from the items a phase may see.
"""
