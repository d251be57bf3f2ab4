import gzip
import hashlib
import io

import pytest

from bench.data import download
from bench.data.download import fetch, read_lines
from bench.errors import BenchError

PAYLOAD = b"line one\nline two\n" * 1000


def leftovers(folder):
    return sorted(path.name for path in folder.iterdir())


@pytest.fixture
def upstream(tmp_path):
    path = tmp_path / "upstream" / "reviews.json.gz"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


def test_fetch_writes_file_and_records_its_sha256(tmp_path, upstream):
    destination = tmp_path / "raw" / "reviews.json.gz"
    sha256 = fetch(upstream.as_uri(), destination, progress=False)
    assert destination.read_bytes() == PAYLOAD
    assert sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert (tmp_path / "raw" / "reviews.json.gz.sha256").read_text() == f"{sha256}  reviews.json.gz\n"
    assert leftovers(tmp_path / "raw") == ["reviews.json.gz", "reviews.json.gz.sha256"]


def test_fetch_accepts_the_right_checksum_in_any_case(tmp_path, upstream):
    expected = hashlib.sha256(PAYLOAD).hexdigest().upper()
    fetch(upstream.as_uri(), tmp_path / "out", expected_sha256=expected, progress=False)
    assert (tmp_path / "out").read_bytes() == PAYLOAD


def test_checksum_mismatch_names_url_and_leaves_nothing(tmp_path, upstream):
    folder = tmp_path / "raw"
    with pytest.raises(BenchError, match=r"reviews\.json\.gz: sha256 mismatch for .*expected 0{64}"):
        fetch(upstream.as_uri(), folder / "reviews.json.gz", expected_sha256="0" * 64, progress=False)
    assert leftovers(folder) == []


def test_missing_source_is_a_bench_error(tmp_path):
    url = (tmp_path / "nowhere.gz").as_uri()
    with pytest.raises(BenchError, match=rf"^{url}: download failed"):
        fetch(url, tmp_path / "raw" / "nowhere.gz", progress=False)
    assert leftovers(tmp_path / "raw") == []


class FlakyResponse(io.BytesIO):
    """Serves some bytes, then fails as a dropped connection does."""

    def __init__(self, payload, fail_after, length=None):
        super().__init__(payload)
        self.fail_after = fail_after
        self.headers = {"Content-Length": str(length if length is not None else len(payload))}

    def read(self, size=-1):
        if self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        return super().read(min(size, self.fail_after - self.tell()))


def test_network_error_midway_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "urlopen", lambda url, timeout: FlakyResponse(PAYLOAD, fail_after=100))
    with pytest.raises(BenchError, match=r"^http://example\.org/r\.gz: download failed: connection reset"):
        fetch("http://example.org/r.gz", tmp_path / "r.gz", progress=False)
    assert leftovers(tmp_path) == []


def test_short_body_is_an_incomplete_download(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "urlopen",
                        lambda url, timeout: FlakyResponse(PAYLOAD[:50], fail_after=10**9, length=len(PAYLOAD)))
    with pytest.raises(BenchError, match=rf"download incomplete: received 50 of {len(PAYLOAD)} bytes"):
        fetch("http://example.org/r.gz", tmp_path / "r.gz", progress=False)
    assert leftovers(tmp_path) == []


def test_read_lines_numbers_lines_and_hashes_the_compressed_bytes(tmp_path):
    path = tmp_path / "f.json.gz"
    path.write_bytes(gzip.compress(b"a\nb\n\nc\n"))
    lines = read_lines(path, progress=False)
    assert list(lines) == [(1, "a\n"), (2, "b\n"), (3, "\n"), (4, "c\n")]
    assert lines.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_lines_reads_plain_files_too(tmp_path):
    path = tmp_path / "f.json"
    path.write_text("x\ny\n")
    lines = read_lines(path, progress=False)
    assert [line for _, line in lines] == ["x\n", "y\n"]
    assert lines.sha256 == hashlib.sha256(b"x\ny\n").hexdigest()


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "f.json.gz"
    path.write_bytes(gzip.compress(PAYLOAD)[:-20])
    with pytest.raises(BenchError, match=r"f\.json\.gz: truncated or corrupt gzip file"):
        list(read_lines(path, progress=False))


def test_not_a_gzip_file_names_the_file(tmp_path):
    path = tmp_path / "f.json.gz"
    path.write_bytes(b"this is not gzip data\n")
    with pytest.raises(BenchError, match=r"f\.json\.gz: truncated or corrupt gzip file"):
        list(read_lines(path, progress=False))
