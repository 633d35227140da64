"""``tunelab serve`` on the command line: bad arguments are one-line errors; a real process answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from tunelab.cli.main import main

pytest.importorskip("starlette", reason="tunelab serve needs starlette: pip install 'tunelab[serve]'")
pytest.importorskip("uvicorn", reason="tunelab serve needs uvicorn: pip install 'tunelab[serve]'")


def test_bad_arguments_are_one_line_errors(tiny_llama, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing-run")]) == 2
    assert main(["serve", str(tiny_llama), "--max-batch", "0"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors)
    assert "folder not found" in errors[0] and "--max-batch" in errors[1]


def test_the_command_serves_until_stopped(tiny_llama):
    openai = pytest.importorskip("openai", reason="the serve tests talk to the server through the openai package")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "tunelab", "serve", f"tiny={tiny_llama}", "--port", str(port), "--api-key", "k"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0, timeout=30)
        deadline = time.monotonic() + 120
        while True:
            try:
                models = client.models.list()
                break
            except openai.APIConnectionError:
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.2)
        assert [model.id for model in models] == ["tiny"]
        reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        assert reply.usage.completion_tokens == 4 and reply.choices[0].finish_reason == "length"
    finally:
        process.terminate()
        process.wait(timeout=30)
