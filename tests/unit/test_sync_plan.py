"""sync's comparison rules (cli/_sync.py), as aws s3 sync has them."""

from __future__ import annotations

import pytest

from s3cse.cli._sync import Entry, Send, differs, plan


def entry(size=10, modified=100.0, exact=True, name="f"):
    return Entry(name, size, modified, exact=exact)


@pytest.mark.parametrize("direction", ["upload", "copy", "download"])
def test_a_different_size_is_always_sent(direction):
    assert differs(entry(10), entry(11), direction) == "size"
    assert differs(entry(10), entry(11), direction, size_only=True) == "size"


def test_uploads_and_copies_send_a_source_newer_than_its_destination():
    for direction in ("upload", "copy"):
        assert differs(entry(modified=200), entry(modified=100), direction) == "time"
        assert differs(entry(modified=100), entry(modified=100), direction) is None
        assert differs(entry(modified=100), entry(modified=200), direction) is None
        assert differs(entry(modified=200), entry(modified=100), direction, size_only=True) is None


def test_downloads_send_when_the_local_file_is_newer_or_with_exact_timestamps_any_difference():
    # source: the object; dest: the local file
    assert differs(entry(modified=100), entry(modified=200), "download") == "time"
    assert differs(entry(modified=200), entry(modified=100), "download") is None  # aws's rule
    assert differs(entry(modified=200), entry(modified=100), "download", exact_timestamps=True)
    assert (
        differs(entry(modified=100), entry(modified=100), "download", exact_timestamps=True) is None
    )


def test_plan_sends_new_and_changed_and_deletes_only_when_asked():
    sources = [entry(name="new"), entry(name="same"), entry(size=5, name="grown")]
    dests = {
        "same": entry(name="same"),
        "grown": entry(size=4, name="grown", exact=False),
        "gone": entry(name="gone"),
    }
    sends, deletes = plan(sources, dests, "upload")
    assert [(s.source.name, s.reason) for s in sends] == [("new", "new"), ("grown", "size")]
    assert deletes == []
    assert [s.estimated for s in sends] == [False, True]  # the listed size was a guess
    _, deletes = plan(sources, dests, "upload", delete=True)
    assert [d.name for d in deletes] == ["gone"]


def test_only_a_size_difference_resting_on_a_listing_is_estimated():
    assert not Send(entry(), None, "new").estimated
    assert not Send(entry(), entry(), "size").estimated
    assert Send(entry(exact=False), entry(), "size").estimated
    assert not Send(entry(exact=False), entry(exact=False), "time").estimated
