import socket
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from service.webhooks.addresses import (
    CheckedTarget,
    Resolve,
    UnsafeTarget,
    allowed_networks,
    check_url,
)

Answer = tuple[Any, Any, Any, Any, tuple[Any, ...]]


def resolver(names: dict[str, list[str]]) -> Resolve:
    """Return a stand-in for getaddrinfo that knows only ``names``."""

    def resolve(host: str, port: int) -> list[Answer]:
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in names[host]
        ]

    return resolve


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/", "must use https"),
        ("http://example.com/hook", "must use https"),
        ("ftp://example.com/hook", "must use https"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://10.0.0.1/", "private"),
        ("https://172.16.5.4/", "private"),
        ("https://192.168.1.1/", "private"),
        ("https://127.0.0.1/", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://[::ffff:10.0.0.1]/", "private"),
        ("https://[::ffff:169.254.169.254]/", "link-local"),
        ("https://100.64.0.1/", "shared"),
        ("https://224.0.0.1/", "multicast"),
        ("https://[ff0e::1]/", "multicast"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://[::]/", "unspecified"),
        ("https://[fe80::1]/", "link-local"),
        ("https://[fd12:3456::1]/", "private"),
        ("https://240.0.0.1/", "reserved"),
        ("https://192.0.2.10/", "not globally routable"),
        ("https://[2001:db8::1]/", "not globally routable"),
        ("https://[2002:7f00:1::]/", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("https://[64:ff9b::a00:1]/", "private"),  # NAT64 wrapping 10.0.0.1
        ("https://user:secret@example.com/", "user name or password"),
        ("https://user@example.com/", "user name or password"),
        ("https://example.com/hook#top", "fragment"),
        ("https:///hook", "no host"),
        ("https://example.com:99999/", "not valid"),
        ("https://example.com:0/", "not valid"),
        ("https://[::1/", "not valid"),
        ("https://[fe80::1%25eth0]/", "zone"),
        ("https://example.com/ho ok", "control characters"),
        ("https://exa\nmple.com/", "control characters"),
    ],
)
def test_production_refuses(url: str, reason: str) -> None:
    with pytest.raises(UnsafeTarget) as refused:
        check_url(url, production=True, resolve=resolver({"example.com": ["93.184.215.14"]}))
    assert reason in refused.value.reason
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0x7f000001", "017700000001"])
def test_odd_spellings_of_loopback_are_refused_as_the_resolver_reads_them(host: str) -> None:
    # The real getaddrinfo reads these as 127.0.0.1 itself (inet_aton), with no DNS query.
    with pytest.raises(UnsafeTarget, match="loopback"):
        check_url(f"https://{host}/", production=True)


def test_a_name_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(UnsafeTarget, match="loopback") as refused:
        check_url(
            "https://evil.example/hook",
            production=True,
            resolve=resolver({"evil.example": ["127.0.0.1"]}),
        )
    # The caller is told the kind of address, not the address its name resolved to.
    assert "127.0.0.1" not in refused.value.reason
    assert refused.value.address == "127.0.0.1"


@pytest.mark.parametrize(
    "answers",
    [["93.184.215.14", "10.1.2.3"], ["10.1.2.3", "93.184.215.14"], ["93.184.215.14", "fd00::1"]],
)
def test_one_private_answer_among_public_ones_is_refused(answers: list[str]) -> None:
    with pytest.raises(UnsafeTarget, match="private"):
        check_url(
            "https://mixed.example/", production=True, resolve=resolver({"mixed.example": answers})
        )


def test_a_name_that_does_not_resolve_is_refused_for_now() -> None:
    with pytest.raises(UnsafeTarget, match="does not resolve") as refused:
        check_url("https://nowhere.example/", production=True, resolve=resolver({}))
    assert refused.value.transient  # a resolver outage: the worker retries
    with pytest.raises(UnsafeTarget) as private:
        check_url("https://10.0.0.1/", production=True, resolve=resolver({}))
    assert not private.value.transient


def test_a_public_name_is_accepted_with_all_its_addresses() -> None:
    answers = ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "93.184.215.14"]
    target = check_url(
        "https://Hooks.Example.org/alertshare/in?agency=42",
        production=True,
        resolve=resolver({"hooks.example.org": answers}),
    )
    assert target == CheckedTarget(
        scheme="https",
        hostname="hooks.example.org",
        port=443,
        path="/alertshare/in?agency=42",
        addresses=(ip_address(answers[0]), ip_address(answers[1])),
    )
    assert target.url == "https://hooks.example.org/alertshare/in?agency=42"


def test_a_public_address_literal_needs_no_resolver() -> None:
    target = check_url("https://93.184.215.14:8443", production=True, resolve=resolver({}))
    assert (target.port, target.path, target.addresses) == (
        8443,
        "/",
        (ip_address("93.184.215.14"),),
    )


def test_an_international_name_is_checked_in_its_ascii_form() -> None:
    target = check_url(
        "https://bücher.example/",
        production=True,
        resolve=resolver({"xn--bcher-kva.example": ["93.184.215.14"]}),
    )
    assert target.hostname == "xn--bcher-kva.example"


def test_a_path_outside_ascii_is_percent_encoded_and_escapes_are_kept() -> None:
    target = check_url("http://127.0.0.1/hé/a%20b?q=ü&r=1", production=False)
    assert target.path == "/h%C3%A9/a%20b?q=%C3%BC&r=1"


def test_development_allows_http_to_loopback() -> None:
    target = check_url("http://127.0.0.1:8099/hook", production=False)
    assert (target.scheme, target.hostname, target.port, target.path) == (
        "http",
        "127.0.0.1",
        8099,
        "/hook",
    )
    assert target.addresses == (ip_address("127.0.0.1"),)


def test_development_still_refuses_other_schemes_and_userinfo() -> None:
    with pytest.raises(UnsafeTarget, match="https or http"):
        check_url("file:///etc/passwd", production=False)
    with pytest.raises(UnsafeTarget, match="user name"):
        check_url("http://me:pw@127.0.0.1/", production=False)


# ALERTSHARE_WEBHOOK_ALLOWED_NETWORKS: networks an operator lets production call.
PSN = allowed_networks("10.20.0.0/16, 2001:db8:5::/48")


@pytest.mark.parametrize(
    "url",
    ["https://10.20.0.7/hook", "https://10.20.255.1:8443/", "https://[2001:db8:5::10]/",
     "https://[::ffff:10.20.0.7]/"],
)  # fmt: skip
def test_production_calls_an_address_in_a_listed_network(url: str) -> None:
    target = check_url(url, production=True, allowed=PSN, resolve=resolver({}))
    assert target.scheme == "https" and len(target.addresses) == 1


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://10.21.0.1/", "private"),  # the next network along
        ("https://192.168.1.1/", "private"),
        ("https://127.0.0.1/", "loopback"),
        ("https://[2001:db8:6::1]/", "not globally routable"),
        ("http://10.20.0.7/", "must use https"),  # a listed network is still https only
    ],
)
def test_production_still_refuses_what_is_not_listed(url: str, reason: str) -> None:
    with pytest.raises(UnsafeTarget, match=reason):
        check_url(url, production=True, allowed=PSN, resolve=resolver({}))


