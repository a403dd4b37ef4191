"""A real Dovecot IMAP server for tests: the ``dovecot`` fixture.

Each test gets its own Dovecot (Debian's ``dovecot-imapd``), started from a config
written here, listening on 127.0.0.1 on two free ports: ``imap_port`` (plain IMAP with
STARTTLS) and ``imaps_port`` (implicit TLS).  Its certificate is signed by a throwaway
CA made with ``cryptography``; ``ca_file`` is that CA.  One user logs in with a
plaintext password (passwd-file); mail is a Maildir under the run folder.

Use it from a test module with ``from tests.dovecot import dovecot_fixture  # noqa: F401``
(the fixture is named ``dovecot``).

Where things live: the config, certificates, passwd file, log, sockets (``base_dir``),
state (``state_dir``) and the mail home are all in one private folder made with
``tempfile.mkdtemp`` rather than in ``tmp_path``, for two reasons:

* Unix socket paths are limited to 107 bytes; ``tmp_path`` + ``login/imap-urlauth``
  can exceed that, which Dovecot reports only in its log.
* Run as root, Dovecot refuses mail access as uid 0, so the mail user is ``nobody``;
  its auth process runs as ``dovecot``.  Both must reach the files, and pytest's base
  folder (``/tmp/pytest-of-root``) is mode 0700.  The private folder is mode 0755 and
  the mail home is owned by the mail user.

Run as another user, everything runs as that user (``default_internal_user`` and
``default_login_user`` are set to it, nothing chroots).  At teardown the log is copied
to ``tmp_path/dovecot.log`` and the private folder is removed.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import grp
import imaplib
import ipaddress
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DOVECOT = Path("/usr/sbin/dovecot")
MISSING = "install Debian's dovecot-imapd (./dev test does it when run as root)"
START_TIMEOUT_S = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def imap_utf7(name: str) -> str:
    """RFC 3501 modified UTF-7, written here independently of service.imap_fetch."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def quoted(name: str) -> str:
    encoded = imap_utf7(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 / localhost; returns (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailprefs test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


class _HelperIMAP(imaplib.IMAP4_SSL):
    """The fixture's own connections come from 127.0.0.2: Dovecot delays logins from an
    address that just failed one (anvil's auth penalty, 2-15 s), and tests that check a
    wrong password would otherwise wait for it when they look at the mailbox."""

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=("127.0.0.2", 0))
        context: ssl.SSLContext = self.ssl_context
        try:
            return context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


@dataclass
class Dovecot:
    """A running Dovecot; ``deliver`` and ``messages`` log in over IMAPS as the test user."""

    host: str
    imap_port: int
    imaps_port: int
    user: str
    password: str
    ca_file: Path
    home: Path
    """The test user's home; its mail is in ``home / "Maildir"``."""
    log_file: Path
    passwd_file: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def add_user(self, user: str, password: str) -> None:
        """Another login (Dovecot rereads the passwd file when it changes)."""
        assert ":" not in user + password and "\n" not in user + password
        with self.passwd_file.open("a", encoding="utf-8") as f:
            f.write(f"{user}:{{PLAIN}}{password}::::::\n")

    def connect(self) -> imaplib.IMAP4_SSL:
        """Log in over IMAPS as the test user, from 127.0.0.2 (see ``_HelperIMAP``)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        conn = _HelperIMAP(self.host, self.imaps_port, ssl_context=context, timeout=30)
        try:
            typ, _ = conn.login(self.user, self.password)
            assert typ == "OK"
        except BaseException:
            conn.shutdown()
            raise
        return conn

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        """Put one message into ``folder`` (created if missing) with IMAP APPEND."""
        conn = self.connect()
        try:
            name = quoted(folder)
            if folder.upper() != "INBOX":
                _, listed = conn.list('""', name)
                if listed == [None]:
                    typ, created = conn.create(name)
                    assert typ == "OK", created
            typ, appended = conn.append(name, None, None, raw)
            assert typ == "OK", appended
        finally:
            conn.logout()

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        """The raw messages in ``folder``, oldest first; [] if it does not exist."""
        conn = self.connect()
        try:
            typ, data = conn.select(quoted(folder), readonly=True)
            if typ != "OK":
                return []
            typ, data = conn.uid("SEARCH", "ALL")
            line = data[0]
            assert typ == "OK" and isinstance(line, bytes), data
            found: list[bytes] = []
            for uid in sorted(int(u) for u in line.split()):
                fetched: list[Any]
                typ, fetched = conn.uid("FETCH", str(uid), "(BODY.PEEK[])")
                assert typ == "OK", fetched
                found.extend(part[1] for part in fetched if isinstance(part, tuple))
            return found
        finally:
            conn.logout()

    def folders(self) -> list[str]:
        """Every folder name as the server lists it (modified UTF-7, unquoted)."""
        conn = self.connect()
        try:
            typ, data = conn.list()
            assert typ == "OK", data
            names = []
            for line in data:
                assert isinstance(line, bytes)
                match = re.fullmatch(r'\([^)]*\) (?:"[^"]*"|NIL) (.*)', line.decode("ascii"))
                assert match, line
                name = match[1]
                names.append(name[1:-1] if name.startswith('"') else name)
            return names
        finally:
            conn.logout()

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""


def _accounts() -> tuple[str, str, str, int, int]:
    """(internal user, internal group, login user, mail uid, mail gid) for this process."""
    if os.getuid() != 0:
        me = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        return me, group, me, os.getuid(), os.getgid()
    # As root: Dovecot's own accounts (made by the package) for its internal and login
    # processes; mail as "nobody" because Dovecot never accesses mail as uid 0.
    nobody = pwd.getpwnam("nobody")
    return "dovecot", "dovecot", "dovenull", nobody.pw_uid, nobody.pw_gid


def _config(run: Path, imap_port: int, imaps_port: int, cert: Path, key: Path,
            passwd: Path) -> str:
    internal_user, internal_group, login_user, uid, gid = _accounts()
    rootless = os.getuid() != 0
    no_chroot = "  chroot =\n" if rootless else ""
    return f"""\
# Written by tests/dovecot.py for one test; nothing here outside {run}.
base_dir = {run}/base
state_dir = {run}/state
instance_name = mailprefs-test-{imap_port}
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes
log_path = {run}/dovecot.log
info_log_path = {run}/dovecot.log
debug_log_path = {run}/dovecot.log
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={run}/home/%u
}}
mail_location = maildir:~/Maildir

