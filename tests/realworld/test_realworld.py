"""Our classifier and `mailprefs inbox ingest` on other projects' real bounces, complaints
and auto-replies (corpora.toml, manifest.toml): one test per target figure of the issue.
On failure each prints the per-family table and the failing messages, expected vs got."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from suppression.replies import classify
from tests.conftest import run_cli, write_config

from . import (
    ACTING_KINDS,
    TRUSTED_AUTHSERV_IDS,
    UNSUBSCRIBE_ADDRESS,
    Got,
    class_ok,
    describe,
    family_table,
    line_endings,
    run,
    wrong_actions,
)
from .fetch import Sample

TARGET = 0.95
MAILBOX = f"""
[mailbox]
address = "privacy@itcare.example"
unsubscribe_address = "{UNSUBSCRIBE_ADDRESS}"
trusted_authserv_ids = {json.dumps(list(TRUSTED_AUTHSERV_IDS))}
"""


@pytest.fixture(scope="module")
def verdicts(corpus: list[Sample]) -> dict[str, Got]:
    return {s.id: run(s.raw()) for s in corpus}


def report(corpus: list[Sample], verdicts: dict[str, Got], failing: list[str], what: str
           ) -> str:
    table = family_table((s, verdicts[s.id]) for s in corpus)
    shown = "\n".join(f"  {line}" for line in failing[:80])
    more = f"\n  ... and {len(failing) - 80} more" if len(failing) > 80 else ""
    return f"{what}\n\n{table}\n\nfailing ({len(failing)}):\n{shown}{more}"


def _ratio(good: int, total: int) -> float:
    return good / total if total else 1.0


# --- the corpus itself --------------------------------------------------------------------

def test_the_corpus_is_pinned_and_complete(corpus: list[Sample]) -> None:
    classes = Counter(s.expected for s in corpus)
    assert len(corpus) >= 150, classes
    assert classes["bounce"] >= 100 and classes["complaint"] >= 1, classes
    assert classes["auto_reply"] >= 1 and classes["other"] >= 1, classes
    assert {s.package for s in corpus} >= {"flufl.bounce", "bounced"}
    for s in corpus:
        assert s.source_expectation, s.id
        assert s.verdict_from in ("source", "source-filename", "message-dsn", "message",
                                  "none"), s.id
        assert (s.permanent is None) == (s.verdict_from == "none") or s.expected != "bounce", s.id
        assert s.raw(), s.id


# --- the classifier -----------------------------------------------------------------------

def test_no_message_crashes_the_classifier(corpus: list[Sample], verdicts: dict[str, Got]
                                           ) -> None:
    failing = [describe(s, verdicts[s.id]) for s in corpus if verdicts[s.id].crash]
    assert not failing, report(corpus, verdicts, failing, "classify() raised")


def test_no_real_bounce_or_complaint_is_taken_for_an_auto_reply_or_ignored(
    corpus: list[Sample], verdicts: dict[str, Got]
) -> None:
    failing = [describe(s, verdicts[s.id]) for s in corpus
               if s.expected in ACTING_KINDS and verdicts[s.id].kind == "auto_reply"]
    assert not failing, report(corpus, verdicts, failing,
                               "bounces/complaints classified auto_reply")


def test_the_classifier_acts_on_no_wrong_address(corpus: list[Sample],
                                                 verdicts: dict[str, Got]) -> None:
    failing = [f"{describe(s, verdicts[s.id])} -> wrongly suppressed "
               f"{sorted(wrong_actions(s, verdicts[s.id]))}"
               for s in corpus if wrong_actions(s, verdicts[s.id])]
    failing += [describe(s, verdicts[s.id]) for s in corpus
                if s.expected in ("auto_reply", "other") and verdicts[s.id].suppresses]
    assert not failing, report(corpus, verdicts, failing,
                               "automatic suppressions of addresses that are not failed "
                               "recipients")


def test_auto_replies_and_ordinary_mail_are_not_bounces(corpus: list[Sample],
                                                        verdicts: dict[str, Got]) -> None:
    failing = [describe(s, verdicts[s.id]) for s in corpus
               if s.expected in ("auto_reply", "other") and not class_ok(s, verdicts[s.id])]
    assert not failing, report(corpus, verdicts, failing,
                               "auto-replies / ordinary mail misclassified")


def test_lf_crlf_and_cr_line_endings_classify_alike(corpus: list[Sample]) -> None:
    failing = []
    for s in corpus:
        got = {name: run(raw) for name, raw in line_endings(s.raw()).items()}
        keys = {name: g.key() for name, g in got.items()}
        if len(set(keys.values())) > 1:
            failing.append(f"{s.id}: " + "; ".join(
                f"{name}: {g.kind} {list(g.addresses)} "
                f"{sorted(g.permanent.items())}{' CRASH ' + g.crash if g.crash else ''}"
                for name, g in got.items()))
    assert not failing, "\n".join(["line endings change the verdict:", *failing])


# --- the real CLI on a real database -----------------------------------------------------

@dataclass
class Ingest:
    report: dict[str, object]
    suppressed: dict[str, set[tuple[str, str]]]  # address -> {(scope, reason)}
    states: dict[str, str]  # sample id -> inbox state
    queue: list[dict[str, object]]
    config: Path


@pytest.fixture(scope="module")
def ingest(corpus: list[Sample], tmp_path_factory: pytest.TempPathFactory) -> Ingest:
    folder = tmp_path_factory.mktemp("realworld")
    config = write_config(folder, MAILBOX)
    maildir = folder / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    message_ids: dict[str, str] = {}
    for index, s in enumerate(corpus):
        raw = s.raw()
        (maildir / "new" / f"{index:04d}.{s.id.replace('/', '_')}").write_bytes(raw)
        c = classify(raw, unsubscribe_address=UNSUBSCRIBE_ADDRESS,
                     trusted_authserv_ids=TRUSTED_AUTHSERV_IDS)
        message_ids.setdefault(c.message_id, s.id)  # a later duplicate is stored once
    done = run_cli("inbox", "ingest", str(maildir), "--json", config=config)
    assert done.returncode == 0, done.stderr
    exported = run_cli("suppression", "export", "--format", "csv", config=config)
    assert exported.returncode == 0, exported.stderr
    suppressed: dict[str, set[tuple[str, str]]] = {}
    for row in csv.DictReader(io.StringIO(exported.stdout)):
        suppressed.setdefault(row["address"].lower(), set()).add((row["scope"], row["reason"]))
    with sqlite3.connect(folder / "test.db") as conn:
        rows = conn.execute("SELECT message_id, state FROM inbox").fetchall()
    states = {message_ids[m]: state for m, state in rows if m in message_ids}
    queued = run_cli("inbox", "queue", "--json", config=config)
    assert queued.returncode == 0, queued.stderr
    return Ingest(json.loads(done.stdout), suppressed, states, json.loads(queued.stdout),
                  config)


def _suppressed_for_good(ingest: Ingest, address: str) -> bool:
    return any(scope == "global" for scope, _ in ingest.suppressed.get(address, ()))


def test_ingest_reads_every_message_without_a_crash(corpus: list[Sample], ingest: Ingest
                                                    ) -> None:
    assert ingest.report["read"] == len(corpus)
    stored = int(ingest.report["stored"])  # type: ignore[call-overload]
    assert stored + int(ingest.report["duplicates"]) == len(corpus)  # type: ignore[call-overload]
    assert stored == len(ingest.states)
    waiting = sum(1 for state in ingest.states.values() if state == "queued")
    assert len(ingest.queue) == waiting


def test_hard_bounce_recipients_are_suppressed(corpus: list[Sample], verdicts: dict[str, Got],
                                               ingest: Ingest) -> None:
    hard = {(s.id, a) for s in corpus if s.expected == "bounce" and s.permanent
            for a in s.recipients}
    missed = sorted((i, a) for i, a in hard if not _suppressed_for_good(ingest, a))
    by_id = {s.id: s for s in corpus}
    figure = _ratio(len(hard) - len(missed), len(hard))
    assert figure >= TARGET, report(
        corpus, verdicts,
        [f"{describe(by_id[i], verdicts[i])} -> {a} not suppressed (inbox state "
         f"{ingest.states.get(i, 'duplicate')})" for i, a in missed],
        f"hard-bounce recipients suppressed: {figure:.1%} of {len(hard)} (target {TARGET:.0%})")


def test_complaint_recipients_are_suppressed(corpus: list[Sample], verdicts: dict[str, Got],
                                             ingest: Ingest) -> None:
    complaints = [s for s in corpus if s.expected == "complaint"]
    assert complaints
    wanted = {(s.id, a) for s in complaints for a in s.recipients}
    missed = sorted((i, a) for i, a in wanted if not _suppressed_for_good(ingest, a))
    by_id = {s.id: s for s in corpus}
    figure = _ratio(len(wanted) - len(missed), len(wanted))
    failing = [f"{describe(by_id[i], verdicts[i])} -> {a} not suppressed" for i, a in missed]
    # A complaint whose recipient the reporter redacted acts on no one, but it must still
    # be recognised as a complaint (and not ignored): else the figure above is vacuous.
    ignored = [f"{describe(s, verdicts[s.id])} -> inbox state {ingest.states.get(s.id)}"
               for s in complaints if ingest.states.get(s.id) == "ignored"
               or verdicts[s.id].kind != "complaint"]
    assert figure >= TARGET and not ignored, report(
        corpus, verdicts, failing + ignored,
        f"complaint recipients suppressed: {figure:.1%} of {len(wanted)} (target {TARGET:.0%})")


def test_no_soft_failure_is_suppressed_for_good(corpus: list[Sample], verdicts: dict[str, Got],
                                                ingest: Ingest) -> None:
    # An address that another message fails hard (or without saying) is left out.
    hard = {a for s in corpus if s.expected == "bounce" and s.permanent is not False
            for a in s.recipients}
    soft = [(s, a) for s in corpus if s.expected == "bounce" and s.permanent is False
            for a in s.recipients if a not in hard]
    assert soft
    failing = [f"{describe(s, verdicts[s.id])} -> {a} suppressed "
               f"{sorted(ingest.suppressed[a])}" for s, a in soft
               if _suppressed_for_good(ingest, a)]
    assert not failing, report(corpus, verdicts, failing,
                               "soft failures permanently suppressed on first sight")


def test_ingest_suppresses_no_wrong_address(corpus: list[Sample], verdicts: dict[str, Got],
                                            ingest: Ingest) -> None:
    named = {a for s in corpus if s.expected in ACTING_KINDS and s.recipients_known
             for a in s.recipients}
    # Messages whose source names no recipient cannot show an address to be wrong; what
    # they suppressed is listed, not counted.
    unjudged = {a for s in corpus if not s.recipients_known for a in verdicts[s.id].addresses}
    wrong = sorted(a for a in ingest.suppressed if a not in named and a not in unjudged)
    culprits = [describe(s, verdicts[s.id]) for s in corpus
                if set(verdicts[s.id].addresses) & set(wrong)]
    assert not wrong, report(corpus, verdicts, culprits,
                             f"suppressed addresses that are no failed or complaining "
                             f"recipient: {wrong}")


def test_no_real_bounce_or_complaint_is_ignored_by_ingest(corpus: list[Sample],
                                                          verdicts: dict[str, Got],
                                                          ingest: Ingest) -> None:
    failing = [f"{describe(s, verdicts[s.id])} -> inbox state ignored" for s in corpus
               if s.expected in ACTING_KINDS and ingest.states.get(s.id) == "ignored"]
    assert not failing, report(corpus, verdicts, failing,
                               "bounces/complaints ignored by inbox ingest")


def test_suppression_show_agrees_with_the_list(corpus: list[Sample], ingest: Ingest) -> None:
    """`mailprefs suppression show` for one recipient of each family (a sample: the whole
    list comes from `suppression export`)."""
    picked: dict[str, str] = {}
    for s in corpus:
        if s.expected in ACTING_KINDS and s.recipients and s.family not in picked:
            picked[s.family] = s.recipients[0]
    for family, address in sorted(picked.items())[:12]:
        shown = run_cli("suppression", "show", address, "--json", config=ingest.config)
        assert shown.returncode == 0, shown.stderr
        got = {(i["scope"], i["reason"]) for i in json.loads(shown.stdout)}
        assert got == ingest.suppressed.get(address, set()), (family, address)
