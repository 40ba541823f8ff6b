"""/docs and /redoc work offline: every asset they load is served by the gateway itself."""

from __future__ import annotations

import re
from urllib.parse import urljoin

from fastapi.testclient import TestClient

ASSET = re.compile(
    r"""(?:src|href)\s*=\s*["']([^"']+)["']|(?:url|spec-url)\s*[:=]\s*["']([^"']+)["']"""
)


def test_the_front_page_leads_to_the_docs(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code in (302, 307)
    assert response.headers["location"] == "/docs"


def test_docs_pages_load_nothing_from_another_host(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]
        references = [a or b for a, b in ASSET.findall(response.text)]
        assert references, page
        for reference in references:
            assert "//" not in reference, (page, reference)  # no other host, no CDN
            asset = client.get(urljoin(page, reference))
            assert asset.status_code == 200, (page, reference)
            assert asset.content
        assert not re.search(r"https?://", response.text), page
