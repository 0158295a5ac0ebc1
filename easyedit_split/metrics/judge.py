"""Optional LLM judge in AxBench's style, through any OpenAI-compatible chat-completions endpoint.

Each generation gets three ratings, each 0, 1 or 2 — how clearly the response shows the **concept**,
how well it follows the **instruction**, and how **fluent** it is — and their harmonic mean (0 when
any rating is 0), as in AxBench. One request per rating; the reply must end with ``Rating: [[N]]``.

Off by default: nothing here runs unless called. The endpoint is a base URL (``…/v1``; the client
posts to ``{base_url}/chat/completions``) and the API key is read from the environment variable
*named* in the config (never passed on a command line). Only the standard library (``urllib``).

Robustness: each request has a timeout; timeouts, connection errors, HTTP 429 and 5xx are retried
with exponential backoff; anything else (4xx, a reply that is not JSON, has no message, or no rating)
raises :class:`JudgeError` naming the problem. Results are appended to a JSONL file one line per item
as they come (one ``write`` + flush + fsync each), and a rerun skips the ids already in the file, so a
failure never loses earlier results.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from easyedit_split.base.progress import progress as progress_bar
from easyedit_split.errors import EasyEditSplitError, InputError

logger = logging.getLogger(__name__)

__all__ = [
    "ChatClient",
    "JudgeConfig",
    "JudgeError",
    "JudgeItem",
    "append_jsonl",
    "harmonic_mean",
    "judge_item",
    "judge_to_jsonl",
    "parse_rating",
    "read_judgements",
]

ASPECTS = ("concept", "instruction", "fluency")

_PROMPTS = {
    "concept": (
        "You rate how clearly a piece of text expresses a given concept.\n"
        "Concept: {concept}\n\nText:\n{response}\n\n"
        "Score 0 if the concept is absent, 1 if it is present only weakly or indirectly, 2 if it is clearly "
        "and prominently expressed. Explain briefly, then end with exactly 'Rating: [[N]]' where N is 0, 1 or 2."
    ),
    "instruction": (
        "You rate how well a response addresses an instruction, ignoring style and any unrelated topic.\n"
        "Instruction: {instruction}\n\nResponse:\n{response}\n\n"
        "Score 0 if it ignores the instruction, 1 if it addresses it partly, 2 if it addresses it fully. "
        "Explain briefly, then end with exactly 'Rating: [[N]]' where N is 0, 1 or 2."
    ),
    "fluency": (
        "You rate the fluency of a text: grammar, coherence and natural flow, not its content.\n"
        "Text:\n{response}\n\n"
        "Score 0 if it is incoherent or repetitive, 1 if it is understandable but flawed, 2 if it is fluent. "
        "Explain briefly, then end with exactly 'Rating: [[N]]' where N is 0, 1 or 2."
    ),
}

_RATING = re.compile(r"Rating:\s*\[\[\s*([0-9]+(?:\.[0-9]+)?)\s*\]\]", re.IGNORECASE)


class JudgeError(EasyEditSplitError, RuntimeError):
    """The judge endpoint failed or replied with something that is not a rating."""


@dataclass
class JudgeConfig:
    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout: float = 60.0
    max_retries: int = 3
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    temperature: float = 0.0
    max_tokens: int = 256


@dataclass
class JudgeItem:
    id: str
    instruction: str
    concept: str
    response: str


class ChatClient:
    """Minimal OpenAI-compatible chat-completions client (stdlib only)."""

    def __init__(self, config: JudgeConfig) -> None:
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self._key = None
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise JudgeError(
                    f"environment variable {config.api_key_env!r} (the judge's API key) is not set; export it, or "
                    "set api_key_env=None for an endpoint without authentication"
                )
            self._key = key

    def _post(self, payload: dict[str, Any]) -> bytes:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(self.url, data=json.dumps(payload).encode("utf-8"), headers=headers)
        with urllib.request.urlopen(req, timeout=self.config.timeout) as resp:
            return resp.read()

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The assistant message's content; retries transient failures, raises :class:`JudgeError`."""
        cfg = self.config
        payload = {
            "model": cfg.model,
            "messages": messages,
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens,
        }
        attempts = cfg.max_retries + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(cfg.backoff * 2 ** (attempt - 1))
            try:
                body = self._post(payload)
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace") if exc.fp else ""
                if exc.code == 429 or exc.code >= 500:
                    last = f"HTTP {exc.code} from {self.url}: {detail}"
                    logger.warning("judge attempt %d/%d: %s", attempt + 1, attempts, last)
                    continue
                raise JudgeError(f"HTTP {exc.code} from {self.url}: {detail}") from None
            except TimeoutError as exc:
                last = f"request to {self.url} timed out after {cfg.timeout:g} s ({exc})"
                logger.warning("judge attempt %d/%d: %s", attempt + 1, attempts, last)
                continue
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                    last = f"request to {self.url} timed out after {cfg.timeout:g} s"
                else:
                    last = f"cannot reach {self.url}: {exc.reason}"
                logger.warning("judge attempt %d/%d: %s", attempt + 1, attempts, last)
                continue
            except (http.client.HTTPException, ConnectionError) as exc:  # closed without a (complete) reply
                last = f"connection to {self.url} closed without a complete reply ({type(exc).__name__}: {exc})"
                logger.warning("judge attempt %d/%d: %s", attempt + 1, attempts, last)
                continue
            return _message_content(body, self.url)
        raise JudgeError(f"judge failed after {attempts} attempt(s): {last}")


