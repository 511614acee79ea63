"""The media's ICE addresses follow the server's listen address unless they are set.

A server listening on a loopback address (``sanke serve``'s default, ``scripts/run.sh``) can only
be reached from its own machine, so its media gathers and accepts on loopback too, with nothing
to set. Any other listen address keeps aioice's defaults (every interface, any address).
"""

from __future__ import annotations

import aioice.ice
import pytest

from media import ice
from media.ice import IcePolicy
from server.core.config import Settings


@pytest.fixture
def no_ice_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SANKE_HOST", "SANKE_ICE_HOST_ADDRESSES", "SANKE_ICE_ALLOWED_NETWORKS", "SANKE_ICE_SERVERS",
                 "SANKE_ICE_ANNOUNCED_ADDRESS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_a_server_listening_on_loopback_gathers_media_on_loopback_only(tmp_path, no_ice_env, host):
    s = Settings(data_dir=tmp_path, host=host)
    assert s.ice_policy() == IcePolicy.loopback()
    # the worker processes get the same policy through the strings they are handed
    assert s.ice_strings()["ice_host_addresses"] == "127.0.0.1"
    assert IcePolicy.from_strings(*s.ice_strings().values()) == IcePolicy.loopback()


def test_the_default_settings_are_run_sh_s_and_gather_on_loopback(tmp_path, no_ice_env):
    policy = Settings(data_dir=tmp_path).ice_policy()
    try:
        ice.apply(policy)
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1"]
    finally:
        ice.reset()
    assert not policy.address_allowed("192.168.1.20")  # a LAN candidate of the same machine is refused


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "sanke.example.edu.cn"])
def test_a_server_listening_beyond_loopback_keeps_every_interface(tmp_path, no_ice_env, host):
    s = Settings(data_dir=tmp_path, host=host)
    assert s.ice_policy() == IcePolicy()
    assert s.ice_strings()["ice_host_addresses"] is None and s.ice_strings()["ice_allowed_networks"] is None


def test_addresses_that_are_set_win_over_the_loopback_default(tmp_path, no_ice_env):
    only_hosts = Settings(data_dir=tmp_path, ice_host_addresses="10.1.2.3").ice_policy()
    assert only_hosts.host_addresses == ("10.1.2.3",) and only_hosts.allowed_networks is None
    only_networks = Settings(data_dir=tmp_path, ice_allowed_networks="10.0.0.0/8").ice_policy()
    assert only_networks.host_addresses is None and not only_networks.address_allowed("127.0.0.1")
    # a reverse proxy on the same machine in front of a loopback SanKe: every interface, on request
    everywhere = Settings(data_dir=tmp_path, ice_host_addresses="*").ice_policy()
    assert everywhere == IcePolicy()


def test_the_listen_address_comes_from_the_environment_too(tmp_path, no_ice_env, monkeypatch):
    monkeypatch.setenv("SANKE_HOST", "0.0.0.0")
    assert Settings(data_dir=tmp_path).ice_policy() == IcePolicy()
    monkeypatch.setenv("SANKE_HOST", "127.0.0.1")
    assert Settings(data_dir=tmp_path).ice_policy() == IcePolicy.loopback()
