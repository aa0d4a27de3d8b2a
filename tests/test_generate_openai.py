"""The openai backend: against a real `vllm serve` (bundled SmolLM2), and a scripted server for retries.

The scripted server stands in for a hosted API (DeepSeek-style `reasoning_content`, 429s, 500s); it is
the far end of the HTTP connection, not the code under test.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from distill.config import GenerateConfig
from distill.errors import DistillError
from distill.generation import generate
from distill.generation.shards import expected_keys
from distill.jsonl import read_jsonl
from distill.records import Problem, Trace


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_problems(path: Path, questions: list[str]) -> Path:
    path.write_text("".join(json.dumps(Problem(id=f"q{i}", problem=q).to_json()) + "\n"
                            for i, q in enumerate(questions)))
    return path


def openai_config(tmp_path: Path, name: str, problems: Path, base_url: str, model: str, **sampling) -> GenerateConfig:
    return GenerateConfig.model_validate({
        "backend": "openai", "model": model, "problems": str(problems), "output": str(tmp_path / f"{name}.jsonl"),
        "sampling": {"n": 2, "max_tokens": 24, **sampling},
        "openai": {"base_url": base_url, "concurrency": 4, "max_retries": 3, "timeout_s": 120}})


# ------------------------------------------------------------------------------ a scripted API server


class ScriptedAPI(BaseHTTPRequestHandler):
    """Answers /v1/models and /v1/chat/completions; fails the first `fail_first` completions with `status`."""

    bodies: ClassVar[list[dict]] = []
    fail_first = 0
    status = 429
    reject_max_tokens = False  # answer like OpenAI's reasoning models do

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, code: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": "hosted-r1", "object": "model", "owned_by": "someone"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        cls.bodies.append(body)
        if cls.reject_max_tokens and "max_tokens" in body:
            self._send(400, {"error": {
                "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                           "Use 'max_completion_tokens' instead.",
                "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}})
            return
        if len(cls.bodies) <= cls.fail_first:
            self._send(cls.status, {"error": {"message": "slow down", "type": "rate_limit"}}, {"Retry-After": "0.1"})
            return
        question = body["messages"][-1]["content"].split("\n")[0]
        self._send(200, {
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": f"The answer is \\boxed{{{len(question)}}}.",
                "reasoning_content": f"Count the characters of: {question}"}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})


@pytest.fixture()
def scripted_api():
    ScriptedAPI.bodies, ScriptedAPI.fail_first, ScriptedAPI.status = [], 0, 429
    ScriptedAPI.reject_max_tokens = False
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_hosted_api_reasoning_content_and_retries(tmp_path, scripted_api):
    problems = write_problems(tmp_path / "p.jsonl", ["What is 1+1?", "What is 2+2?"])
    ScriptedAPI.fail_first = 2  # two 429s: the client backs off and retries
    result = generate(openai_config(tmp_path, "t", problems, scripted_api, "hosted-r1"), progress=False)
    traces = list(read_jsonl(result.output, Trace))
    assert sorted(t.key for t in traces) == sorted(expected_keys(problems, 2))
    assert len(ScriptedAPI.bodies) == 4 + 2
    for trace in traces:
        question = trace.prompt[-1]["content"].split("\n")[0]
        assert trace.teacher == "hosted-r1"
        assert trace.reasoning == f"Count the characters of: {question}"
        assert trace.answer == trace.completion == f"The answer is \\boxed{{{len(question)}}}."
        assert (trace.prompt_tokens, trace.completion_tokens, trace.finish_reason) == (11, 7, "stop")
    body = ScriptedAPI.bodies[-1]
    # Not a vLLM server: standard fields only, the per-sample seed in `seed`, no prefill turn.
    assert body["temperature"] == 0.6 and body["top_p"] == 0.95 and body["max_tokens"] == 24
    assert "vllm_xargs" not in body and body["messages"][-1]["role"] == "user"
    assert len({b["seed"] for b in ScriptedAPI.bodies[2:]}) == 4


def test_a_server_that_refuses_max_tokens_gets_max_completion_tokens(tmp_path, scripted_api):
    problems = write_problems(tmp_path / "p.jsonl", [f"What is {i}+{i}?" for i in range(6)])
    ScriptedAPI.reject_max_tokens = True
    result = generate(openai_config(tmp_path, "t", problems, scripted_api, "hosted-r1"), progress=False)
    assert sorted(t.key for t in read_jsonl(result.output, Trace)) == sorted(expected_keys(problems, 2))
    refused = [b for b in ScriptedAPI.bodies if "max_tokens" in b]
    # Only requests already in flight when the first refusal came back were sent the old way.
    assert 1 <= len(refused) <= 4  # openai.concurrency
    answered = [b for b in ScriptedAPI.bodies if "max_completion_tokens" in b]
    assert len(answered) == 12 and len(ScriptedAPI.bodies) == len(refused) + 12
    assert all(b["max_completion_tokens"] == 24 for b in answered)
    # Told explicitly, the backend sends max_tokens and the refusal is a clear error.
    config = openai_config(tmp_path, "u", problems, scripted_api, "hosted-r1")
    config.openai.token_limit_param = "max_tokens"
    with pytest.raises(DistillError, match="max_completion_tokens"):
        generate(config, progress=False)


def test_server_errors_stop_the_run_with_a_clear_message(tmp_path, scripted_api):
    problems = write_problems(tmp_path / "p.jsonl", ["What is 1+1?"])
    ScriptedAPI.fail_first, ScriptedAPI.status = 100, 503
    config = openai_config(tmp_path, "t", problems, scripted_api, "hosted-r1")
    config.openai.max_retries = 1
    with pytest.raises(DistillError, match="still failing after 1 retries"):
        generate(config, progress=False)
    assert len(ScriptedAPI.bodies) == 2 * 2  # each of the n=2 requests: first try + one retry
    with pytest.raises(DistillError, match="does not serve 'other'"):
        generate(openai_config(tmp_path, "u", problems, scripted_api, "other").model_copy(
            update={"openai": config.openai.model_copy(update={"served_model": "other"})}), progress=False)
    unreachable = openai_config(tmp_path, "v", problems, f"http://127.0.0.1:{free_port()}/v1", "m")
    with pytest.raises(DistillError, match="cannot reach"):
        generate(unreachable, progress=False)


# ---------------------------------------------------------------------------------- real vllm serve


@pytest.fixture(scope="module")
def vllm_server(smollm2):
    """`vllm serve` on the bundled SmolLM2 with the seeded sampler loaded; killed when the module ends.

    Eager mode: compiling graphs for a new shape takes minutes on this CPU, longer than the test.
    float32: requests arrive concurrently, so batches differ between runs; in bfloat16 that noise can
    flip a draw near a boundary, in float32 it practically never does.
    """
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    base = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            # `vllm serve` itself: vllm-cpu's `vllm` script looks up a distribution named "vllm" and dies.
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", smollm2, "--host", "127.0.0.1", "--port", str(port), "--served-model-name",
             "smollm2", "--max-model-len", "1024", "--max-num-seqs", "16", "--enforce-eager",
             "--dtype", "float32",
             "--logits-processors", "distill.generation.vllm_sampler:SeededSampler"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_until_serving(process, base, log)
            yield base
        finally:
            # The server and the engine process it started share the session this test created.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait_until_serving(process: subprocess.Popen, base: str, log, timeout_s: float = 400) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"vllm serve exited with {process.returncode}:\n{log.read()[-3000:]}")
        try:
            urllib.request.urlopen(base + "/models", timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"vllm serve did not come up in {timeout_s:.0f} s:\n{log.read()[-3000:]}")
            time.sleep(1)


@pytest.mark.slow  # end to end, over 10 s: out of the inner loop (make test-fast)
@pytest.mark.vllm
def test_vllm_serve_backend_reproduces_traces(tmp_path, vllm_server):
    problems = write_problems(tmp_path / "p.jsonl", ["What is 12 + 30?", "A box has 3 red and 4 blue balls. How many balls?"])
    first = generate(openai_config(tmp_path, "a", problems, vllm_server, "bundled:smollm2-135m-instruct"),
                     progress=False)
    traces = list(read_jsonl(first.output, Trace))
    assert sorted(t.key for t in traces) == sorted(expected_keys(problems, 2))
    for trace in traces:
        assert trace.teacher == "smollm2"  # the one served model, found through /v1/models
        assert 0 < trace.completion_tokens <= 24 and trace.prompt_tokens > 10 and trace.completion
        assert trace.finish_reason in ("stop", "length")
    # Same seed through the server's SeededSampler: the same traces, although concurrent requests meet
    # in other batches this time; another seed: other traces.
    again = list(read_jsonl(generate(openai_config(tmp_path, "b", problems, vllm_server, "smollm2"),
                                     progress=False).output, Trace))
    reseeded = list(read_jsonl(generate(openai_config(tmp_path, "c", problems, vllm_server, "smollm2", seed=5),
                                        progress=False).output, Trace))
    assert completions(again) == completions(traces)
    assert completions(reseeded) != completions(traces)


def completions(traces: list[Trace]) -> dict[str, str]:
    return {t.key: t.completion for t in traces}
