"""The HTTP API's keys and listen address, without a server: hashing and the
constant-time match, who is let in with what role, and `[api] listen` parsing."""

from __future__ import annotations

import hashlib

import pytest

from tagd.api.auth import authorize, key_sha256, match_key, new_key
from tagd.api.listen import Listen, ListenError, exposure_problem, is_loopback, parse_listen
from tagd.api.problems import Problem
from tagd.config import ApiKey, ApiSettings, ConfigError, parse_settings

READ, ADMIN = "the-read-key", "the-admin-key"
KEYS = [
    ApiKey(sha256=key_sha256(READ), role="read", name="frame"),
    # Upper-case hex, as some tools print it, matches too.
    ApiKey(sha256=key_sha256(ADMIN).upper(), role="admin", name="me"),
]


def test_keys_are_random_and_hashed_as_sha256_hex() -> None:
    key = new_key()
    assert len(key) >= 43 and key != new_key()
    assert key_sha256(key) == hashlib.sha256(key.encode()).hexdigest()
    assert len(key_sha256(key)) == 64


def test_match_finds_the_key_whose_hash_it_is() -> None:
    assert match_key(KEYS, READ) == KEYS[0]
    assert match_key(KEYS, ADMIN) == KEYS[1]
    assert match_key(KEYS, "wrong") is None
    assert match_key(KEYS, key_sha256(READ)) is None  # the hash itself is no key
    assert match_key([], READ) is None


def test_without_keys_loopback_clients_are_admin_and_others_refused() -> None:
    for host in ("127.0.0.1", "127.8.0.1", "::1", "::ffff:127.0.0.1", "localhost"):
        assert authorize([], None, host, "admin").role == "admin"
    for host in ("192.168.1.20", "10.0.0.1", "::ffff:10.0.0.1", None):
        with pytest.raises(Problem) as refused:
            authorize([], None, host, "read")
        assert refused.value.status == 401 and "tagd api-key new" in refused.value.detail


def test_with_keys_a_bearer_key_is_needed_even_from_loopback() -> None:
    with pytest.raises(Problem) as missing:
        authorize(KEYS, None, "127.0.0.1", "read")
    assert missing.value.status == 401
    assert missing.value.headers == {"WWW-Authenticate": "Bearer"}
    with pytest.raises(Problem) as wrong:
        authorize(KEYS, "wrong", "127.0.0.1", "read")
    assert wrong.value.status == 401
    assert authorize(KEYS, READ, "192.168.1.20", "read").name == "frame"
    assert authorize(KEYS, ADMIN, "192.168.1.20", "admin").role == "admin"
    assert authorize(KEYS, ADMIN, "192.168.1.20", "read").role == "admin"


def test_a_read_key_on_an_admin_route_is_forbidden() -> None:
    with pytest.raises(Problem) as forbidden:
        authorize(KEYS, READ, "127.0.0.1", "admin")
    assert forbidden.value.status == 403 and "admin" in forbidden.value.detail


def test_listen_parsing() -> None:
    assert parse_listen("127.0.0.1:8765") == Listen("127.0.0.1", 8765)
    assert parse_listen("[::1]:80") == Listen("::1", 80)
    assert parse_listen("nas.local:8080") == Listen("nas.local", 8080)
    assert parse_listen("[::1]:80").url == "http://[::1]:80"
    assert parse_listen("localhost:1").loopback and not parse_listen("0.0.0.0:1").loopback
    assert not is_loopback("nas.local")  # a name may resolve anywhere
    assert parse_listen("127.0.0.1:0").port == 0  # any free port
    for bad, words in (
        ("garbage", "host:port"),
        ("127.0.0.1", "host:port"),
        (":8765", "host:port"),
        ("127.0.0.1:65536", "port"),
        ("127.0.0.1:http", "port"),
        ("::1:80", "brackets"),
        ("[nope]:80", "IPv6"),
        ("a b:80", "host name"),
    ):
        with pytest.raises(ListenError, match=words):
            parse_listen(bad)


def test_an_open_address_needs_keys() -> None:
    none = ApiSettings()
    problem = exposure_problem(none, parse_listen("0.0.0.0:8765"))
    assert problem is not None and "api.api_keys" in problem and "tagd api-key new" in problem
    assert exposure_problem(none, parse_listen("127.0.0.1:8765")) is None
    keyed = ApiSettings(api_keys=[KEYS[0]])
    assert exposure_problem(keyed, parse_listen("0.0.0.0:8765")) is None


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as garbage:
        parse_settings({"api": {"listen": "garbage"}})
    assert "api.listen = 'garbage'" in "\n".join(garbage.value.lines)
    with pytest.raises(ConfigError) as short:
        parse_settings({"api": {"api_keys": [{"sha256": "abc", "role": "read"}]}})
    assert "api.api_keys[0].sha256" in "\n".join(short.value.lines)
    with pytest.raises(ConfigError) as role:
        parse_settings({"api": {"api_keys": [{"sha256": "a" * 64, "role": "root"}]}})
    assert "role" in "\n".join(role.value.lines)
    ok = parse_settings({"api": {"api_keys": [{"sha256": "a" * 64}]}})
    assert ok.api.api_keys[0].role == "read"


def test_guard_knows_this_machine_by_name() -> None:
    from tagd.api.guard import _local_host

    for host in ("127.0.0.1:8765", "127.0.0.1", "[::1]:8765", "localhost:80", "localhost"):
        assert _local_host(host), host
    for host in ("evil.example", "evil.example:8765", "192.168.1.5:8765", "[2001:db8::1]:80", ""):
        assert not _local_host(host), host


def test_sign_in_cookie_names_the_key_hash_and_resists_tampering(tmp_path) -> None:
    from tagd.ui.session import secret, sign, verify

    key = secret(tmp_path)
    assert secret(tmp_path) == key  # made once, then read
    assert (tmp_path / "ui-secret").stat().st_mode & 0o777 == 0o600
    digest = key_sha256("a key")
    cookie = sign(key, digest)
    assert verify(key, cookie) == digest and "a key" not in cookie
    assert verify(key, cookie[:-1] + ("0" if cookie[-1] != "0" else "1")) is None
    assert verify(key, key_sha256("other") + cookie[64:]) is None
    assert verify(b"another secret", cookie) is None
    assert verify(key, None) is None and verify(key, "garbage") is None


def test_user_verdicts_win_over_thresholds() -> None:
    from tagd.policy.apply import with_verdicts
    from tagd.records import Tag

    derived = [Tag("AI|Objects|dog", 0.8, "objects"), Tag("AI|Objects|cat", 0.6, "objects")]
    verdicts = {
        "AI|Objects|cat": ("reject", 0.6),
        "AI|Objects|boat": ("accept", 0.52),  # fell below its threshold since
        "AI|Objects|dog": ("accept", 0.8),
    }
    assert with_verdicts(derived, verdicts, "objects") == [
        Tag("AI|Objects|dog", 0.8, "objects"),
        Tag("AI|Objects|boat", 0.52, "objects"),
    ]
    assert with_verdicts(derived, {}, "objects") == derived
