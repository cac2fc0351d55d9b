"""The OpenAI-compatible gateway: the official openai client and curl against a node whose router
asks scripted miners on the testing kit's loopback network; requests pass the core's admission
pipeline (a token bucket per API key's hotkey refuses the second request of a spent key)."""

from __future__ import annotations

import shutil
import time

import anyio
import numpy as np
import orjson
import pytest
import tnode.plugins.gateway_http as gateway_plugin
import tnode.plugins.router as router_plugin
from tnode.events import TaskReceived
from tnode.interfaces import TaskResult
from tnode.keys import Keypair
from tnode.node import Node
from tnode.testing import LoopbackNetwork, MemoryChain, plugin_manager

pytestmark = pytest.mark.anyio
openai = pytest.importorskip("openai")


async def says_a(task: TaskReceived) -> TaskResult:
    rows = 1 if task.body.get("positions") == "last" else len(task.payload)
    return TaskResult({"ids": [[ord("a"), ord("b")]] * rows}, np.log(np.array([[0.7, 0.2]] * rows, np.float32)))


async def says_a_slowly(task: TaskReceived) -> TaskResult:
    await anyio.sleep(0.15)
    return await says_a(task)


@pytest.fixture
def gateway_node(tmp_path, monkeypatch):
    return make_gateway_node(tmp_path, monkeypatch, says_a)


def make_gateway_node(tmp_path, monkeypatch, responder):
    chain, network = MemoryChain(), LoopbackNetwork()
    for _ in range(2):
        key = Keypair.generate()
        chain.add_neuron(key.public_hex, addrs=[network.add_responder(key, responder)], peer_id=key.peer_id)
    good, limited = Keypair.generate().public_hex, Keypair.generate().public_hex
    (tmp_path / "keys.toml").write_text(f'[keys]\n"sk-good" = "{good}"\n')
    monkeypatch.setenv("TNODE_TEST_GATEWAY_KEYS", f"sk-limited={limited}")
    doc = {
        "transport": {"type": "loopback"}, "chain": {"type": "memory"},
        "routers": {"main": {"type": "moe", "modality": "text", "k": 2, "k_min": 2, "seed": 1}},
        "spam": {"bucket": {"type": "token_bucket", "rate": 0.001, "burst": 3}},
        "gateways": {"api": {"type": "http", "router": "main", "listen": "127.0.0.1:0", "max_tokens": 8,
                             "api_keys_file": str(tmp_path / "keys.toml"),
                             "api_keys_env": "TNODE_TEST_GATEWAY_KEYS"}},
    }
    return Node.from_dict(doc, data_dir=tmp_path / "node", hotkey=Keypair.generate(),
                          plugins=plugin_manager("antispam", chain=chain, network=network,
                                                 extra=[router_plugin, gateway_plugin]))


async def test_the_openai_client_gets_completions_chat_streams_and_errors(gateway_node) -> None:
    async with gateway_node.running():
        url = gateway_node.component("gateway", "api").url + "/v1"

        def use_client() -> dict:
            client = openai.OpenAI(base_url=url, api_key="sk-good", max_retries=0)
            out: dict = {"models": [m.id for m in client.models.list()]}
            done = client.completions.create(model="tnode-moe", prompt="xy", max_tokens=4)
            out["text"], out["usage"] = done.choices[0].text, done.usage.completion_tokens
            chat = client.chat.completions.create(model="tnode-moe", max_tokens=3,
                                                  messages=[{"role": "user", "content": "hi"}])
            out["chat"] = chat.choices[0].message.content
            out["stream"] = "".join(c.choices[0].text for c in client.completions.create(
                model="tnode-moe", prompt="xy", max_tokens=3, stream=True))
            for call, expected in [
                (lambda: openai.OpenAI(base_url=url, api_key="sk-wrong", max_retries=0).models.list(),
                 openai.AuthenticationError),
                (lambda: client.completions.create(model="gpt-4", prompt="x", max_tokens=1), openai.NotFoundError),
                (lambda: client.completions.create(model="tnode-moe", prompt="x", max_tokens=9), openai.APIStatusError),
                (lambda: client.completions.create(model="tnode-moe", prompt="x" * 70_000, max_tokens=1),
                 openai.APIStatusError),
            ]:
                with pytest.raises(expected) as raised:
                    call()
                out.setdefault("codes", []).append(raised.value.status_code)
            limited = openai.OpenAI(base_url=url, api_key="sk-limited", max_retries=0)
            statuses = []
            for _ in range(5):
                try:
                    limited.completions.create(model="tnode-moe", prompt="xy", max_tokens=1)
                    statuses.append(200)
                except openai.APIStatusError as exc:
                    statuses.append(exc.status_code)
            out["limited"] = statuses
            return out

        with anyio.fail_after(60):
            out = await anyio.to_thread.run_sync(use_client)
    assert out["models"] == ["tnode-moe"]
    assert out["text"] == "aaaa" and out["usage"] == 4
    assert out["chat"] == "aaa" and out["stream"] == "aaa"
    assert out["codes"] == [401, 404, 413, 413]
    assert out["limited"][:3] == [200, 200, 200] and 429 in out["limited"][3:]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_plain_curl_gets_a_completion(gateway_node) -> None:
    async with gateway_node.running():
        url = gateway_node.component("gateway", "api").url + "/v1/completions"
        body = orjson.dumps({"model": "tnode-moe", "prompt": "xy", "max_tokens": 2}).decode()
        with anyio.fail_after(30):
            done = await anyio.run_process(["curl", "-sS", "-H", "Authorization: Bearer sk-good", "-H",
                                            "Content-Type: application/json", "-d", body, url], check=False)
    assert done.returncode == 0, done.stderr.decode()
    reply = orjson.loads(done.stdout)
    assert reply["object"] == "text_completion" and reply["choices"][0]["text"] == "aa"
    assert reply["tnode"]["miners"]


async def test_a_stream_sends_each_token_as_it_is_generated(tmp_path, monkeypatch) -> None:
    node = make_gateway_node(tmp_path, monkeypatch, says_a_slowly)  # each router step takes >= 0.15 s
    async with node.running():
        url = node.component("gateway", "api").url + "/v1"
        router = node.component("router", "main")

        def read() -> list[tuple[float, str, int]]:
            client = openai.OpenAI(base_url=url, api_key="sk-good", max_retries=0)
            start, seen = time.monotonic(), []
            for chunk in client.completions.create(model="tnode-moe", prompt="xy", max_tokens=8, stream=True):
                seen.append((time.monotonic() - start, chunk.choices[0].text, router.queries))
            return seen

        with anyio.fail_after(60):
            seen = await anyio.to_thread.run_sync(read)
    assert "".join(text for _, text, _ in seen) == "aaaaaaaa"
    first, last = seen[0], seen[-1]
    assert first[2] <= 2, f"the first event came after {first[2]} of 8 router steps"
    assert last[0] - first[0] >= 0.5, f"events at {[round(t, 2) for t, _, _ in seen]} s: not incremental"