def _message_content(body: bytes, url: str) -> str:
    snippet = body[:200].decode("utf-8", "replace")
    try:
        data = json.loads(body)
    except ValueError:
        raise JudgeError(f"malformed reply from {url}: not JSON: {snippet!r}") from None
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise JudgeError(
            f"malformed reply from {url}: no choices[0].message.content in {snippet!r}"
        ) from None
    if not isinstance(content, str):
        raise JudgeError(f"malformed reply from {url}: message content is {type(content).__name__}, not text")
    return content


def parse_rating(text: str, aspect: str = "rating") -> float:
    """The last ``Rating: [[N]]`` in ``text``, checked to lie in [0, 2]."""
    found = _RATING.findall(text)
    if not found:
        raise JudgeError(f"malformed {aspect} reply: no 'Rating: [[N]]' in {text[-200:]!r}")
    value = float(found[-1])
    if not 0.0 <= value <= 2.0:
        raise JudgeError(f"malformed {aspect} reply: rating {value:g} is outside 0..2")
    return value


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean; 0 when any value is 0 (AxBench's aggregate)."""
    if not values:
        return math.nan
    if any(v <= 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


def judge_item(client: ChatClient, item: JudgeItem) -> dict[str, Any]:
    """Three ratings and their harmonic mean for one item (raises :class:`JudgeError`)."""
    record: dict[str, Any] = {"id": item.id}
    scores = []
    for aspect in ASPECTS:
        prompt = _PROMPTS[aspect].format(
            concept=item.concept, instruction=item.instruction, response=item.response
        )
        reply = client.complete([{"role": "user", "content": prompt}])
        try:
            score = parse_rating(reply, aspect)
        except JudgeError as exc:
            raise JudgeError(f"item {item.id!r}: {exc}") from None
        record[f"{aspect}_score"] = score
        scores.append(score)
    record["harmonic_mean"] = harmonic_mean(scores)
    return record


def read_judgements(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Records already in a judge JSONL file by id; an unreadable (e.g. torn last) line is skipped."""
    p = Path(path)
    out: dict[str, dict[str, Any]] = {}
    if not p.exists():
        return out
    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                out[str(rec["id"])] = rec
            except (ValueError, KeyError, TypeError):
                logger.warning("%s:%d is not a judge record; ignoring it", p, lineno)
    return out


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write, then flush and fsync (starts a new line after a torn one)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(p, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def judge_to_jsonl(
    items: Iterable[JudgeItem],
    config: JudgeConfig,
    path: str | os.PathLike,
    *,
    client: ChatClient | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Judge every item not yet in ``path``, appending each result as it comes; returns all records
    for ``items`` (old and new) in order. A failure raises :class:`JudgeError` after the earlier
    results are safely on disk; rerunning resumes from there."""
    items = list(items)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise InputError("judge item ids must be unique")
    done = read_judgements(path)
    todo = [it for it in items if it.id not in done]
    if len(todo) < len(items):
        logger.info(
            "judge: %d of %d items already in %s; skipping them", len(items) - len(todo), len(items), path
        )
    if todo:
        client = client or ChatClient(config)
        for it in progress_bar(todo, desc="judge", unit="item", enabled=progress):
            rec = judge_item(client, it)
            rec["model"] = config.model
            append_jsonl(path, rec)
            done[it.id] = rec
    return [done[i] for i in ids]
