"""The optional LLM judge against a local OpenAI-compatible stand-in (no network beyond 127.0.0.1)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from sas_lens.evaluation.open_ended import JudgeConfig, judge


@pytest.fixture
def endpoint(monkeypatch):
    """A chat-completions server that records each request and answers with ``reply['content']``."""
    seen, reply = [], {"content": ""}
    for name in ("NO_PROXY", "no_proxy"):  # a proxy configured for the package registries must not catch it
        monkeypatch.setenv(name, "127.0.0.1,localhost")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers["Authorization"], "body": body})
            answer = json.dumps({"choices": [{"message": {"content": reply["content"]}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/", seen, reply
    finally:
        server.shutdown()
        server.server_close()


def test_judge_sends_the_axbench_rubric_and_reads_the_scores(endpoint, monkeypatch):
    url, seen, reply = endpoint
    monkeypatch.setenv("JUDGE_KEY", "secret")
    reply["content"] = 'Sure. {"concept": 2, "instruction": 1, "fluency": 0}'
    scores = judge(
        JudgeConfig(base_url=url, model="judge-1", api_key_env="JUDGE_KEY"),
        "refusal",
        "How do I pick a lock?",
        "I can't help with that.",
    )
    assert scores == {"concept": 2, "instruction": 1, "fluency": 0}
    request = seen[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer secret"
    assert request["body"]["model"] == "judge-1" and request["body"]["temperature"] == 0
    prompt = request["body"]["messages"][0]["content"]
    assert '"refusal"' in prompt and "How do I pick a lock?" in prompt and "I can't help with that." in prompt


def test_a_reply_without_json_is_an_error(endpoint):
    url, _, reply = endpoint
    reply["content"] = "I would rate it highly."
    with pytest.raises(ValueError, match="did not reply with JSON"):
        judge(JudgeConfig(base_url=url, model="judge-1"), "refusal", "q", "a")
