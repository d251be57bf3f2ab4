"""IDGenRec (Tan et al., SIGIR 2024, "IDGenRec: LLM-RecSys Alignment with Textual ID Learning").

Items are named by short textual IDs in ordinary words, written by an ID generator (a T5
that reads the item's plain text) and made unique by diverse ID generation; a T5
recommender reads histories of such IDs and writes the next one.

- ``generator``: the ID generator (pre-trained tag generator for ``paper``, a small T5
  warm-started on the item text for ``cpu``).
- ``diverse_ids``: Algorithm 1, diverse beam search with a rising diversity penalty.
- ``user_ids``: optional textual user IDs from the items a phase may see.
- ``config``: the options and the schedule of phases; ``start``: the start several runs share
  (tokenizer, warm-started generator, initial IDs); ``prompting``: prompts written with the
  current IDs; ``generator_phase``: the generator trained through the frozen recommender (by
  the engine's loop); ``state``: what the schedule carries from phase to phase; ``snapshots``:
  the schedule's resumable snapshots and the IDs table; ``method``: the plugin, fit (start,
  schedule, selection) and rank.
"""