def test_a_name_with_one_answer_outside_the_listed_networks_is_refused() -> None:
    resolve = resolver({"hooks.psn.example": ["10.20.0.7", "10.30.0.7"]})
    with pytest.raises(UnsafeTarget, match="private"):
        check_url("https://hooks.psn.example/", production=True, allowed=PSN, resolve=resolve)
    resolve = resolver({"hooks.psn.example": ["10.20.0.7", "10.20.0.8"]})
    target = check_url("https://hooks.psn.example/", production=True, allowed=PSN, resolve=resolve)
    assert target.addresses == (ip_address("10.20.0.7"), ip_address("10.20.0.8"))


@pytest.mark.parametrize(
    ("networks", "url", "neighbour"),
    [
        ("169.254.0.0/16", "https://169.254.169.254/latest/meta-data/", "https://169.254.10.1/"),
        ("169.254.169.254/32", "https://169.254.169.254/", None),
        ("169.254.0.0/16", "https://[::ffff:169.254.169.254]/", "https://[::ffff:169.254.1.1]/"),
        ("fd00::/8", "https://[fd00:ec2::254]/", "https://[fd00:ec2::1]/"),
    ],
)
def test_the_metadata_address_is_refused_even_when_listed(
    networks: str, url: str, neighbour: str | None
) -> None:
    allowed = allowed_networks(networks)
    with pytest.raises(UnsafeTarget, match="the host resolves to"):
        check_url(url, production=True, allowed=allowed, resolve=resolver({}))
    if neighbour is not None:  # the rest of the listed network is called
        check_url(neighbour, production=True, allowed=allowed, resolve=resolver({}))


def test_a_name_resolving_to_the_metadata_address_is_refused_even_when_listed() -> None:
    resolve = resolver({"metadata.internal": ["169.254.169.254"]})
    with pytest.raises(UnsafeTarget, match="link-local"):
        check_url(
            "https://metadata.internal/", production=True,
            allowed=allowed_networks("169.254.0.0/16"), resolve=resolve,
        )  # fmt: skip


def test_by_default_no_network_is_listed_and_private_addresses_are_refused_as_before() -> None:
    assert allowed_networks("") == ()
    assert allowed_networks(" , ") == ()
    for url in ("https://127.0.0.1/", "https://10.20.0.7/"):
        with pytest.raises(UnsafeTarget, match="loopback|private"):
            check_url(url, production=True, allowed=allowed_networks(""), resolve=resolver({}))


def test_listed_networks_are_read_from_comma_separated_cidrs() -> None:
    assert allowed_networks("127.0.0.0/8,10.20.0.0/16 , 2001:db8:5::/48,10.9.8.7") == (
        ip_network("127.0.0.0/8"), ip_network("10.20.0.0/16"), ip_network("2001:db8:5::/48"),
        ip_network("10.9.8.7/32"),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.20.0.1/16", "not a network in CIDR notation"),  # host bits set: a slip, surely
        ("psn", "not a network in CIDR notation"),
        ("10.20.0.0/33", "not a network in CIDR notation"),
        ("0.0.0.0/0", "every address"),
        ("::/0", "every address"),
    ],
)
def test_a_bad_network_is_refused_naming_it(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        allowed_networks(f"10.0.0.0/8,{value}")
    assert value in str(refused.value)
