"""Shared fixtures: every test gets its own folder, config file, key file and database."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.outbox import MaildirOutbox
from service.runtime import Runtime, build_runtime
from suppression.config import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
MAILPREFS = str(Path(sys.executable).with_name("mailprefs"))
API_TOKEN_ENV = "MAILPREFS_API_TOKENS"
API_TOKEN = "test-api-token-0123456789"


class FakeClock:
    """An injected clock tests move by hand (no sleeping)."""

    def __init__(self, start: float = 1_795_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def write_config(folder: Path, extra: str = "", port: int = 8000) -> Path:
    path = folder / "mailprefs.toml"
    path.write_text(
        f"""
[service]
base_url = "http://127.0.0.1:{port}"
port = {port}
[storage]
database = "test.db"
[secrets]
key_file = "test.key"
{extra}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def settings(config_path: Path) -> Settings:
    return load_settings(config_path)


@pytest.fixture
async def runtime(settings: Settings, clock: FakeClock) -> AsyncIterator[Runtime]:
    rt = build_runtime(settings, clock=clock)
    await rt.open()
    try:
        yield rt
    finally:
        await rt.close()


def run_cli(*args: str, config: Path | None = None, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed `mailprefs` console script like a user would."""
    full_env = {k: v for k, v in os.environ.items() if k != "MAILPREFS_CONFIG"}
    full_env.update(env or {})
    command = [MAILPREFS, *(["--config", str(config)] if config else []), *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120, check=False
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """The real service (`mailprefs serve`) in its own process on a free port."""

    def __init__(self, config: Path, port: int) -> None:
        self.config = config
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = config.parent / f"server-{port}.log"

    def start(self, env: dict[str, str] | None = None) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [MAILPREFS, "--config", str(self.config), "serve", "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, API_TOKEN_ENV: API_TOKEN, **(env or {})},
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, config=self.config)

    def links(self, address: str, *args: str) -> dict[str, Any]:
        result = self.cli("links", address, *args, "--json")
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def customer(self, address: str, country: str = "BE") -> None:
        """Import ADDRESS as an own customer (a purchase this year)."""
        path = self.config.parent / "customer.csv"
        path.write_text(f"email;country;source;last_purchase_at\n{address};{country};customer;"
                        "2026-06-01\n", encoding="utf-8")
        result = self.cli("import", str(path))
        assert result.returncode == 0, result.stderr

    def ledger_length(self) -> int:
        with sqlite3.connect(self.config.parent / "test.db") as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])

    def outbox(self, expect: int = 0) -> list[EmailMessage]:
        """Mails sent so far; with ``expect``, wait (bounded) until that many arrived:
        mails go out after the response, as a mail client would see them later."""
        deadline = time.monotonic() + 10
        while True:
            mails = MaildirOutbox(self.config.parent / "outbox").messages()
            if len(mails) >= expect or time.monotonic() > deadline:
                return mails
            time.sleep(0.02)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    srv = Server(write_config(tmp_path, port=port), port)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
