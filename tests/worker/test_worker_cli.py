"""`llm-gateway worker` refuses bad settings at once, before listening."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llm_gateway", "worker", *args],
                          capture_output=True, text=True, timeout=30)


def test_missing_model_file_fails_fast(tmp_path):
    done = run("--model", str(tmp_path / "nope.gguf"), "--port", "1")
    assert done.returncode == 2 and "model file not found" in done.stderr


def test_unknown_chat_format_fails_fast():
    done = run("--model", "default", "--chat-format", "no-such-format", "--port", "1")
    assert done.returncode == 2 and "unknown chat format" in done.stderr
    assert "chatml" in done.stderr  # the known ones are listed


def test_help_lists_the_contract_flags():
    done = subprocess.run([sys.executable, "-m", "llm_gateway", "worker", "--help"],
                          capture_output=True, text=True, timeout=30)
    for flag in ("--model", "--host", "--port", "--served-name", "--n-gpu-layers", "--n-ctx",
                 "--n-batch", "--n-threads", "--flash-attn", "--chat-format",
                 "--chat-template", "--tool-format", "--lora", "--embeddings", "--no-embeddings",
                 "--max-queue", "--max-body-bytes", "--header-timeout-seconds",
                 "--body-timeout-seconds", "--body-min-bytes-per-second", "--seed"):
        assert flag in done.stdout


def test_embeddings_are_on_unless_turned_off():
    import argparse

    from llm_gateway.cli.worker import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)

    def embeddings(*extra: str) -> bool:
        return config_from_args(parser.parse_args(["--model", "m", *extra])).embeddings

    # --embedding, the flag's old name (when they were off by default), is still taken.
    assert (embeddings(), embeddings("--no-embeddings"), embeddings("--embeddings"),
            embeddings("--embedding")) == (True, False, True, True)


def test_flash_attention_is_auto_unless_told():
    import argparse

    from llm_gateway.cli.worker import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)

    def flash(*extra: str) -> str:
        return config_from_args(parser.parse_args(["--model", "m", *extra])).flash_attn

    assert (flash(), flash("--flash-attn"), flash("--flash-attn", "off")) == ("auto", "on", "off")
    done = run("--model", "default", "--flash-attn", "maybe")
    assert done.returncode == 2 and "--flash-attn" in done.stderr


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--max-body-bytes", "0", "--max-body-bytes must be 1 or more"),
    ("--header-timeout-seconds", "0", "must be more than 0"),
    ("--body-timeout-seconds", "-1", "must be more than 0"),
    ("--body-min-bytes-per-second", "-1", "--body-min-bytes-per-second must be 0 or more")])
def test_bad_client_bounds_fail_fast(flag: str, value: str, says: str) -> None:
    done = run("--model", "default", "--port", "1", flag, value)
    assert done.returncode == 2 and says in done.stderr


def test_a_bad_otlp_proxy_fails_fast() -> None:
    done = run("--model", "default", "--port", "1", "--otlp-endpoint",
               "http://127.0.0.1:4318/v1/traces", "--otlp-proxy", "socks5://proxy:1080")
    assert done.returncode == 2 and "--otlp-proxy must be env, none or a proxy URL" in done.stderr
