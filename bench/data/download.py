"""Upstream source files: downloading them (:func:`fetch`) and reading them line by line
with a checksum and a progress bar (:func:`read_lines`).

A download streams into a hidden temporary file in the destination folder and is renamed
into place only once complete and verified, so an interrupted or failed download never
leaves a file that a later run could mistake for a good one. The sha256 computed while
downloading is always written next to the file (``<name>.sha256``, the ``sha256sum``
format, so ``sha256sum -c`` can check it later) and returned.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tempfile
import zlib
from http.client import HTTPException
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator
from urllib.request import urlopen

from bench.errors import BenchError
from bench.progress import progress_bar

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60


def fetch(url: str, destination: Path, expected_sha256: str | None = None,
          progress: bool = True) -> str:
    """Download ``url`` to ``destination`` atomically; return the sha256 of its bytes."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.",
                                              suffix=".part")
    temporary = Path(temporary_name)
    try:
        with os.fdopen(handle, "wb") as output:
            digest = _stream_to(url, output, destination.name, progress)
            output.flush()
            os.fsync(output.fileno())
        sha256 = digest.hexdigest()
        if expected_sha256 is not None and sha256 != expected_sha256.lower():
            raise BenchError(f"{url}: sha256 mismatch for {destination}: expected "
                             f"{expected_sha256.lower()}, downloaded {sha256}")
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    checksum_file = destination.with_name(destination.name + ".sha256")
    checksum_file.write_text(f"{sha256}  {destination.name}\n")
    return sha256


def _stream_to(url: str, output: BinaryIO, label: str, progress: bool) -> "hashlib._Hash":
    digest = hashlib.sha256()
    received = 0
    try:
        with urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with progress_bar(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                              desc=f"download {label}", disable=not progress) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    output.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (OSError, HTTPException, ValueError) as error:
        # URLError/HTTPError/timeouts are OSErrors; IncompleteRead is an HTTPException;
        # an unsupported URL scheme is a ValueError.
        raise BenchError(f"{url}: download failed: {getattr(error, 'reason', None) or error}") from None
    if total is not None and received != total:
        raise BenchError(f"{url}: download incomplete: received {received} of {total} bytes")
    return digest


class _HashingReader(io.RawIOBase):
    """A read-only binary stream that hashes and counts the bytes it passes on."""

    def __init__(self, raw: BinaryIO, bar) -> None:
        self.raw, self.bar, self.digest = raw, bar, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.raw.readinto(buffer)
        if count:
            self.digest.update(memoryview(buffer)[:count])
            self.bar.update(count)
        return count

    def drain(self) -> None:
        while self.read(CHUNK_BYTES):
            pass


class LineSource:
    """The lines of a text file (gzip-compressed if its name ends in ``.gz``).

    Iterating yields ``(line_number, line)``; afterwards :attr:`sha256` holds the digest
    of the file's bytes on disk (computed on the same pass, so a large file is read once).
    A truncated or corrupt gzip file raises :class:`BenchError` naming it.
    """

    def __init__(self, path: Path, progress: bool = True) -> None:
        self.path = Path(path)
        self.progress = progress
        self.sha256: str | None = None

    def __iter__(self) -> Iterator[tuple[int, str]]:
        if not self.path.is_file():
            raise BenchError(f"{self.path}: file not found")
        size = self.path.stat().st_size
        line_number = 0
        with self.path.open("rb") as raw, progress_bar(
                total=size, unit="B", unit_scale=True, unit_divisor=1024,
                desc=f"read {self.path.name}", disable=not self.progress) as bar:
            hashing = _HashingReader(raw, bar)
            buffered = io.BufferedReader(hashing, CHUNK_BYTES)
            binary = gzip.GzipFile(fileobj=buffered, mode="rb") if self.path.name.endswith(".gz") else buffered
            text = io.TextIOWrapper(binary, encoding="utf-8")
            try:
                for line_number, line in enumerate(text, start=1):
                    yield line_number, line
                hashing.drain()
            except (EOFError, gzip.BadGzipFile, zlib.error) as error:
                raise BenchError(f"{self.path}: truncated or corrupt gzip file after line {line_number} "
                                 f"({error}); delete it and download it again") from None
            except UnicodeDecodeError:
                raise BenchError(f"{self.path}:{line_number + 1}: not UTF-8 text") from None
        self.sha256 = hashing.digest.hexdigest()


def read_lines(path: Path, progress: bool = True) -> LineSource:
    return LineSource(path, progress)


def keyed_records(path: Path, wanted: set[str], key: str,
                  parse: Callable[[int, str], dict[str, Any] | None]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The records of a one-object-per-line file whose ``key`` is in ``wanted``, and the file's
    digest. ``parse(line_number, line)`` reads and checks each non-blank line (raising
    :class:`BenchError` naming it), or returns None to skip a line unread."""
    records: dict[str, dict[str, Any]] = {}
    lines = read_lines(path)
    for line_number, line in lines:
        if not line.strip():
            continue
        record = parse(line_number, line)
        if record is not None and record[key] in wanted:
            records[record[key]] = record
    return records, lines.sha256


def json_object(path: Path, line_number: int, line: str) -> dict[str, Any]:
    """One line of a JSON-lines file, which must hold an object."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise BenchError(f"{path}:{line_number}: invalid JSON: {error.msg}") from None
    if not isinstance(record, dict):
        raise BenchError(f"{path}:{line_number}: expected a JSON object")
    return record
