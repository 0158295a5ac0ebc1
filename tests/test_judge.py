"""LLM judge client against a local OpenAI-compatible server on 127.0.0.1 (started by the test)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from easyedit_split.metrics.judge import (
    ChatClient,
    JudgeConfig,
    JudgeError,
    JudgeItem,
    append_jsonl,
    harmonic_mean,
    judge_to_jsonl,
    parse_rating,
    read_judgements,
)


class FakeServer:
    """Replies per response text: the item's response decides what the server does."""

    def __init__(self):
        self.requests: list[dict] = []
        self.fail_5xx_times = 0  # the next N requests get HTTP 500 first
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body["_auth"] = self.headers.get("Authorization")
                body["_path"] = self.path
                server.requests.append(body)
                prompt = body["messages"][0]["content"]
                if server.fail_5xx_times > 0:
                    server.fail_5xx_times -= 1
                    return self._send(500, b'{"error": "overloaded"}')
                if "SLOW" in prompt:
                    time.sleep(0.5)
                if "ALWAYS500" in prompt:
                    return self._send(500, b'{"error": "internal"}')
                if "NOTJSON" in prompt:
                    return self._send(200, b"<html>gateway</html>")
                if "NORATING" in prompt:
                    return self._send(200, self._reply("I think it is fine."))
                if "BADKEY" in prompt:
                    return self._send(401, b'{"error": "invalid api key"}')
                score = 2 if "fluency" in prompt.split("\n")[0] else 1
                return self._send(200, self._reply(f"Reasoning here. Rating: [[{score}]]"))

            def _reply(self, text):
                return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()

            def _send(self, code, data):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    s = FakeServer()
    yield s
    s.close()


@pytest.fixture()
def config(server, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-test")
    return JudgeConfig(
        base_url=server.base_url,
        model="judge-1",
        api_key_env="TEST_JUDGE_KEY",
        timeout=0.25,
        max_retries=2,
        backoff=0.01,
    )


def _items(*responses):
    return [
        JudgeItem(id=f"g{i}", instruction="Describe the sea.", concept="the ocean", response=r)
        for i, r in enumerate(responses)
    ]


def test_good_replies_are_scored_and_written(server, config, tmp_path):
    out = tmp_path / "judge.jsonl"
    recs = judge_to_jsonl(_items("Waves roll in.", "Salt and foam."), config, out, progress=False)
    assert [r["id"] for r in recs] == ["g0", "g1"]
    r = recs[0]
    assert (r["concept_score"], r["instruction_score"], r["fluency_score"]) == (1.0, 1.0, 2.0)
    assert r["harmonic_mean"] == pytest.approx(3 / (1 + 1 + 0.5))
    assert len(server.requests) == 6
    req = server.requests[0]
    assert (
        req["_path"] == "/v1/chat/completions"
        and req["_auth"] == "Bearer sk-test"
        and req["model"] == "judge-1"
    )
    assert "the ocean" in req["messages"][0]["content"] and "Waves roll in." in req["messages"][0]["content"]
    lines = out.read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["g0", "g1"]


def test_resume_skips_already_judged_ids(server, config, tmp_path):
    out = tmp_path / "judge.jsonl"
    judge_to_jsonl(_items("one"), config, out, progress=False)
    n = len(server.requests)
    recs = judge_to_jsonl(_items("one", "two"), config, out, progress=False)
    assert len(server.requests) == n + 3  # only the new item was judged
    assert [r["id"] for r in recs] == ["g0", "g1"] and len(out.read_text().splitlines()) == 2


def test_timeout_is_retried_then_reported_keeping_earlier_results(server, config, tmp_path):
    out = tmp_path / "judge.jsonl"
    with pytest.raises(JudgeError, match=r"failed after 3 attempt\(s\): .*timed out after 0.25 s"):
        judge_to_jsonl(_items("fine text", "SLOW text", "never reached"), config, out, progress=False)
    assert list(read_judgements(out)) == ["g0"]  # the first result survived the failure
    assert sum("SLOW" in r["messages"][0]["content"] for r in server.requests) == 3  # 1 try + 2 retries
    assert not any("never reached" in r["messages"][0]["content"] for r in server.requests)


def test_http_500_retried_then_reported(server, config, tmp_path):
    out = tmp_path / "judge.jsonl"
    with pytest.raises(JudgeError, match="HTTP 500 from http://127.0.0.1:.*internal"):
        judge_to_jsonl(_items("ok", "ALWAYS500"), config, out, progress=False)
    assert list(read_judgements(out)) == ["g0"]
    # a transient 500 is recovered by the retry
    server.fail_5xx_times = 2
    recs = judge_to_jsonl(_items("ok", "recovers"), config, out, progress=False)
    assert [r["id"] for r in recs] == ["g0", "g1"] and recs[1]["harmonic_mean"] > 0


@pytest.mark.parametrize(
    "text,message",
    [
        ("NOTJSON", r"malformed reply from .*: not JSON: '<html>gateway</html>'"),
        ("NORATING", r"item 'g1': malformed concept reply: no 'Rating: \[\[N\]\]' in 'I think it is fine.'"),
        ("BADKEY", r"HTTP 401 .*invalid api key"),
    ],
)
def test_malformed_and_client_errors_are_not_retried(server, config, tmp_path, text, message):
    out = tmp_path / "judge.jsonl"
    with pytest.raises(JudgeError, match=message):
        judge_to_jsonl(_items("good", text), config, out, progress=False)
    assert sum(text in r["messages"][0]["content"] for r in server.requests) == 1
    assert list(read_judgements(out)) == ["g0"]


def test_missing_api_key_env_names_the_variable(server, monkeypatch):
    monkeypatch.delenv("NO_SUCH_JUDGE_KEY", raising=False)
    with pytest.raises(JudgeError, match="NO_SUCH_JUDGE_KEY"):
        ChatClient(JudgeConfig(base_url=server.base_url, model="m", api_key_env="NO_SUCH_JUDGE_KEY"))


def test_unreachable_endpoint(tmp_path):
    cfg = JudgeConfig(
        base_url="http://127.0.0.1:9/v1",
        model="m",
        api_key_env=None,
        timeout=0.5,
        max_retries=1,
        backoff=0.01,
    )
    with pytest.raises(JudgeError, match="cannot reach"):
        judge_to_jsonl(_items("x"), cfg, tmp_path / "j.jsonl", progress=False)


def test_parse_rating_and_harmonic_mean():
    assert parse_rating("blah Rating: [[1]] then Rating: [[2]]") == 2.0
    assert parse_rating("rating:[[ 1.5 ]]") == 1.5
    with pytest.raises(JudgeError, match="outside 0..2"):
        parse_rating("Rating: [[7]]")
    assert harmonic_mean([2, 2, 2]) == 2.0 and harmonic_mean([2, 0, 2]) == 0.0
    assert harmonic_mean([1, 2]) == pytest.approx(4 / 3)


def test_torn_last_line_is_skipped_and_next_append_starts_a_new_line(tmp_path):
    p = tmp_path / "j.jsonl"
    append_jsonl(p, {"id": "a", "harmonic_mean": 1.0})
    with open(p, "a") as fh:
        fh.write('{"id": "b", "harm')  # a crash mid-write
    assert list(read_judgements(p)) == ["a"]
    append_jsonl(p, {"id": "c", "harmonic_mean": 2.0})
    assert list(read_judgements(p)) == ["a", "c"]