service imap-login {{
{no_chroot}  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
{no_chroot}}}
service ipc {{
{no_chroot}}}
service old-stats {{
{no_chroot}}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


def _answers(port: int, greeting: bool) -> bool:
    """The port accepts a connection (and, if ``greeting``, says ``* OK``)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return not greeting or s.recv(64).startswith(b"* OK")
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Kill the master and its children: they all share its process group (it was
    started in a new session).  A throwaway server needs no graceful shutdown."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def start_dovecot(run: Path) -> Dovecot:
    """Configure and start Dovecot in ``run`` (an existing, empty folder)."""
    if not DOVECOT.exists():
        pytest.fail(MISSING, pytrace=False)
    _, _, _, uid, gid = _accounts()
    run.chmod(0o755)
    ca_file, cert, key = _write_certificates(run)
    user, password = "privacy@mailprefs.test", "s3cret pass \"phrase\""
    passwd = run / "passwd"
    passwd.write_text(f"{user}:{{PLAIN}}{password}::::::\n")
    passwd.chmod(0o644)  # read by the auth process (user "dovecot" when run as root)
    home = run / "home" / user
    home.mkdir(parents=True)
    for folder in (run / "home", home):
        os.chown(folder, uid, gid)
    imap_port, imaps_port = _free_port(), _free_port()
    while imaps_port == imap_port:
        imaps_port = _free_port()
    config = run / "dovecot.conf"
    config.write_text(_config(run, imap_port, imaps_port, cert, key, passwd))
    log_file = run / "dovecot.log"
    output_file = run / "dovecot.out"
    with output_file.open("wb") as output:
        process = subprocess.Popen(
            [str(DOVECOT), "-F", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (_answers(imap_port, True) and _answers(imaps_port, False)):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            printed = output_file.read_text(errors="replace")
            log = log_file.read_text(errors="replace") if log_file.exists() else ""
            pytest.fail(f"dovecot did not start on 127.0.0.1:{imap_port}/{imaps_port} within "
                        f"{START_TIMEOUT_S:.0f} s (exit {process.returncode}):\n"
                        f"{printed}\n{log}", pytrace=False)
        time.sleep(0.05)
    return Dovecot("127.0.0.1", imap_port, imaps_port, user, password, ca_file, home, log_file,
                   passwd, process)


def stop_dovecot(server: Dovecot) -> None:
    _stop(server.process)


@pytest.fixture(name="dovecot")
def dovecot_fixture(tmp_path: Path) -> Iterator[Dovecot]:
    """A fresh Dovecot with an empty mailbox; see the module docstring."""
    if not DOVECOT.exists():
        pytest.fail(MISSING, pytrace=False)
    run = Path(tempfile.mkdtemp(prefix="mailprefs-dovecot-"))
    try:
        server = start_dovecot(run)
        try:
            yield server
        finally:
            stop_dovecot(server)
    finally:
        if (run / "dovecot.log").exists():
            shutil.copyfile(run / "dovecot.log", tmp_path / "dovecot.log")
        shutil.rmtree(run, ignore_errors=True)
