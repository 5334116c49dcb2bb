"""The on-disk transaction journal: a file it cannot read or write is one line naming that file,
and two processes signing with one key never drop each other's entries."""

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgetune.chain.errors import JournalUnreadable, JournalUnwritable
from edgetune.chain.journal import Journal, SentTransaction

SENDER = "0x" + "ab" * 20
REPO = Path(__file__).resolve().parents[2]


def entry(nonce: int) -> SentTransaction:
    return SentTransaction(SENDER, nonce, None, "0x", 0, 21_000, 1, 1, "0x00", ["0x" + "11" * 32])


def journal_file(directory: Path) -> Path:
    return directory / f"31337-{SENDER.lower()}.json"


@pytest.mark.parametrize(
    "content",
    [b"garbage", b'{"pending": [{"foo": 1}]}', b"\xff\xfe", b"[]", b'{"pending": 5}'],
)
def test_a_corrupt_journal_is_one_line_naming_the_file(tmp_path: Path, content: bytes) -> None:
    journal_file(tmp_path).write_bytes(content)
    for touch in (lambda j: j.pending(SENDER), lambda j: j.record(entry(0))):
        with pytest.raises(JournalUnreadable) as caught:
            touch(Journal(31337, tmp_path))
        message = str(caught.value)
        assert str(journal_file(tmp_path)) in message and "\n" not in message


def test_a_full_disk_names_the_journal_file(tmp_path: Path, monkeypatch) -> None:
    def full(self: Path, *args: object, **kwargs: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(JournalUnwritable) as caught:
        Journal(31337, tmp_path).record(entry(0))
    message = str(caught.value)
    assert str(journal_file(tmp_path)) in message and "No space left" in message
    assert list(tmp_path.iterdir()) == []  # no scratch file left behind


def test_a_folder_in_place_of_the_journal_file_names_the_journal_file(tmp_path: Path) -> None:
    journal_file(tmp_path).mkdir()
    with pytest.raises(JournalUnreadable) as caught:
        Journal(31337, tmp_path).record(entry(0))
    message = str(caught.value)
    assert str(journal_file(tmp_path)) in message and ".tmp" not in message


def test_two_processes_with_one_key_keep_every_entry(tmp_path: Path) -> None:
    # Each records 150 nonces of one sender into the same file; without a lock across
    # processes one's read-modify-write overwrites entries the other just added.
    script = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[3]);"
        "from tests.chain.test_journal import entry; from edgetune.chain.journal import Journal;"
        "j = Journal(31337, Path(sys.argv[1])); start = int(sys.argv[2]);"
        "[j.record(entry(n)) for n in range(start, start + 150)]"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(start), str(REPO)])
        for start in (0, 1000)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    nonces = [e["nonce"] for e in json.loads(journal_file(tmp_path).read_text())["pending"]]
    assert sorted(nonces) == [*range(150), *range(1000, 1150)]
