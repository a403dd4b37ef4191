"""HTML bodies as text lines (blockquotes become "> " quotes)."""

from __future__ import annotations

from html.parser import HTMLParser

from suppression.replies.limits import HTML_CHUNK, MAX_HTML_CHARS, MAX_QUOTE_MARKS, MAX_WORK_TEXT

_SKIP_TAGS = frozenset(
    {"script", "style", "head", "title", "noscript", "template", "object", "iframe", "svg"}
)
_BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "br",
        "tr",
        "li",
        "ul",
        "ol",
        "table",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "pre",
        "section",
        "article",
        "header",
        "footer",
        "blockquote",
        "dd",
        "dt",
        "center",
    }
)
_VOID_TAGS = frozenset({"br", "hr", "img", "meta", "link", "input", "wbr", "col", "area", "base"})


class _HTMLText(HTMLParser):
    """Text of an HTML body: no scripts/styles, blocks on their own lines, blockquote -> '>'."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.line_depth = 0
        self.quote_depth = 0
        self.skip_depth = 0
        self.pre_depth = 0
        self.size = 0

    def _flush(self) -> None:
        line = (
            " ".join("".join(self.current).split()) if not self.pre_depth else "".join(self.current)
        )
        if line.strip():
            self.lines.append("> " * min(self.line_depth, MAX_QUOTE_MARKS) + line)
        elif self.lines and self.lines[-1] != "":
            self.lines.append("")
        self.current = []
        self.line_depth = self.quote_depth

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            if tag not in _VOID_TAGS:
                self.skip_depth += 1
            return
        if tag in _BLOCK_TAGS:
            self._flush()
        if tag == "blockquote":
            self.quote_depth += 1
            self.line_depth = self.quote_depth
        elif tag == "pre":
            self.pre_depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if tag in _BLOCK_TAGS:
            self._flush()
        if tag == "blockquote":
            self.quote_depth = max(0, self.quote_depth - 1)
            self.line_depth = self.quote_depth
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self.skip_depth or self.size > MAX_WORK_TEXT:
            return
        if self.pre_depth:
            for i, piece in enumerate(data.split("\n")):
                if i:
                    self._flush()
                self.current.append(piece)
        else:
            if not "".join(self.current).strip():
                self.line_depth = self.quote_depth
            self.current.append(data)
        self.size += len(data)

    def text(self) -> str:
        self._flush()
        return "\n".join(self.lines).strip()


def html_to_text(html: str) -> str:
    parser = _HTMLText()
    try:
        for start in range(0, min(len(html), MAX_HTML_CHARS), HTML_CHUNK):
            parser.feed(html[start : start + HTML_CHUNK])
            if parser.size > MAX_WORK_TEXT:
                break
        parser.close()
    except Exception:  # HTMLParser is lenient; keep whatever was read before a failure
        return parser.text()
    return parser.text()
