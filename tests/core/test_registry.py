import pytest

from bench.errors import BenchError
from bench.registry import Registry, methods


def test_duplicate_names_are_an_error():
    registry = Registry("method")
    registry.add("sasrec", lambda: 1)
    with pytest.raises(BenchError, match="duplicate method name 'sasrec'"):
        registry.add("sasrec", lambda: 2)


def test_unknown_name_suggests_close_ones():
    registry = Registry("method")
    registry.add("sasrec", lambda: 1)
    registry.add("gru4rec", lambda: 2)
    with pytest.raises(BenchError, match="did you mean 'sasrec'"):
        registry.get("sasrc")


def test_builtin_methods_come_from_entry_points():
    assert "pop" in methods().names()
