"""Schemathesis over the real server's OpenAPI document: every operation, odd input.

The server is the real ``mailprefs serve`` in its own process, with every kind of
mailing tool configured for webhooks, the 78 corpus mails in the review queue, and a
stored bearer token per role. Schemathesis reads ``/schema/openapi.json`` and, for every
operation in it, sends explicit examples, boundary and negative cases (coverage phase)
and generated ones (fuzzing phase), deterministically (fixed seed, derandomised, at most
``MAX_EXAMPLES`` generated cases per operation). Every answer must:

* never be a 5xx;
* have a documented status code, content type, headers and a body that validates;
* accept schema-valid input (anything but 400: 422 is the documented "understood but
  refused", e.g. an address that cannot be mailed or a topic that is not configured);
* reject schema-invalid input and calls without a valid token (401), and answer
  undeclared methods with 405.

Each operation is called with the least-privileged role that may call it (marketing
operations with the environment token), and each positive case is sent again with a
role that may not: that is refused with a documented 403, whatever the body.
"""

from __future__ import annotations

import base64
import re
import sys
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.conftest import API_TOKEN, REPO, Server, free_port, run_cli, write_config

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 50
SEED = 20_261_125
MAIL = REPO / "tests" / "fixtures" / "mail"

# SendGrid's key is a verification (public) key and Mailgun's an HMAC key: their calls
# are signed, which the fuzzer cannot do, so every one of those must get 401. The other
# tools carry the secret in the URL (?key=), which the fuzzer is given half of the time.
HOOK_SECRETS = {
    "sg": base64.b64encode(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode(),
    "mg": "mailgun-signing-key-fuzz",
    "mc": "mailchimp-url-secret-fuzz",
    "bv": "brevo-url-secret-fuzz",
    "ses": "ses-url-secret-fuzz",
    "pm": "postmark-url-secret-fuzz",
}
CONNECTORS: dict[str, tuple[str, str]] = {
    "sg": ("sendgrid", ""),
    "mg": ("mailgun", 'domain = "mg.example.net"'),
    "mc": ("mailchimp", 'list_id = "aud-main"'),
    "bv": ("brevo", 'list_id = "99"'),
    "ses": ("ses", 'contact_list = "customers"\nregion = "eu-west-1"'),
    "pm": ("postmark", 'message_stream = "broadcast"'),
}
NO_KEY = "nokey"  # configured without a webhook key: every call is refused
HOOK_NAMES = [*HOOK_SECRETS, NO_KEY, "unknown"]


def connectors_toml() -> str:
    tables = [
        f'[[connectors]]\nname = "{name}"\nkind = "{kind}"\nbase_url = "http://127.0.0.1:9"\n'
        f'api_key_env = "FUZZ_{name.upper()}_KEY"\nwebhook_key_env = "FUZZ_{name.upper()}_HOOK"\n'
        f'topic_map = {{ events = "events" }}\n{extra}\n'
        for name, (kind, extra) in CONNECTORS.items()
    ]
    tables.append(f'[[connectors]]\nname = "{NO_KEY}"\nkind = "postmark"\n'
                  'api_key_env = "FUZZ_PM_KEY"\nmessage_stream = "broadcast"\n')
    return "\n".join(tables)


# Uploads (imports, checks) get CSV-shaped bodies: real column names and values mixed
# with odd ones (quotes, line breaks, NUL, long fields, other delimiters, a BOM, bytes
# that are not UTF-8), so the CSV readers are fuzzed rather than only their first line.
COLUMNS = ["email", "address", "e-mail", "country", "kind", "source", "language", "name",
           "company", "last_purchase_at", "last_enquiry_at", "consent_at", "consent_text",
           "", "email", "Email Address", "x"]
VALUES = ["jane@example.com", "JAN@Example.BE", "piet@example.nl", "not an address",
          "a@b", "user@xn--bcher-kva.example", "BE", "NL", "US", "ZZ", "person", "b2b_named",
          "customer", "partner", "purchased", "en", "nl", "fr", "2026-06-01", "2020-02-30",
          "yesterday", '"', '""', "a;b", "a,b", "line\nbreak", "\x00", "=cmd|' /C calc'!A0",
          "x" * 5000, ""]


@st.composite
def csv_bodies(draw: st.DrawFn) -> bytes:
    delimiter = draw(st.sampled_from([";", ",", "\t", "|"]))
    cell = st.one_of(st.sampled_from(VALUES), st.text(max_size=20))
    header = draw(st.lists(st.one_of(st.sampled_from(COLUMNS), st.text(max_size=12)),
                           min_size=1, max_size=6))
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=len(header) + 2), max_size=8))
    text = "\r\n".join(delimiter.join(line) for line in [header, *rows])
    prefix = draw(st.sampled_from(["", "\ufeff"]))
    encoded = (prefix + text).encode("utf-8", "surrogatepass")
    return draw(st.one_of(st.just(encoded), st.binary(max_size=64).map(lambda b: encoded + b)))


