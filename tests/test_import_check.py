"""mailprefs import and mailprefs check, through the real CLI on real files."""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
from pathlib import Path

from tests.conftest import run_cli
from tests.test_cli import ledger_length


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def rows_of(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        sample = f.readline()
        f.seek(0)
        return list(csv.reader(f, delimiter=";" if ";" in sample else ","))


def check(config: Path, audience: Path, topic: str, out: Path) -> dict[str, object]:
    result = run_cli("check", str(audience), "--topic", topic, "--out", str(out), "--json",
                     config=config)
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_import_reports_invalid_duplicate_and_imports_the_rest(config_path: Path,
                                                               tmp_path: Path) -> None:
    data = write(tmp_path / "list.csv",
                 "\ufeffE-mail;Naam;Land;Type\n"
                 "jan@example.be;Jan;BE;person\n"
                 "not-an-address;X;BE;person\n"
                 "JAN@example.be;Jan again;BE;person\n"
                 "ann@example.fr;Ann;FRA;person\n"
                 "bob@example.com;Bob;US;robot\n"
                 "ragged@example.com;only two\n"
                 "=HYPERLINK(\"http://evil\")@example.com;Eve;BE;person\n"
                 "kim@example.nl;Kim;NL;b2b_named\n")
    result = run_cli("import", str(data), "--json", config=config_path)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["rows"] == 8
    assert counts["created"] == 2
    assert counts["duplicates"] == 1
    assert counts["rejected"] == 5
    rejects = rows_of(tmp_path / "list.csv.rejects.csv")
    reasons = {row[0]: row[1] for row in rejects[1:]}
    assert reasons["3"].startswith("address:")
    assert reasons["4"] == "duplicate of line 2"
    assert reasons["5"].startswith("country: 'FRA'")
    assert reasons["6"].startswith("kind: 'robot'")
    assert "has 2 fields, the header has 4" in reasons["7"]
    formula = next(row for row in rejects if row[0] == "8")
    assert formula[2].startswith("'=HYPERLINK")  # neutralised for spreadsheets
    assert ledger_length(config_path) == 1  # one ContactsAdded batch for the two
    with sqlite3.connect(config_path.parent / "test.db") as conn:
        assert sorted(r[0] for r in conn.execute("SELECT address FROM contacts")) == [
            "jan@example.be", "kim@example.nl"]


def test_import_never_resubscribes_after_an_unsubscribe(config_path: Path,
                                                        tmp_path: Path) -> None:
    run_cli("suppression", "add", "gone@example.com", "--reason", "unsubscribe",
            config=config_path)
    data = write(tmp_path / "again.csv", "email,country,consent_at,consent_text,source\n"
                 "gone@example.com,US,2026-01-01,v3,form\n")
    result = run_cli("import", str(data), "--json", config=config_path)
    assert json.loads(result.stdout)["blocked_by_suppression"] == 1
    status = run_cli("status", "gone@example.com", "--topic", "newsletter", "--json",
                     config=config_path)
    assert json.loads(status.stdout)["reasons"] == ["suppressed:global:unsubscribe"]
    out = check(config_path, data, "newsletter", tmp_path / "out")
    assert out["by_reason"] == {"suppressed:global:unsubscribe": 1}


def test_rerun_resumes_and_dry_run_writes_nothing(config_path: Path, tmp_path: Path) -> None:
    data = write(tmp_path / "c.csv", "email;country\n" + "".join(
        f"user{i}@example.com;BE\n" for i in range(50)))
    dry = json.loads(run_cli("import", str(data), "--dry-run", "--json",
                             config=config_path).stdout)
    assert dry["created"] == 50 and dry["dry_run"] is True
    assert ledger_length(config_path) == 0
    first = json.loads(run_cli("import", str(data), "--json", config=config_path).stdout)
    again = json.loads(run_cli("import", str(data), "--json", config=config_path).stdout)
    assert (first["created"], again["created"], again["unchanged"]) == (50, 0, 50)
    assert ledger_length(config_path) == 1  # one ContactsAdded batch; the re-run adds none


def test_hashed_lists_block_matching_addresses_in_check(config_path: Path,
                                                        tmp_path: Path) -> None:
    md5 = write(tmp_path / "partner.md5", "email_md5\n"
                + hashlib.md5(b"alice@example.com").hexdigest() + "\nnot-a-hash\n")
    sha = write(tmp_path / "esp.sha256",
                hashlib.sha256(b"bob@example.com").hexdigest().upper() + "\n")
    imported = json.loads(run_cli("import", str(md5), "--format", "md5", "--json",
                                  config=config_path).stdout)
    assert (imported["created"], imported["rejected"]) == (1, 1)
    run_cli("import", str(sha), "--format", "sha256", config=config_path)
    audience = write(tmp_path / "aud.csv", "email,country\nAlice@Example.com,US\n"
                     "bob@example.com,US\ncarol@example.com,US\n")
    out = check(config_path, audience, "newsletter", tmp_path / "out")
    assert out["sendable"] == 1
    assert out["by_reason"] == {"suppressed:global:partner_list": 2}
    # an import of a hashed-out address is blocked too
    contacts = write(tmp_path / "c.csv", "email\nalice@example.com\n")
    result = json.loads(run_cli("import", str(contacts), "--json", config=config_path).stdout)
    assert result["blocked_by_suppression"] == 1


def test_check_writes_links_reasons_and_counts_duplicates_once(config_path: Path,
                                                               tmp_path: Path) -> None:
    audience = write(tmp_path / "aud.csv", "email;country;first name\n"
                     "us1@example.com;US;=1+1\n"
                     "US1@example.com;US;dup\n"
                     "nl@example.nl;NL;Piet\n"
                     "bad@@example.com;US;x\n")
    out = check(config_path, audience, "events", tmp_path / "out")
    assert out == {"total": 4, "sendable": 1, "excluded": 3, "by_reason": {
        "duplicate": 1, "invalid_address": 1, "no_consent:NL:b2c_opt_in": 1}}
    sendable = rows_of(tmp_path / "out" / "sendable.csv")
    assert sendable[0] == ["email", "country", "first name", "unsubscribe_url",
                           "preferences_url", "list_unsubscribe", "list_unsubscribe_post"]
    assert sendable[1][2] == "'=1+1"
    assert sendable[1][3].startswith("http://127.0.0.1:8000/u/")
    assert sendable[1][5] == f"<{sendable[1][3]}>"
    assert sendable[1][6] == "List-Unsubscribe=One-Click"
    excluded = rows_of(tmp_path / "out" / "excluded.csv")
    assert [r[-1] for r in excluded[1:]] == ["duplicate", "no_consent:NL:b2c_opt_in",
                                              "invalid_address"]


def test_check_and_status_agree(config_path: Path, tmp_path: Path) -> None:
    data = write(tmp_path / "c.csv", "email,country,source,last_purchase_at\n"
                 "cust@example.be,BE,customer,2026-05-01\nbought@example.be,BE,purchased,\n")
    run_cli("import", str(data), config=config_path)
    out = check(config_path, data, "newsletter", tmp_path / "out")
    for address in ("cust@example.be", "bought@example.be"):
        status = json.loads(run_cli("status", address, "--topic", "newsletter", "--json",
                                    config=config_path).stdout)
        excluded = rows_of(tmp_path / "out" / "excluded.csv")
        listed = [r[-1] for r in excluded[1:] if r[0] == address]
        assert (listed == []) == status["sendable"], (address, status, listed)
    assert out["sendable"] == 1


def test_bad_files_are_one_clear_error(config_path: Path, tmp_path: Path) -> None:
    latin = write(tmp_path / "latin.csv", "email;naam\njosé@example.com;José\n", "latin-1")
    result = run_cli("import", str(latin), config=config_path)
    assert result.returncode == 1 and "line 2: not UTF-8" in result.stderr
    no_address = write(tmp_path / "x.csv", "name;country\nJan;BE\n")
    result = run_cli("import", str(no_address), config=config_path)
    assert result.returncode == 1 and "no address column" in result.stderr
    assert "'name', 'country'" in result.stderr
    mapped = run_cli("import", str(no_address), "--map", "name=address", config=config_path)
    assert mapped.returncode == 0  # (every row rejected: 'Jan' is not an address)
    huge = write(tmp_path / "huge.csv", "email;note\na@example.com;" + "x" * 10_000_000
                 + "\nb@example.com;ok\n")
    result = run_cli("import", str(huge), "--json", config=config_path)
    assert result.returncode == 0
    assert json.loads(result.stdout)["rejected"] == 1
    assert "Traceback" not in result.stderr
    empty = write(tmp_path / "empty.csv", "")
    assert "empty" in run_cli("check", str(empty), "--topic", "events", "--out",
                              str(tmp_path / "o"), config=config_path).stderr


async def test_an_import_writes_small_batches_while_others_write(runtime) -> None:  # type: ignore[no-untyped-def]
    """Alone, an import hands the writer 1,000 rows at a time; while other writes come
    in (a one-click, say), 250, so that they wait behind little bulk work. Every row is
    imported either way."""
    import io

    from service.import_job import import_contacts
    from suppression.suppression_list import Actor

    sizes: list[int] = []
    real_write = runtime.store.write

    async def watching(fn, *, bulk=False):  # type: ignore[no-untyped-def]
        if bulk:
            result = await real_write(fn, bulk=True)
            sizes.append(len(result))  # one outcome per row
            return result
        return await real_write(fn)

    runtime.store.write = watching  # type: ignore[method-assign]

    def members(prefix: str) -> io.BytesIO:
        rows = "".join(f"{prefix}{i}@example.com;US\n" for i in range(2500))
        return io.BytesIO(("email;country\n" + rows).encode())

    counts = await import_contacts(runtime, members("alone"), name="a.csv",
                                   default_source="customer")
    assert counts.created == 2500 and sizes == [1000, 1000, 500]

    sizes.clear()
    await runtime.suppressions.suppress("someone@example.org", topic=None,
                                        reason="unsubscribe", by=Actor("cli", "cli"))
    counts = await import_contacts(runtime, members("busy"), name="b.csv",
                                   default_source="customer")
    assert counts.created == 2500 and sizes == [250] * 10


async def test_a_check_creates_its_new_contacts_in_small_writes_while_others_write(
    runtime,  # type: ignore[no-untyped-def]
) -> None:
    import io

    from service.check_job import check_audience
    from suppression.suppression_list import Actor

    sizes: list[int] = []
    real_write = runtime.store.write

    async def watching(fn, *, bulk=False):  # type: ignore[no-untyped-def]
        result = await real_write(fn, bulk=bulk)
        if bulk:
            sizes.append(len(result))  # one contact id per new contact
        return result

    runtime.store.write = watching  # type: ignore[method-assign]
    await runtime.suppressions.suppress("someone@example.org", topic=None,
                                        reason="unsubscribe", by=Actor("cli", "cli"))
    audience = "email;country\n" + "".join(f"n{i}@example.com;US\n" for i in range(600))
    sendable, excluded = io.StringIO(), io.StringIO()
    summary = await check_audience(runtime, io.BytesIO(audience.encode()), topic_id="events",
                                   sendable_out=sendable, excluded_out=excluded)
    assert summary.sendable == 600 and sizes == [250, 250, 100]
    assert sendable.getvalue().count("/u/") >= 600  # every row has its links
