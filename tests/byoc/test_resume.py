"""Sessions read back after a restart: ended ones as they were, live trickle streams ready to be
resumed with their history, everything else failed as interrupted; and the recorder writes every
change of the table to the store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from byoc.media_path import StreamSpec
from byoc.resume import INTERRUPTED, SessionRecorder, from_record, record, restore_sessions
from byoc.sessions import SessionState as S
from byoc.sessions import SessionTable
from byoc.state_store import StateStore

SPEC = StreamSpec(
    stream_id="live-1",
    capability="comfystream-video",
    control_url="http://o/ai/trickle/live-1-control",
    events_url="http://o/ai/trickle/live-1-events",
    subscribe_url="http://o/ai/trickle/live-1",
    publish_url="http://o/ai/trickle/live-1-out",
    params={"workflow": "{}"},
)


def live_stream(table: SessionTable) -> None:
    session = table.admit_stream("comfystream-video", SPEC.stream_id)
    session.stream = dataclasses.asdict(SPEC)
    session.params = {"workflow": "{}", "prompt": "newer"}
    session.transition(S.READY)
    session.transition(S.PROCESSING)


def test_a_record_round_trips() -> None:
    table = SessionTable(4, 60)
    live_stream(table)
    session = table.get(SPEC.stream_id)
    assert session is not None
    session.error = "ingest: late frames"
    copy = from_record(record(session))
    assert record(copy) == record(session)
    assert copy.state is S.PROCESSING and copy.transitions == session.transitions


def test_restore_resumes_live_trickle_streams_and_fails_what_cannot_resume() -> None:
    old = SessionTable(4, retention_s=60)
    live_stream(old)
    job = old.add_job("text-reversal")  # live: a one-shot job in flight
    clip = old.admit_stream("comfystream-video", "clip-1")  # an uploaded clip, half done
    clip.stream = dataclasses.asdict(
        dataclasses.replace(SPEC, stream_id="clip-1", subscribe_url=None, source_path="/x.in")
    )
    done = old.add_job("text-reversal")
    old.set_result(done, {"reversed": "olleh"})
    done.transition(S.COMPLETED)
    gone = old.add_job("text-reversal")
    gone.transition(S.COMPLETED)
    gone.ended_at = 1000.0  # long ago
    docs = [record(s) for s in old]
    now = done.ended_at + 1 if done.ended_at else 0

    table = SessionTable(4, retention_s=60)
    restored = restore_sessions(table, docs, now=now)

    assert restored.expired == [gone.id] and table.get(gone.id) is None
    assert restored.ended == 1
    kept = table.get(done.id)
    assert kept is not None and kept.state is S.COMPLETED
    assert kept.status()["result"] == {"reversed": "olleh"}
    assert sorted(restored.interrupted) == sorted([job.id, "clip-1"])
    for session_id in (job.id, "clip-1"):
        lost = table.get(session_id)
        assert lost is not None and lost.state is S.FAILED and lost.error == INTERRUPTED

    [(session, spec)] = restored.resume
    assert session is table.get(SPEC.stream_id)
    assert session.state is S.STARTING and session.resumed == 1
    assert [state for state, _ in session.transitions] == [
        "starting",
        "ready",
        "processing",
        "starting",
    ]
    assert spec == dataclasses.replace(SPEC, params={"workflow": "{}", "prompt": "newer"})
    assert table.live_streams() == 1  # the resumed stream holds its slot again
    # It goes on through the usual states.
    session.transition(S.READY)
    session.transition(S.PROCESSING)
    assert session.status()["history"][-1]["status"] == "processing"


def test_unusable_records_are_dropped() -> None:
    table = SessionTable(4, 60)
    restored = restore_sessions(table, [{"id": "x"}, {"id": "y", "kind": "nope"}], now=0)
    assert len(table) == 0 and restored.resume == [] and restored.ended == 0


def test_the_recorder_writes_every_change_and_removal(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.open()
    table = SessionTable(4, retention_s=60)
    table.observers.append(SessionRecorder(store))
    live_stream(table)
    job = table.add_job("text-reversal")
    table.set_result(job, {"reversed": "cba"})
    job.transition(S.COMPLETED)
    deleted = table.add_job("text-reversal")
    table.remove(deleted.id)
    store.close()

    reopened = StateStore(tmp_path)
    docs = {d["id"]: d for d in reopened.open().sessions}
    reopened.close()
    assert set(docs) == {SPEC.stream_id, job.id}
    assert docs[job.id]["state"] == "completed"
    assert docs[job.id]["result"] == {"reversed": "cba"}
    assert docs[SPEC.stream_id]["state"] == "processing"
    assert docs[SPEC.stream_id]["stream"]["subscribe_url"] == SPEC.subscribe_url