schemathesis.openapi.media_type("text/csv", csv_bodies())


@dataclass
class Target:
    server: Server
    tokens: dict[str, str]  # role -> bearer token
    token_ids: set[int]  # the ids of those tokens: the fuzzer must not revoke them
    calls: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    def count(self, label: str, status: int) -> None:
        self.calls[label] += 1
        self.statuses.setdefault(label, Counter())[status] += 1

    def summary(self) -> str:
        """Requests per operation and status (pytest -s shows it)."""
        probes = {label for label in self.calls if label.startswith("undeclared ")}
        operations = {label for label in self.calls if " as " not in label} - probes
        lines = [f"schemathesis: {len(operations)} operations, {sum(self.calls.values())} "
                 f"requests ({sum(self.calls[p] for p in probes)} with undeclared methods)"]
        for label in sorted(set(self.calls) - probes):
            statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses[label].items()))
            lines.append(f"  {label}: {self.calls[label]} ({statuses})")
        return "\n".join(lines)


def create_token(server: Server, role: str) -> tuple[int, str]:
    result = server.cli("tokens", "create", "--role", role, "--name", f"fuzz-{role}")
    assert result.returncode == 0, result.stderr
    found = re.search(r"#(\d+)", result.stderr)
    assert found, result.stderr
    return int(found.group(1)), result.stdout.strip()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    # The sign-up limit per IP (10 a minute) would answer nearly every generated
    # /subscribe with 429 (tests/e2e test the limit); here the handler gets the input.
    limits = "[limits]\nsubscribe_per_minute = 100000\n"
    server = Server(write_config(folder, limits + connectors_toml(), port=port), port)
    tokens: dict[str, str] = {}
    ids: set[int] = set()
    for role in ("admin", "privacy", "marketing"):
        token_id, tokens[role] = create_token(server, role)
        ids.add(token_id)
    # The schema's example address is a contact (so export, rectify and forget also
    # answer with data), and real mail is in the review queue (queue items, decisions).
    server.customer("jane@example.com")
    ingest = run_cli("inbox", "ingest", *(str(p) for p in sorted(MAIL.glob("*.eml"))),
                     config=server.config)
    assert ingest.returncode == 0, ingest.stderr
    server.start(env={f"FUZZ_{name.upper()}_HOOK": secret
                      for name, secret in HOOK_SECRETS.items()})
    found = Target(server, tokens, ids)
    try:
        yield found
    finally:
        server.stop()
        print(found.summary(), file=sys.stderr)


def role_for(path: str) -> str:
    """The least-privileged role that may call PATH."""
    if path.startswith("/api/v1/staff/tokens"):
        return "admin"
    if path.startswith("/api/v1/staff/"):
        return "privacy"
    return "marketing"


REFUSED_ROLE = {"admin": "privacy", "privacy": "marketing", "marketing": "privacy"}


def _pick(value: Any, choices: list[str]) -> str:
    """A choice driven by the generated value: deterministic, so a failure replays."""
    return choices[zlib.crc32(repr(value).encode()) % len(choices)]


