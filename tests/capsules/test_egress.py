"""Network allow-lists in the bwrap tier: the capsule keeps its own network namespace and
reaches the listed host:port pairs, and nothing else, through the gateway's egress proxy.
Real bubblewrap, a real HTTP server on the host's loopback, no mocks."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from somaagent.capsules.egress import _BadRequest, _parse
from somaagent.capsules.hosted import HostServices
from somaagent.capsules.netguard import endpoint_allowed
from somaagent.capsules.package import from_folder
from somaagent.capsules.service import CapsuleService, SandboxPolicy
from somaagent.errors import PermissionDeniedError
from tests.capsules.conftest import SANDBOX_ROOT

pytestmark = pytest.mark.anyio

TOOLS = """
import http.client
import os
import socket
import urllib.request


def fetch(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return {"status": response.status, "text": response.read().decode()}


def quiet_fetch(url):
    try:
        return fetch(url)
    except Exception:
        raise RuntimeError("the fetch failed") from None


def tunnel(host, port, path="/"):
    # What an HTTPS client does (CONNECT), over plain HTTP so the test needs no TLS server.
    proxy = os.environ["HTTPS_PROXY"].rsplit("/", 1)[-1]
    proxy_host, proxy_port = proxy.split(":")
    connection = http.client.HTTPConnection(proxy_host, int(proxy_port), timeout=5)
    connection.set_tunnel(host, port)
    connection.request("GET", path)
    response = connection.getresponse()
    return {"status": response.status, "text": response.read().decode()}


def connect(host, port):
    socket.create_connection((host, port), timeout=3).close()
    return "connected"


def resolve(host):
    return socket.getaddrinfo(host, 80)[0][4][0]


def size(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return {"status": response.status, "bytes": len(response.read())}


def quiet_size(url):
    try:
        return size(url)
    except Exception as exc:  # a capsule that hides the cut: the call still fails
        return {"status": 0, "bytes": -1, "hidden": type(exc).__name__}


def post(url, kib):
    request = urllib.request.Request(url, data=b"u" * (kib * 1024), method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return {"status": response.status, "bytes": len(response.read())}
"""


class _Handler(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(f"{self.path} host={self.headers.get('Host')}")
        if self.path.startswith("/big/"):  # /big/<KiB>: that many KiB, in 64 KiB writes
            kib = int(self.path.removeprefix("/big/"))
            self.send_response(200)
            self.send_header("Content-Length", str(kib * 1024))
            self.end_headers()
            try:
                for _ in range(0, kib, 64):
                    self.wfile.write(b"x" * 1024 * min(64, kib))
            except OSError:  # the proxy cut the connection at the cap
                pass
            return
        body = f"hello {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        try:
            got = len(self.rfile.read(length))
        except OSError:
            return
        self.seen.append(f"POST {self.path} {got}")
        body = str(got).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[int, list[str]]]:
    """A real HTTP server on the host's loopback: ``(port, requests it saw)``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], _Handler.seen
    server.shutdown()
    server.server_close()


def _capsule(folder: Path, hosts: list[str], extra: str = "") -> Path:
    folder.mkdir()
    (folder / "tools.py").write_text(TOOLS)
    tool = "input_schema: {type: object, properties: {%s}}"
    (folder / "capsule.yaml").write_text(
        "name: netcap\nversion: 1.0.0\nkind: python\nentry: tools.py\ntools:\n"
        f"  - name: fetch\n    {tool % 'url: {type: string}'}\n"
        f"  - name: quiet_fetch\n    {tool % 'url: {type: string}'}\n"
        f"  - name: tunnel\n    {tool % 'host: {type: string}, port: {type: integer}'}\n"
        f"  - name: connect\n    {tool % 'host: {type: string}, port: {type: integer}'}\n"
        f"  - name: resolve\n    {tool % 'host: {type: string}'}\n"
        f"  - name: size\n    {tool % 'url: {type: string}'}\n"
        f"  - name: quiet_size\n    {tool % 'url: {type: string}'}\n"
        f"  - name: post\n    {tool % 'url: {type: string}, kib: {type: integer}'}\n"
        f"permissions: {{network: [{', '.join(hosts)}], timeout_s: 8{extra}}}\n"
    )
    return folder


def _bwrap(service: CapsuleService) -> None:
    if service.tier != "bwrap":
        pytest.skip("bubblewrap does not work here (the landlock tier refuses allow-lists)")


async def test_an_allowed_host_is_reached_through_the_proxy_only(
    service: CapsuleService, tmp_path: Path, http_server: tuple[int, list[str]]
) -> None:
    _bwrap(service)
    port, seen = http_server
    allowing = CapsuleService(
        service.sessions,
        SandboxPolicy(root=SANDBOX_ROOT),
        HostServices(allow_private_networks=True),
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    hosts = [f"127.0.0.1:{port}", f"127.0.0.1:{closed}"]
    await allowing.install_package("acme", from_folder(_capsule(tmp_path / "c", hosts)))

    fetched = await allowing.execute(
        "acme", "netcap", tool="fetch", arguments={"url": f"http://127.0.0.1:{port}/plain?q=1"}
    )
    assert not fetched.is_error, fetched.error
    assert fetched.structured == {"status": 200, "text": "hello /plain?q=1"}
    assert fetched.sandbox_tier == "bwrap"
    tunnelled = await allowing.execute(
        "acme", "netcap", tool="tunnel", arguments={"host": "127.0.0.1", "port": port}
    )
    assert not tunnelled.is_error, tunnelled.error
    assert tunnelled.structured == {"status": 200, "text": "hello /"}
    assert seen == [f"/plain?q=1 host=127.0.0.1:{port}", f"/ host=127.0.0.1:{port}"]

    # Not on the list: another address, another port. Refused by the proxy, with the reason.
    for url in (f"http://127.0.0.2:{port}/", f"http://127.0.0.1:{port + 1}/"):
        refused = await allowing.execute("acme", "netcap", tool="fetch", arguments={"url": url})
        assert refused.is_error
        assert "not on the capsule's network allow-list" in (refused.error or ""), refused.error
    tunnel = await allowing.execute(
        "acme", "netcap", tool="tunnel", arguments={"host": "example.com", "port": 443}
    )
    assert tunnel.is_error and "example.com:443 is not on the capsule's" in (tunnel.error or "")
    nobody = await allowing.execute(
        "acme", "netcap", tool="fetch", arguments={"url": f"http://127.0.0.1:{closed}/"}
    )
    assert nobody.is_error and "502" in (nobody.error or "")
    assert f"cannot connect to 127.0.0.1:{closed}" in (nobody.error or ""), nobody.error
    quiet = await allowing.execute(
        "acme", "netcap", tool="quiet_fetch", arguments={"url": "http://10.1.2.3/"}
    )
    assert quiet.is_error and (quiet.error or "").startswith("RuntimeError: the fetch failed")
    assert "the egress proxy refused: 10.1.2.3:80 is not on the capsule's" in (quiet.error or "")
    assert len(seen) == 2

    # Around the proxy: the sandbox's 127.0.0.1 is its own loopback, and there is no route out.
    direct = await allowing.execute(
        "acme", "netcap", tool="connect", arguments={"host": "127.0.0.1", "port": port}
    )
    assert direct.is_error and "refused" in (direct.error or "").lower(), direct.error
    outside = await allowing.execute(
        "acme", "netcap", tool="connect", arguments={"host": "1.1.1.1", "port": 80}
    )
    assert outside.is_error and "unreachable" in (outside.error or "").lower(), outside.error
    named = await allowing.execute(
        "acme", "netcap", tool="resolve", arguments={"host": "example.com"}
    )
    assert named.is_error  # no resolver inside: names are the proxy's to resolve
    assert len(seen) == 2


async def test_names_resolving_to_private_addresses_need_the_operators_allowance(
    service: CapsuleService, tmp_path: Path, http_server: tuple[int, list[str]]
) -> None:
    _bwrap(service)
    port, seen = http_server
    await service.install_package(
        "acme", from_folder(_capsule(tmp_path / "c", [f"localhost:{port}", f"127.0.0.1:{port}"]))
    )
    for url in (f"http://localhost:{port}/", f"http://127.0.0.1:{port}/"):
        refused = await service.execute("acme", "netcap", tool="fetch", arguments={"url": url})
        assert refused.is_error
        assert "private address" in (refused.error or ""), refused.error
        assert "SOMA_CAPSULES_ALLOW_PRIVATE_NETWORKS" in (refused.error or "")
    assert seen == []
    allowing = CapsuleService(
        service.sessions,
        SandboxPolicy(root=SANDBOX_ROOT),
        HostServices(allow_private_networks=True),
    )
    ok = await allowing.execute(
        "acme", "netcap", tool="fetch", arguments={"url": f"http://localhost:{port}/x"}
    )
    assert not ok.is_error, ok.error
    assert ok.structured == {"status": 200, "text": "hello /x"}


async def test_traffic_over_the_byte_cap_is_cut_and_the_call_fails_saying_why(
    service: CapsuleService, tmp_path: Path, http_server: tuple[int, list[str]]
) -> None:
    _bwrap(service)
    port, seen = http_server
    allowing = CapsuleService(
        service.sessions,
        SandboxPolicy(root=SANDBOX_ROOT),
        HostServices(allow_private_networks=True),
    )
    folder = _capsule(tmp_path / "c", [f"127.0.0.1:{port}"], extra=", egress_mb: 1")
    await allowing.install_package("acme", from_folder(folder))
    base = f"http://127.0.0.1:{port}"

    under = await allowing.execute(
        "acme", "netcap", tool="size", arguments={"url": f"{base}/big/512"}
    )
    assert not under.is_error, under.error
    assert under.structured == {"status": 200, "bytes": 512 * 1024}
    up = await allowing.execute(
        "acme", "netcap", tool="post", arguments={"url": f"{base}/up", "kib": 256}
    )
    assert not up.is_error and up.structured == {"status": 200, "bytes": 6}, up.error

    over = await allowing.execute(
        "acme", "netcap", tool="size", arguments={"url": f"{base}/big/3072"}
    )
    assert over.is_error and over.sandbox_tier == "bwrap"
    assert "went over its 1 MiB cap (permissions.egress_mb" in (over.error or ""), over.error
    assert over.duration_ms < 8000  # cut, not left to the timeout
    # A capsule that swallows the cut and answers normally still fails, with the reason.
    hidden = await allowing.execute(
        "acme", "netcap", tool="quiet_size", arguments={"url": f"{base}/big/3072"}
    )
    assert hidden.is_error and hidden.structured is None
    assert "went over its 1 MiB cap" in (hidden.error or ""), hidden.error
    # Towards the host counts too: a 2 MiB request body is cut before the server has it all.
    sent = await allowing.execute(
        "acme", "netcap", tool="post", arguments={"url": f"{base}/up", "kib": 2048}
    )
    assert sent.is_error and "went over its 1 MiB cap" in (sent.error or ""), sent.error
    assert f"POST /up {2048 * 1024}" not in seen and f"POST /up {256 * 1024}" in seen

    # Without egress_mb in the manifest, the operator's cap applies.
    strict = CapsuleService(
        service.sessions,
        SandboxPolicy(root=SANDBOX_ROOT, egress_mb=1),
        HostServices(allow_private_networks=True),
    )
    plain = _capsule(tmp_path / "d", [f"127.0.0.1:{port}"])
    await strict.install_package("globex", from_folder(plain))
    capped = await strict.execute(
        "globex", "netcap", tool="size", arguments={"url": f"{base}/big/2048"}
    )
    assert capped.is_error and "went over its 1 MiB cap" in (capped.error or ""), capped.error
    fine = await allowing.execute(
        "globex", "netcap", tool="size", arguments={"url": f"{base}/big/2048"}
    )
    assert not fine.is_error and fine.structured == {"status": 200, "bytes": 2048 * 1024}


def test_an_unset_byte_cap_leaves_content_hashes_as_they_were(tmp_path: Path) -> None:
    from somaagent.capsules.catalog import catalog_package
    from somaagent.capsules.package import content_sha256

    # The calculator's content hash before permissions.egress_mb existed (installed versions
    # and published pins stay valid); setting the cap is a change of content.
    calculator = catalog_package("calculator")
    assert calculator is not None
    before = "406d12ec05f3b5778a3f7e3ac57a701507f654413ea60bb5d1667dab0c4ecac3"
    assert calculator.manifest.sha256 == before
    package = from_folder(_capsule(tmp_path / "c", ["example.com"]))
    perms = package.manifest.permissions
    capped = package.manifest.model_copy(
        update={"permissions": perms.model_copy(update={"egress_mb": 5})}
    )
    assert content_sha256(capped, package.files) != content_sha256(package.manifest, package.files)


async def test_the_landlock_tier_still_refuses_allow_lists(
    service: CapsuleService, tmp_path: Path
) -> None:
    await service.install_package("acme", from_folder(_capsule(tmp_path / "c", ["example.com"])))
    landlock = CapsuleService(service.sessions, SandboxPolicy(root=SANDBOX_ROOT, tier="landlock"))
    with pytest.raises(PermissionDeniedError, match="bwrap tier enforces allow-lists"):
        await landlock.execute("acme", "netcap", tool="fetch", arguments={"url": "http://x/"})


def test_allow_list_entries_cover_their_port_or_http_and_https() -> None:
    assert endpoint_allowed("example.com", 443, ["example.com"])
    assert endpoint_allowed("example.com", 80, ["example.com"])
    assert not endpoint_allowed("example.com", 22, ["example.com"])
    assert endpoint_allowed("api.example.com", 8443, ["*.example.com:8443"])
    assert not endpoint_allowed("api.example.com", 443, ["*.example.com:8443"])
    assert not endpoint_allowed("example.com", 8443, ["*.example.com:8443"])
    assert endpoint_allowed("127.0.0.1", 9000, ["127.0.0.1:9000"])


def test_proxy_requests_are_parsed_strictly() -> None:
    method, host, port, forward = _parse(
        b"GET http://user@example.com:8080/a?b HTTP/1.1\r\nHost: example.com\r\n"
        b"Proxy-Authorization: x\r\nConnection: keep-alive\r\n\r\n"
    )
    assert (method, host, port) == (b"GET", "example.com", 8080)
    assert forward == b"GET /a?b HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
    assert _parse(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n")[1:3] == ("example.com", 443)
    for bad in (
        b"GET /relative HTTP/1.1\r\n\r\n",
        b"GET https://example.com/ HTTP/1.1\r\n\r\n",
        b"CONNECT example.com HTTP/1.1\r\n\r\n",
        b"CONNECT example.com:99999 HTTP/1.1\r\n\r\n",
        b"nonsense\r\n\r\n",
    ):
        with pytest.raises(_BadRequest):
            _parse(bad)
