"""The digest renders as aligned text and as Block Kit within Slack's limits, with data escaped."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import Any

from agents.digest import Digest, StepCount, WorkflowDigest
from bot.digest import digest_message, digest_text, sparkline
from bot.slack.mrkdwn import escape_mrkdwn as escape

END = datetime(2026, 3, 10, 9, 0, tzinfo=timezone.utc)


def workflow(name: str, **values: Any) -> WorkflowDigest:
    base: dict[str, Any] = {
        "started": 12, "succeeded": 9, "failed": 2, "rejected": 1, "waiting": 1, "success_rate": 0.75,
        "success_rate_previous": 0.7, "success_rate_change": 0.05, "top_failed_steps": [StepCount("draft", 2)],
        "attempts": 30, "retries": 4, "retry_exhaustions": 1, "approved": 6, "edited": 2, "checkpoint_rejected": 1,
        "edit_rate": 0.032, "median_decision_s": 750.0, "cost_usd": 1.23, "cost_per_success_usd": 0.1367,
        "duration_p50_s": 80.0, "duration_p95_s": 362.0,
        "daily_success_rate": [None, 0.0, 0.2, 0.5, 0.9, 1.0, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 0.6, 0.75],
    }
    base.update(values)
    return WorkflowDigest(workflow=name, **base)


def payload(flows: list[WorkflowDigest], **extra: Any) -> dict[str, Any]:
    digest = Digest(END - timedelta(days=1), END, 1, flows, workflow("all workflows"))
    return {**digest.to_payload(), **extra}


def all_texts(blocks: list[dict[str, Any]]) -> list[str]:
    texts = []
    for b in blocks:
        if "text" in b:
            texts.append(b["text"]["text"])
        texts.extend(f["text"] for f in b.get("fields", []))
        texts.extend(e["text"] for e in b.get("elements", []))
    return texts


def assert_within_slack_limits(blocks: list[dict[str, Any]]) -> None:
    assert len(blocks) <= 50
    for b in blocks:
        if b["type"] == "header":
            assert len(b["text"]["text"]) <= 150 and b["text"]["type"] == "plain_text"
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= 3000
            assert len(b.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in b.get("fields", []))
        if b["type"] == "context":
            assert 1 <= len(b["elements"]) <= 10


def test_the_sparkline_maps_rates_onto_eight_levels_with_gaps_for_no_data() -> None:
    assert sparkline([0.0, 0.125, 0.5, 0.99, 1.0, None]) == "▁▂▅██·"


def test_the_text_digest_is_aligned_and_carries_every_figure() -> None:
    text = digest_text(payload([workflow("pricing-watch"), workflow("triage")]))
    lines = text.splitlines()
    assert lines[0] == "Overseer digest · last 24 h to 2026-03-10 09:00 UTC"
    assert "pricing-watch" in lines and "triage" in lines and "All workflows" in lines
    rows = [line for line in lines if line.startswith("  ")]
    assert len(rows) == 3 * 8
    assert all(r[13] == " " and r[14] != " " for r in rows)  # every value starts in the same column
    assert "12 started · 9 succeeded · 2 failed · 1 rejected · 0 expired · 1 waiting" in text
    assert "75%  (▲ 5 pts vs the 7 days before)" in text
    assert "·▁▂▅██▇▇▇███▅▇" in text
    assert "draft ×2 · 4 retries · 1 retries ran out" in text
    assert "edit rate 3.2% · median wait 12m 30s" in text
    assert "$1.23 total · $0.1367 per successful run" in text
    assert "p50 1m 20s · p95 6m 02s" in text


def test_an_empty_window_says_so() -> None:
    assert "No workflow ran" in digest_text(payload([]))
    text, blocks = digest_message(payload([]))
    assert "nothing ran" in text and blocks[0]["type"] == "header"


def test_blocks_have_a_header_a_section_per_workflow_and_a_sparkline_context() -> None:
    text, blocks = digest_message(payload([workflow("pricing-watch"), workflow("triage")], channel="C0DIGEST"))
    assert [b["type"] for b in blocks] == ["header", "context", "section", "context", "section", "context"]
    assert blocks[2]["text"]["text"] == "*pricing-watch*"
    assert len(blocks[2]["fields"]) == 8
    assert "`·▁▂▅██▇▇▇███▅▇`" in blocks[3]["elements"][0]["text"]
    assert text.startswith("Overseer digest (last 24 h to 2026-03-10 09:00 UTC): 12 runs started")
    assert_within_slack_limits(blocks)


def test_names_from_data_are_escaped_before_they_reach_mrkdwn() -> None:
    evil = "<!channel> & <@U0BOSS>"
    flows = [workflow(evil, top_failed_steps=[StepCount("<https://evil.example|click>", 3)])]
    text, blocks = digest_message(payload(flows))
    joined = "\n".join(all_texts(blocks)) + text
    assert "<!channel>" not in joined and "<@U0BOSS>" not in joined and "<https://" not in joined
    assert "&lt;!channel&gt; &amp; &lt;@U0BOSS&gt;" in blocks[2]["text"]["text"]
    assert "&lt;https://evil.example|click&gt; ×3" in "\n".join(all_texts(blocks))
    assert escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"


def test_more_workflows_than_fit_are_summarised_in_one_last_block() -> None:
    flows = [workflow(f"flow-{i:03d}", started=i) for i in range(120)]
    _, blocks = digest_message(payload(flows))
    assert_within_slack_limits(blocks)
    assert len(blocks) == 2 + 23 * 2 + 1
    shown = [b["text"]["text"] for b in blocks if b["type"] == "section" and "fields" in b]
    assert len(shown) == 23 and "*flow-119*" in shown and "*flow-000*" not in shown  # the busiest are shown
    rest = blocks[-1]["text"]["text"]
    assert rest.startswith("*97 more workflows*") and len(rest) <= 3000


def test_very_long_names_are_clipped_to_the_limits() -> None:
    long = "x" * 5000
    flows = [workflow(long, top_failed_steps=[StepCount("&" * 3000, 1)])]
    _, blocks = digest_message(payload(flows))
    assert_within_slack_limits(blocks)
    failed_most = next(f["text"] for f in blocks[2]["fields"] if f["text"].startswith("*Failed most*"))
    assert failed_most.endswith("…") and failed_most[:-1].endswith("&amp;")  # never half an entity


def test_a_payload_from_the_outbox_renders_as_stored() -> None:
    stored = payload([workflow("a")])
    assert stored["workflows"][0] == asdict(workflow("a"))
    assert digest_text(stored) == digest_text(dict(stored))


def test_how_far_the_agents_get_alone_renders_aligned_and_within_limits() -> None:
    from agents.digest import ApproverWait, ReasonCount

    alone = workflow(
        "pricing-watch", mttr_run_s=3600.0, mttr_retry_s=5400.0, cost_per_approved_usd=0.15, untouched_share_14d=0.2,
        top_reject_reasons=[ReasonCount("too long", 2), ReasonCount("<!channel> " + "x" * 4000, 1)],
        median_decision_by_approver=[ApproverWait("U0ALICE", 40.0, 5), ApproverWait("U0BOB", 185.0, 4)],
    )
    text = digest_text(payload([alone]))
    rows = [line for line in text.splitlines() if line.startswith("  ")]
    assert len(rows) == 8 + 3 and all(r[13] == " " and r[14] != " " for r in rows)
    assert "recovery 1h 00m to the next good run · 1h 30m by retry · $0.1500 per approved output · 20% approved untouched" in text
    assert "too long ×2" in text and "U0ALICE 40s (5) · U0BOB 3m 05s (4)" in text
    _, blocks = digest_message(payload([alone]))
    assert_within_slack_limits(blocks)
    context = [e["text"] for e in blocks[3]["elements"]]
    assert len(context) == 4 and context[1].startswith("*Alone*: recovery 1h 00m")
    assert "<!channel>" not in "\n".join(context) and context[2].endswith("…")
