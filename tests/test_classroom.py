"""The classroom test (benchmarks/classroom.py, issue 32 item 8): its small version against the app, its helpers.

The small class asserts what holds on any machine (no honest event lost, every event answered, the queue serves at
the end), not the timing bounds of the issue's done-when: ``python -m benchmarks load --classroom`` reports those."""

from __future__ import annotations

import json

import pytest

from benchmarks import classroom, harness
from benchmarks.classroom import Call, percentile, verdict


@pytest.fixture(scope="module")
def small_class() -> dict:
    return classroom.classroom_test(classroom.SMALL)


def test_a_small_class_is_served_while_a_script_floods_the_queue(small_class):
    r = small_class
    brief = json.dumps({k: r[k] for k in ("events", "live_runs", "flood", "harness_errors", "end_replay")})[:3000]
    assert r["harness_errors"] == [], brief
    assert r["honest_lost"] == 0, brief  # every honest event got its final message
    plan = classroom.SMALL
    counts = {k: r["events"][k]["count"] for k in ("page", "page_load", "replay", "play", "next_lesson", "live_run")}
    assert counts == {
        "page": plan.students,
        "page_load": plan.students,
        "replay": plan.students * plan.scrubs,
        "play": plan.students,
        "next_lesson": plan.students,
        "live_run": plan.live,
    }, brief
    assert r["events"]["stop"]["pressed"] == 1 and r["stop_delay_s"] is not None, brief
    slow = [x for x in r["live_runs"] if x["kind"] == "slow_reader"]
    assert slow and slow[0]["answered"] and slow[0]["downloads"]["ok"], brief  # a slow reader still gets its end
    assert r["downloads"]["ok"] == r["downloads"]["runs"] > 0, brief
    assert r["downloads_after_flood"]["ok"] == r["downloads_after_flood"]["runs"], brief
    assert r["queue_serves_at_end"] and r["server_alive_at_end"], brief
    assert r["flood"]["sent"] > 0 and r["long_thin"]["answer"] != "no answer", brief
    assert r["server_rss_mb"]["peak"] > 0 and r["machine"]["cores"] >= 1


def test_percentiles_are_nearest_rank():
    values = [float(x) for x in range(1, 21)]  # 1 .. 20
    assert percentile(values, 50) == 10.0
    assert percentile(values, 95) == 19.0
    assert percentile(values, 100) == 20.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([], 50) is None


def test_the_png_writer_and_reader_agree():
    data = classroom.png_bytes(300, 7)
    assert classroom.image_size(data[:64]) == (300, 7)
    assert classroom.image_size(b"GIF89a" + bytes(40)) is None


def test_sse_lines_are_read_from_their_head():
    line = 'data: {"msg":"process_generating","event_id":"ab12","output":{"data":["' + "x" * 5000 + '"]}}'
    assert harness.sse_kind(line) == ("process_generating", "ab12")
    assert harness.sse_kind('data: {"msg": "close_stream", "event_id": null}') == ("close_stream", None)


def test_file_urls_are_found_in_a_run_output():
    files = [
        {"path": "/t/a.png", "url": "http://h/gradio_api/file=/t/a.png", "meta": {"_type": "gradio.FileData"}},
        {"path": "/t/b.json", "url": "http://h/gradio_api/file=/t/b.json", "meta": {"_type": "gradio.FileData"}},
    ]
    update = {"__type__": "update", "value": files[0], "label": "Observation"}
    assert classroom.file_urls(files) == [f["url"] for f in files]
    assert classroom.file_urls(update) == [files[0]["url"]]
    assert classroom.file_urls([None, "text", 3]) == []


def served(**changes) -> dict:
    """A report in which every criterion held, with ``changes`` applied (keys with dots go one level down)."""
    r = classroom.summarise(
        [
            Call("replay", "s0", answered=True, ok=True, seconds=0.2),
            Call("replay", "s1", answered=True, ok=True, seconds=0.4),
            Call(
                "live_run",
                "s0",
                answered=True,
                ok=True,
                seconds=9.0,
                start_s=0.5,
                frames=[1.0, 1.5, 2.5],
                extra={
                    "stopper": True,
                    "stop_sent_s": 2.6,
                    "stop_delay_s": 0.3,
                    "downloads": {"ok": True, "codes": {"200": 4}},
                },
            ),
        ],
        classroom.SMALL,
    )
    r.update(
        long_thin={"size": [20000, 16], "answer": "refused", "message": "the image is too thin", "rss_delta_mb": 12.0},
        direct_run_replay={"status": 404},
        queue_serves_at_end=True,
        downloads_after_flood={"runs": 1, "ok": 1, "codes": {"200": 4}},
    )
    for key, value in changes.items():
        head, _, tail = key.partition(".")
        if tail:
            r[head] = {**r[head], tail: value}
        else:
            r[key] = value
    return r


def test_summarise_counts_answers_latencies_gaps_and_stop():
    r = served()
    assert r["events"]["replay"]["p50_s"] == 0.2 and r["events"]["replay"]["p95_s"] == 0.4
    assert r["events"]["live_start"]["p50_s"] == 0.5 and r["events"]["live_first_frame"]["p50_s"] == 1.0
    assert r["live_largest_frame_gap_s"] == 1.0
    assert r["stop_delay_s"] == 0.3 and r["events"]["stop"]["pressed"] == 1
    assert r["honest_events"] == 3 and r["honest_lost"] == 0
    lost = classroom.summarise([Call("play", "s2", message="no final message within 9 s")], classroom.SMALL)
    assert lost["honest_lost"] == 1 and lost["events"]["play"]["lost"] == 1


def test_the_verdict_names_each_failed_criterion():
    assert verdict(served()) == []
    assert verdict(served(**{"long_thin.answer": "within max_side"})) == []
    assert verdict(served(**{"direct_run_replay.status": 405})) == []
    cases = {
        "honest events lost": served(honest_lost=2),
        "replay scrubs": served(**{"events": {**served()["events"], "replay": {"p95_s": 1.5}}}),
        "Stop took": served(stop_delay_s=2.5),
        "Stop took None": served(stop_delay_s=None),
        "image: no answer": served(**{"long_thin.answer": "no answer"}),
        "MB more": served(**{"long_thin.rss_delta_mb": 1900.0}),
        "answered HTTP 200": served(**{"direct_run_replay.status": 200}),
        "no longer serves": served(queue_serves_at_end=False),
        "downloads not served": served(**{"downloads_after_flood.ok": 0}),
    }
    for words, report in cases.items():
        fails = verdict(report)
        assert len(fails) == 1 and words in fails[0], (words, fails)


def test_the_readme_tabulates_every_classroom_report(tmp_path):
    r = served()
    r.update(
        command="python -m benchmarks load --classroom --small",
        date="2026-12-07T00:00:00",
        note="other work ran on the machine",
        flood={"sent": 300, "codes": {"200": 300}, "duration_s": 4.0},
        downloads_after_flood={"runs": 1, "ok": 1, "codes": {"200": 4}},
        server_rss_mb={"class_start": 500.0, "peak": 700.0, "end": 600.0},
        wall_s=50.0,
        machine={"cpu": "AMD EPYC", "cores": 2},
        app={"commit": "abc", "changed_files": []},
        fails=verdict(r),
    )
    (tmp_path / "classroom_small.json").write_text(json.dumps(r))
    text = classroom.readme(tmp_path)
    assert "| `classroom_small` |" in text and "| Stop's delay (s) | 0.3 |" in text
    assert "other work ran on the machine" in text and "Every criterion held." in text
