"""Entra ID tokens for Azure upstreams (`entra:`), through a real gateway in front of the fake
Azure resource, which accepts only the unexpired tokens the fake identity platform issued:
one fetch for concurrent first calls, refreshed before expiry without a call waiting, a
workload identity's rotated token file read again, a refused secret a clear error with a
backoff, and the config's rules."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import openai
import pytest

from llm_gateway.config import ConfigError, parse_config
from llm_gateway.testing.fake_azure import FakeAzure
from llm_gateway.testing.fake_entra import ASSERTION_TYPE, FakeEntra

from auth_support import gateway_env, keys_config, new_key
from azure_support import azure_config, azure_env, gateways, sdk, words

TENANT = "contoso.onmicrosoft.com"
CLIENT = "6a3f1c2e-0b7d-4e55-9a1f-2c8e7d9b4a10"
SECRET = "entra-client-secret-value-3"
IDENTITY = "9b1e0c4d-7a2f-4c3e-8d5b-1f6a2e3c4d5e"  # a user-assigned managed identity


@pytest.fixture
def started():
    yield from gateways()


def entra_config(azure: FakeAzure, entra: FakeEntra, **auth) -> dict:
    config = azure_config(azure.url)
    upstream = dict(config["upstreams"]["azure"])
    del upstream["api_key_env"]
    upstream["entra"] = {"tenant_id": TENANT, "client_id": CLIENT, "authority": entra.url,
                         **(auth or {"client_secret_env": "LGW_TEST_ENTRA_SECRET"})}
    return {**config, "upstreams": {"azure": upstream}}


def env(secret: str = SECRET) -> dict[str, str]:
    return azure_env(LGW_TEST_ENTRA_SECRET=secret)


def ask(server) -> str:
    answer = sdk(server).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": words()}])
    return answer.choices[0].message.content


def test_concurrent_first_calls_share_one_token_fetch(started):
    with FakeEntra(tenant=TENANT, client_id=CLIENT, secret=SECRET) as entra, \
            FakeAzure(tokens=entra.valid) as azure:
        gw = started(entra_config(azure, entra), env=env())

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=gw.url, timeout=15) as http:
                replies = await asyncio.gather(*(http.post("/chat/completions", json={
                    "model": "gpt-4o", "messages": [{"role": "user", "content": words()}]})
                    for _ in range(12)))
            return [r.status_code for r in replies]

        assert asyncio.run(burst()) == [200] * 12
        assert len(entra.requests) == 1
        form = entra.requests[0]
        assert form == {"grant_type": "client_credentials", "client_id": CLIENT,
                        "scope": "https://cognitiveservices.azure.com/.default",
                        "client_secret": SECRET}
        sent = azure.requests[-1].headers
        assert sent["authorization"].startswith("Bearer eyJ") and "api-key" not in sent
        ask(gw)
        assert len(entra.requests) == 1  # the token is kept


def test_a_token_is_refreshed_before_it_expires_and_no_call_waits(started):
    # 3-second tokens: refreshed at half their life; the fake refuses them once expired.
    with FakeEntra(tenant=TENANT, client_id=CLIENT, secret=SECRET, expires_in=3) as entra, \
            FakeAzure(tokens=entra.valid) as azure:
        gw = started(entra_config(azure, entra), env=env())
        ask(gw)
        slowest = 0.0
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline:
            began = time.monotonic()
            assert ask(gw)
            slowest = max(slowest, time.monotonic() - began)
            time.sleep(0.1)
        assert len(entra.requests) >= 4  # one at the start, then about every 1.5 s
        used = {r.headers["authorization"] for r in azure.requests}
        assert len(used) >= 3
        assert slowest < 1.0


def test_a_workload_identity_reads_its_rotated_token_file_each_fetch(started, tmp_path: Path):
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("federated-token-1\n")
    with FakeEntra(tenant=TENANT, client_id=CLIENT, assertion="federated-token-1",
                   expires_in=2) as entra, FakeAzure(tokens=entra.valid) as azure:
        gw = started(entra_config(azure, entra, federated_token_file=str(token_file)),
                     env=env())
        ask(gw)
        form = entra.requests[0]
        assert form["client_assertion_type"] == ASSERTION_TYPE
        assert form["client_assertion"] == "federated-token-1" and "client_secret" not in form
        token_file.write_text("federated-token-2\n")  # the kubelet rotates it
        entra.assertion = "federated-token-2"
        time.sleep(2.2)  # the first token has expired
        ask(gw)
        assert entra.requests[-1]["client_assertion"] == "federated-token-2"


def test_a_refused_secret_is_a_clear_error_and_fetches_back_off(started):
    with FakeEntra(tenant=TENANT, client_id=CLIENT, secret=SECRET) as entra, \
            FakeAzure(tokens=entra.valid) as azure:
        gw = started(entra_config(azure, entra), env=env("a-wrong-secret"))
        with pytest.raises(openai.APIStatusError) as caught:
            ask(gw)
        err = caught.value
        assert err.status_code == 502 and err.body["code"] == "upstream_credentials"
        assert "Entra ID gave no token: invalid_client (AADSTS7000215)" in err.body["message"]
        assert "a-wrong-secret" not in err.response.text
        with pytest.raises(openai.APIStatusError):
            ask(gw)  # within the backoff: refused at once, Entra not asked again
        assert len(entra.requests) == 1 and azure.requests == []
        ready = httpx.get(gw.url.removesuffix("/v1") + "/readyz", timeout=5)
        assert ready.status_code == 503 and "Entra ID" in ready.text
        entra.secret = "a-wrong-secret"  # rotated on the identity side to what we hold
        time.sleep(1.1)
        assert ask(gw)
        assert len(entra.requests) == 2


def test_a_teams_own_key_goes_without_our_token(started, tmp_path: Path):
    """A team with its own Azure credential needs nothing from Entra: a failing identity
    platform does not stop it, while everyone else gets the token error."""
    with FakeEntra(tenant=TENANT, client_id=CLIENT, secret=SECRET) as entra, \
            FakeAzure(tokens=entra.valid, token="team-entra-token") as azure:
        own = entra_config(azure, entra)
        config = keys_config(azure.url, str(tmp_path), None, upstreams=own["upstreams"],
                             models=own["models"], teams={"ml": {"upstreams": {"azure": {
                                 "api_key_env": "ML_AZURE_TOKEN"}}}})
        gw = started(config, gateway_env(LGW_TEST_ENTRA_SECRET="wrong",
                                         ML_AZURE_TOKEN="team-entra-token"))
        _, team_key = new_key(gw, team="ml")
        _, plain_key = new_key(gw)
        answer = sdk(gw, team_key).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": words()}])
        assert answer.choices[0].message.content
        assert azure.requests[-1].headers["authorization"] == "Bearer team-entra-token"
        assert entra.requests == []
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(gw, plain_key).chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": words()}])
        assert caught.value.body["code"] == "upstream_credentials"
        assert len(entra.requests) == 1


ONE_PROOF = "upstreams.azure.entra: set one of client_secret_env, federated_token_file and " \
    "managed_identity: true"


@pytest.mark.parametrize(("entra", "problem"), [
    ({"tenant_id": TENANT, "client_id": CLIENT}, ONE_PROOF),
    ({"tenant_id": TENANT, "client_id": CLIENT, "client_secret_env": "S",
      "federated_token_file": "/f"}, ONE_PROOF),
    ({"client_secret_env": "S", "managed_identity": True}, ONE_PROOF),
    ({"tenant_id": "contoso/../x", "client_id": CLIENT, "client_secret_env": "S"},
     "upstreams.azure.entra.tenant_id: must be a GUID or a domain name"),
    ({"client_id": CLIENT, "client_secret_env": "S"},
     "upstreams.azure.entra.tenant_id: required with an app's secret or federated token"),
    ({"managed_identity": True, "identity_endpoint": "169.254.169.254"},
     "upstreams.azure.entra.identity_endpoint: must start with http://"),
])
def test_entra_config_errors_name_their_key(entra, problem):
    config = azure_config("https://r.openai.azure.com")
    upstream = {k: v for k, v in config["upstreams"]["azure"].items() if k != "api_key_env"}
    config["upstreams"] = {"azure": {**upstream, "entra": entra}}
    with pytest.raises(ConfigError) as caught:
        parse_config(config, env={})
    assert problem in str(caught.value)


def test_entra_is_for_azure_and_is_the_only_credential():
    config = azure_config("https://r.openai.azure.com")
    entra = {"tenant_id": TENANT, "client_id": CLIENT, "client_secret_env": "S"}
    both = {**config["upstreams"]["azure"], "entra": entra}
    with pytest.raises(ConfigError, match=r"upstreams\.azure\.entra: set one of api_key_env"):
        parse_config({**config, "upstreams": {"azure": both}}, env={})
    openai_kind = {"upstreams": {"o": {"base_url": "https://api.openai.com/v1",
                                       "entra": entra}}, "models": []}
    with pytest.raises(ConfigError, match=r"upstreams\.o\.entra: only for kind: azure"):
        parse_config(openai_kind, env={})


@pytest.mark.parametrize("assigned", [False, True], ids=["system", "user-assigned"])
def test_a_managed_identity_gets_its_token_from_the_metadata_service(started, assigned):
    with FakeEntra(tenant=TENANT, client_id=CLIENT, identity=IDENTITY) as entra, \
            FakeAzure(tokens=entra.valid) as azure:
        auth = {"managed_identity": True,
                "identity_endpoint": f"{entra.url}/metadata/identity/oauth2/token"}
        if assigned:
            auth["client_id"] = IDENTITY
        config = entra_config(azure, entra, **auth)
        del config["upstreams"]["azure"]["entra"]["tenant_id"]  # not needed
        del config["upstreams"]["azure"]["entra"]["client_id"]
        if assigned:
            config["upstreams"]["azure"]["entra"]["client_id"] = IDENTITY
        gw = started(config, env=env())
        assert ask(gw) and ask(gw)
        [asked] = entra.requests
        expected = {"api-version": "2018-02-01", "metadata": "true",
                    "resource": "https://cognitiveservices.azure.com"}
        assert asked == ({**expected, "client_id": IDENTITY} if assigned else expected)
        assert azure.requests[-1].headers["authorization"].startswith("Bearer eyJ")
