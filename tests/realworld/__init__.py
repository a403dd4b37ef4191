"""The real-world corpus (other projects' published bounces, complaints and auto-replies)
and how our classifier is scored on it; see corpora.toml, manifest.toml and fetch.py."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from suppression.replies import Classification, classify

from .fetch import Sample

UNSUBSCRIBE_ADDRESS = "unsubscribe@itcare.example"
TRUSTED_AUTHSERV_IDS = ("mx.itcare.example",)
ACTING_KINDS = ("bounce", "complaint")


@dataclass(frozen=True)
class Got:
    """What the classifier made of one message (or the exception it raised)."""

    kind: str
    automatic: bool
    addresses: tuple[str, ...]
    permanent: dict[str, bool | None]  # per failed recipient: hard / soft / unknown
    crash: str = ""

    @property
    def suppresses(self) -> frozenset[str]:
        """Addresses an automatic action would suppress for good (hard bounce, complaint)."""
        if not self.automatic or self.kind not in ACTING_KINDS:
            return frozenset()
        if self.kind == "complaint":
            return frozenset(self.addresses)
        return frozenset(a for a, hard in self.permanent.items() if hard)

    def key(self) -> tuple[object, ...]:
        return (self.kind, tuple(sorted(self.addresses)),
                tuple(sorted(self.permanent.items(), key=lambda kv: kv[0])))


def got_of(c: Classification) -> Got:
    addresses = tuple(sorted({a.lower() for a in c.addresses}))
    permanent: dict[str, bool | None]
    if c.failures:
        permanent = {f.address.lower(): f.permanent for f in c.failures}
        addresses = tuple(sorted(set(addresses) | set(permanent)))
    elif c.kind == "bounce":
        permanent = dict.fromkeys(addresses, c.bounce_permanent)
    else:
        permanent = {}
    return Got(kind=c.kind, automatic=c.automatic, addresses=addresses, permanent=permanent)


def run(raw: bytes) -> Got:
    try:
        c = classify(raw, unsubscribe_address=UNSUBSCRIBE_ADDRESS,
                     trusted_authserv_ids=TRUSTED_AUTHSERV_IDS)
    except Exception as exc:  # classify promises never to raise: a crash is a finding
        return Got(kind="crash", automatic=False, addresses=(), permanent={},
                   crash=f"{type(exc).__name__}: {exc}")
    return got_of(c)


def line_endings(raw: bytes) -> dict[str, bytes]:
    lf = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return {"LF": lf, "CRLF": lf.replace(b"\n", b"\r\n"), "CR": lf.replace(b"\n", b"\r")}


# --- per-message verdicts ---------------------------------------------------------------

_NO_ACTION_KINDS = ("auto_reply", "other")


def class_ok(s: Sample, g: Got) -> bool:
    """Bounces and complaints must be recognised as such. For auto-replies and ordinary
    mail what matters is that nothing is done and nothing is taken for a failure: an
    auto-reply read by a human ("other", queued) or a bulk mail with list headers ignored
    as automatic ("auto_reply") are both right."""
    if s.expected in _NO_ACTION_KINDS:
        return g.kind in _NO_ACTION_KINDS and not g.suppresses
    return g.kind == s.expected


def recipients_exact(s: Sample, g: Got) -> bool | None:
    """None where the source names no recipient or the class has none."""
    if s.expected not in ACTING_KINDS or not s.recipients_known:
        return None
    return set(g.addresses) == set(s.recipients)


def hard_soft_ok(s: Sample, g: Got) -> bool | None:
    if s.expected != "bounce" or s.permanent is None or not s.recipients:
        return None
    return all(g.permanent.get(a) is s.permanent for a in s.recipients)


def wrong_actions(s: Sample, g: Got) -> frozenset[str]:
    """Addresses suppressed for good that the source does not name as failed recipients
    (only judged where the source names them)."""
    if not s.recipients_known:
        return frozenset()
    return frozenset(a for a in g.suppresses if a not in s.recipients)


# --- the table ----------------------------------------------------------------------------

def _ratio(good: int, total: int) -> str:
    return f"{good}/{total} {100 * good / total:5.1f}%" if total else "-"


def family_table(rows: Iterable[tuple[Sample, Got]]) -> str:
    """family | n | recall | recipient exactness | hard/soft | automatic-action precision."""
    by: dict[str, list[tuple[Sample, Got]]] = defaultdict(list)
    everything = list(rows)
    for s, g in everything:
        by[s.family].append((s, g))
    lines = [f"{'family':<14} {'n':>4}  {'recall':>13}  {'recipients':>13}  {'hard/soft':>13}  "
             f"{'act precision':>13}"]

    def line(name: str, items: list[tuple[Sample, Got]]) -> str:
        recall = sum(class_ok(s, g) for s, g in items)
        exact = [r for s, g in items if (r := recipients_exact(s, g)) is not None]
        hs = [r for s, g in items if (r := hard_soft_ok(s, g)) is not None]
        judged = [(s, g) for s, g in items if s.recipients_known]
        acted = sum(len(g.suppresses) for _, g in judged)
        wrong = sum(len(wrong_actions(s, g)) for s, g in judged)
        return (f"{name:<14} {len(items):>4}  {_ratio(recall, len(items)):>13}  "
                f"{_ratio(sum(exact), len(exact)):>13}  {_ratio(sum(hs), len(hs)):>13}  "
                f"{_ratio(acted - wrong, acted):>13}")

    for name in sorted(by, key=lambda f: (-len(by[f]), f)):
        lines.append(line(name, by[name]))
    lines.append(line("ALL", everything))
    return "\n".join(lines)


def describe(s: Sample, g: Got) -> str:
    perm = "hard" if s.permanent else "soft" if s.permanent is False else "?"
    got_perm = ",".join(f"{a}={'hard' if p else 'soft' if p is False else '?'}"
                        for a, p in sorted(g.permanent.items()))
    return (f"{s.id} [{s.family}]: expected {s.expected} {list(s.recipients)} {perm}; "
            f"got {g.kind}{' auto' if g.automatic else ''} {list(g.addresses)} {got_perm}"
            f"{' CRASH ' + g.crash if g.crash else ''}")
