"""What an anonymous client can make a worker spend on one GraphQL document: CPU per request through the
whole view (Django's test client), each document made unique by a comment so the document cache misses,
side by side with what validating it in one pass (our limits and the standard rules together, as
before issue 11) costs.

    .venv/bin/python bench/validation.py [SECONDS_PER_DOCUMENT]

No database or cache is touched (the documents select `me`, which an anonymous client is refused
field by field); the settings are the embedded default's, limits included.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("READ_DOT_ENV", "0")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.test import Client  # noqa: E402
from graphql import parse, specified_rules, validate  # noqa: E402
from graphql.language import Lexer, Source, TokenKind  # noqa: E402

from schema.schema import schema  # noqa: E402

USER_FIELDS = "id nickname city country province language gender avatarUrl phoneNumber openid unionid dateJoined"
FIELDS = USER_FIELDS.split()

DOCUMENTS: dict[str, str] = {
    # Accepted: as far as the limits let a document go.
    "accepted: 10 copies of me, each 12 fields": "{" + (" me { " + USER_FIELDS + " }") * 10 + " }",
    "accepted: 2 copies of me, each 12 fields 10 times": "{" + (" me { " + " ".join(FIELDS * 10) + " }") * 2 + " }",
    "accepted: 30 aliases of me, 9 fields each": "{"
    + " ".join(f" a{i}: me {{ {' '.join(FIELDS[:9])} }}" for i in range(30))
    + " }",
    # Refused by our limits, before the standard rules.
    "refused: 240 copies of me { id } (repeats)": "{" + " me { id }" * 240 + " }",
    "refused: 31 aliases": "{" + " ".join(f" a{i}: me {{ id }}" for i in range(31)) + " }",
    "refused: over the token limit": "{" + " me { id }" * (settings.GRAPHQL_MAX_TOKENS // 4 + 1) + " }",
    # Issue 11's report: 490 copies cost a worker 1-1.25 s when validation ran in one pass.
    "refused: 490 copies of me { id }": "{" + " me { id }" * 490 + " }",
}


def tokens(query: str) -> int:
    lexer, count = Lexer(Source(query)), 0
    while lexer.advance().kind != TokenKind.EOF:
        count += 1
    return count


def cpu_ms(run: Callable[[int], object], seconds: float) -> float:
    """CPU milliseconds per call, over at least `seconds` of CPU."""
    for n in range(3):
        run(-n - 1)  # warm
    started, calls = time.process_time(), 0
    while time.process_time() - started < seconds:
        run(calls)
        calls += 1
    return (time.process_time() - started) / calls * 1000


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    client = Client()
    graphql_schema = schema.graphql_schema
    print(
        f"limits: depth {settings.GRAPHQL_MAX_DEPTH}, fields {settings.GRAPHQL_MAX_FIELDS}, aliases "
        f"{settings.GRAPHQL_MAX_ALIASES}, repeats {settings.GRAPHQL_MAX_REPEATS}, tokens {settings.GRAPHQL_MAX_TOKENS}"
    )
    print(f"{'document':52} {'tokens':>6}  {'answer':44} {'ms/request':>10} {'one-pass validation ms':>23}")
    for name, query in DOCUMENTS.items():

        def request(n: int, query: str = query) -> dict[str, object]:
            body = json.dumps({"query": f"# {time.time_ns()} {n}\n{query}"})  # a new document every time
            answer: dict[str, object] = client.post("/graphql/", body, content_type="application/json").json()
            return answer

        answer = request(0)
        errors = answer.get("errors") or []
        assert isinstance(errors, list)
        refused = [e["message"] for e in errors if "path" not in e]
        verdict = refused[0][:44] if refused else f"executed ({len(errors)} field errors)"
        if len(refused) and refused[0].startswith("Syntax Error: Document contains more than"):
            verdict = "refused at parse: over the token limit"
        per_request = cpu_ms(request, seconds)
        document = parse(query, max_tokens=10 * len(query))
        one_pass = cpu_ms(lambda n, d=document: validate(graphql_schema, d, specified_rules), min(seconds, 0.5))
        print(f"{name:52} {tokens(query):>6}  {verdict:44} {per_request:>10.2f} {one_pass:>23.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
