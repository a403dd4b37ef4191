"""The baseline for bench/one_click.py: a bare Litestar app served like `mailprefs serve`.

Same server, same uvicorn options as service/cli.py (one worker, loopback, access log
off, same log level); the POST reads a small form body like a one-click unsubscribe.

    .venv/bin/python bench/bare_app.py --port 8001
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from litestar import Litestar, MediaType, Request, get, post


@get("/hello", media_type=MediaType.TEXT)
async def hello_get() -> str:
    return "ok"


@post("/hello/{token:str}", media_type=MediaType.TEXT, status_code=200)
async def hello_post(token: str, request: Request[Any, Any, Any]) -> str:
    form = await request.form()
    return "ok" if form.get("List-Unsubscribe") == "One-Click" and token else "no"


app = Litestar(route_handlers=[hello_get, hello_post])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The same options as `mailprefs serve` (service/cli.py).
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="info")


if __name__ == "__main__":
    main()
