"""How much of a message is read: bounds that keep classification linear."""

from __future__ import annotations

SHRINK_ABOVE = 1_000_000  # raw messages larger than this get long base64 runs cut
KEEP_B64_LINES = 2_000  # lines kept of each base64 run (~150 kB), enough for any text
MAX_PARSE_BYTES = 4_000_000  # what the MIME parser sees at most
MAX_PARTS = 500
MAX_DEPTH = 30
MAX_PART_CHARS = 2_000_000  # encoded characters read from one text part
MAX_HTML_CHARS = 1_000_000
HTML_CHUNK = 65_536
MAX_QUOTE_MARKS = 8
MAX_WORK_TEXT = 200_000  # text kept for quote splitting and matching
MAX_TEXT = 20_000
MAX_SUBJECT = 300
MAX_HEADER_CHARS = 10_000
MAX_HEADERS_READ = 50  # instances of one header name looked at
MAX_MESSAGE_ID = 255
MAX_TOKEN = 512
