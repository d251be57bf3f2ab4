"""The one error type for user-facing failures.

The CLI prints its message as a single line and exits non-zero; anything else that
escapes is a bug and keeps its traceback.
"""


class BenchError(Exception):
    """A failure caused by the user's input: a file, a line, a key or a name at fault."""
