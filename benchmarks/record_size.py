"""Size of run records: per-user values stored as decimal text against ranks (issue 28).

For each record given, prints its size on disk and the size of the same record in the other
layout, written as ``bench.results.write_record`` writes (JSON, indent 1):

- a record that stores ranks: the size it would have had with its per-user values written out,
  as records were before ranks were stored (every per-user field its ranks derive);
- a record made before ranks were stored (one target per user): the size with the ranks
  recovered from its values instead (``ranks_block_from_values``: exact below the largest
  cutoff, unknown beyond it, so these ranks compress better than a fresh run's full ranks).

Nothing is written. Run from the project root:

    .venv/bin/python benchmarks/record_size.py results/toys/gru4rec/*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.evaluation.stored_ranks import ranks_block_from_values
from bench.results import read_record

PER_USER_PREFIXES = ("per_user", "users_")


def _size(record: dict[str, Any]) -> int:
    return len(json.dumps(record, indent=1).encode("utf-8"))


def other_layout(path: Path) -> tuple[str, int]:
    stored = json.loads(path.read_text())
    if "ranks" in stored:
        expanded = {k: v for k, v in read_record(path).items() if k != "ranks"}
        return "values written out", _size(expanded)
    compact = {k: v for k, v in stored.items() if not k.startswith(PER_USER_PREFIXES)}
    compact["ranks"] = ranks_block_from_values(stored)
    return "ranks recovered from values", _size(compact)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("records", nargs="+", type=Path)
    for path in parser.parse_args().records:
        record = json.loads(path.read_text())
        layout = "ranks" if "ranks" in record else "per-user values"
        other, size = other_layout(path)
        print(f"{path}: {record['split'].get('test_users', len(record.get('per_user', {}).get('HR@10', [])))} "
              f"test users; stored ({layout}): {path.stat().st_size:,} bytes; {other}: {size:,} bytes")


if __name__ == "__main__":
    main()