@pytest.fixture(scope="module")
def api_schema(target: Target) -> Any:
    config = schemathesis.Config.from_dict({
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True,
                       "database": "none", "mode": "all"},
        "checks": {
            # 422 is the documented refusal of well-formed input the rules do not accept
            # (a topic that is not configured, an address that cannot be mailed); a 400
            # for input the schema calls valid means the schema is wrong.
            "positive_data_acceptance": {"expected-statuses": [
                "2xx", "401", "403", "404", "409", "422", "429"]},
            # Paths that also serve an HTML page (GET /subscribe) rightly list GET in
            # Allow although only the JSON operation is in the schema;
            # test_options_lists_every_documented_method checks Allow instead.
            "allow_header_conformance": {"enabled": False},
        },
        "operations": [{
            # GET /subscribe is the sign-up page (HTML, deliberately not in the schema),
            # so GET is not an "undeclared method" there.
            "include-path": "/subscribe",
            "checks": {"unsupported_method": {"enabled": False}},
        }, {
            # Bodies whose format JSON Schema cannot state: a CSV file (which columns, which
            # encoding), or the webhook format of the tool the path names. A body the
            # schema allows can still be no contact list or no such tool's event: 400.
            # And the sign-up form, which answers every refused input (an address that
            # cannot be mailed, a topic that does not exist) like the page does: 400.
            "include-path": ["/api/v1/imports", "/api/v1/checks", "/hooks/{connector}",
                             "/subscribe"],
            "checks": {"positive_data_acceptance": {"expected-statuses": [
                "2xx", "400", "401", "403", "404", "409", "422", "429"]}},
        }],
    })
    schema = schemathesis.openapi.from_url(f"{target.server.url}/schema/openapi.json",
                                           config=config)

    @schema.auth(refresh_interval=None, retry_on=[])
    class RoleTokens:
        """The least-privileged role that may call the operation (schemathesis leaves it
        off the cases that test a missing or broken Authorization header)."""

        def get(self, case: schemathesis.Case, context: Any) -> str:
            role = role_for(case.operation.path)
            return API_TOKEN if role == "marketing" else target.tokens[role]

        def set(self, case: schemathesis.Case, data: str, context: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    @schema.hook
    def map_case(context: Any, case: schemathesis.Case) -> schemathesis.Case:
        if case.operation.path == "/hooks/{connector}":
            # Mostly configured connectors, so their parsers get the odd bodies; half of
            # the calls carry the connector's right URL secret.
            connector = _pick(case.path_parameters, HOOK_NAMES)
            case.path_parameters = {"connector": connector}
            if case.method == "POST" and _pick(case.query, ["right", "wrong"]) == "right":
                case.query = {**(case.query or {}), "key": HOOK_SECRETS.get(connector, "x")}
        return case

    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _schemathesis_node_id(request: pytest.FixtureRequest) -> None:
    """Schemathesis' lazy schemas read ``node._nodeid``, which pytest 9.2 no longer has
    (it keeps ``nodeid``): give it the attribute it reads, for its per-operation labels."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@schema.parametrize()
def test_every_operation_survives_odd_input_and_answers_as_documented(
    case: schemathesis.Case, target: Target
) -> None:
    path = case.operation.path
    if path.endswith("/revoke") and str(case.path_parameters.get("token_id")) in {
            str(i) for i in target.token_ids}:
        # Not the tokens this test calls with (every phase, explicit examples included).
        case.path_parameters = {"token_id": 1000 + int(case.path_parameters["token_id"])}
    role = role_for(path)
    label = f"{case.method} {path}"
    response = case.call_and_validate(timeout=60)
    documented = case.method.upper() == case.operation.method.upper()
    target.count(label if documented else f"undeclared {label}", response.status_code)

    if case.operation.definition.raw.get("security") and \
            case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE:
        # The same request with a role that may not do this: refused, as documented.
        wrong = REFUSED_ROLE[role]
        refused = case.call(headers={"Authorization": f"Bearer {target.tokens[wrong]}"},
                            timeout=60)
        case.validate_response(refused)
        assert refused.status_code == 403, (
            f"{label} with a {wrong} token answered {refused.status_code}: "
            f"{refused.text[:300]}\n{case.as_curl_command()}")
        target.count(f"{label} as {wrong}", refused.status_code)


def _documented(target: Target) -> dict[str, set[str]]:
    paths = httpx.get(f"{target.server.url}/schema/openapi.json").json()["paths"]
    methods = {"get", "head", "post", "put", "patch", "delete", "options"}
    return {path: {m.upper() for m in item if m in methods} for path, item in paths.items()}


def test_schema_documents_every_api_route(target: Target) -> None:
    """Every /api/v1 route, the webhooks, /healthz and /metrics are in the schema the
    fuzzer runs over (so nothing escapes it), and no recipient or console page is."""
    documented = _documented(target)
    expected = {
        "/api/v1/links": {"POST"}, "/api/v1/status": {"POST"}, "/api/v1/imports": {"POST"},
        "/api/v1/checks": {"POST"}, "/api/v1/staff/queue": {"GET"},
        "/api/v1/staff/queue/{item_id}": {"GET"},
        "/api/v1/staff/queue/{item_id}/decision": {"POST"},
        "/api/v1/staff/export": {"POST"}, "/api/v1/staff/rectify": {"POST"},
        "/api/v1/staff/forget": {"POST"}, "/api/v1/staff/tokens": {"POST"},
        "/api/v1/staff/tokens/{token_id}/revoke": {"POST"},
        "/api/v1/sync/status": {"GET"}, "/hooks/{connector}": {"GET", "POST"},
        "/healthz": {"GET"}, "/metrics": {"GET"},
    }
    missing = {path: sorted(methods - documented.get(path, set()))
               for path, methods in expected.items() if methods - documented.get(path, set())}
    assert not missing
    assert not [p for p in documented if p.startswith(("/u/", "/p/", "/m/", "/staff"))]


def test_options_lists_every_documented_method(target: Target) -> None:
    """OPTIONS on every path of the schema answers an Allow header naming every method
    the schema documents there (found by schemathesis' allow-header check: a path served
    by two handlers listed only the first one's methods)."""
    wrong: dict[str, str] = {}
    for path, methods in _documented(target).items():
        url = target.server.url + path.replace("{connector}", "pm").replace(
            "{item_id}", "1").replace("{token_id}", "1")
        answer = httpx.options(url)
        allowed = {m.strip() for m in answer.headers.get("allow", "").split(",") if m.strip()}
        if answer.status_code >= 400 or not methods <= allowed:
            wrong[path] = f"{answer.status_code} Allow: {answer.headers.get('allow')}"
    assert not wrong, wrong
