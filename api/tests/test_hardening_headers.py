"""Response headers and deployment settings: CSP without inline script, TLS settings
from the environment, the docs page behind login."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

TEMPLATES_DIR = Path(settings.BASE_DIR) / "templates"
# A <script> element that is code (not src=, not a json_script data block).
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
EVENT_HANDLER_ATTRIBUTE = re.compile(r"\son[a-z]+\s*=", re.I)
JAVASCRIPT_URL = re.compile(r"(href|src|action)\s*=\s*[\"']?\s*javascript:", re.I)


def _templates() -> list[Path]:
    found = sorted(TEMPLATES_DIR.rglob("*.html"))
    for app_dir in Path(settings.BASE_DIR).glob("*/templates"):
        found += sorted(app_dir.rglob("*.html"))
    assert found
    return found


def _name(template: Path) -> str:
    return str(template.relative_to(settings.BASE_DIR))


@pytest.mark.parametrize("template", _templates(), ids=_name)
def test_no_template_holds_inline_script(template):
    text = template.read_text()
    assert not INLINE_SCRIPT.search(text), "move the script to static/js/"
    assert not EVENT_HANDLER_ATTRIBUTE.search(text), "use an addEventListener in static/js/"
    assert not JAVASCRIPT_URL.search(text)


@pytest.mark.django_db
def test_pages_carry_a_content_security_policy_without_inline_script(client, marketer_client):
    for response in (client.get("/accounts/login/"), marketer_client.get("/people/")):
        assert response.status_code == 200
        policy = response["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
        assert directives["script-src"] == "'self'"
        assert "unsafe" not in directives["style-src"]
        assert directives["object-src"] == "'none'"
        assert directives["frame-ancestors"] == "'none'"


@pytest.mark.django_db
def test_docs_page_needs_login_and_the_schema_stays_public(client, outsider_client):
    response = client.get("/api/docs/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
    assert outsider_client.get("/api/docs/").status_code == 200
    assert client.get("/api/openapi.json").status_code == 200


TLS_ENVIRONMENT = {
    "SECURE_SSL_REDIRECT": "true",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO=https",
}
TLS_WARNINGS = ("security.W004", "security.W008", "security.W012", "security.W016")


def _check_deploy(extra: dict[str, str]) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in TLS_ENVIRONMENT}
    environment.update(extra, DEBUG="false")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=settings.BASE_DIR, env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return result.stdout + result.stderr


def test_tls_settings_from_the_environment_satisfy_check_deploy():
    plain = _check_deploy({})
    assert all(code in plain for code in TLS_WARNINGS)  # the check does see a plain-HTTP setup
    behind_tls = _check_deploy(TLS_ENVIRONMENT)
    assert not [code for code in TLS_WARNINGS if code in behind_tls], behind_tls
    assert "Traceback" not in behind_tls


def test_proxy_header_setting_is_parsed_from_the_environment():
    script = "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)"
    environment = {**os.environ, "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO=https"}
    output = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {script}"],
        cwd=settings.BASE_DIR, env={**environment, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    assert "('HTTP_X_FORWARDED_PROTO', 'https')" in output


@pytest.mark.django_db
def test_docs_page_renders_code_spans_and_a_curl_example_per_endpoint(outsider_client):
    html = outsider_client.get("/api/docs/").content.decode()
    assert "`" not in html.split("<h2>Endpoints</h2>")[1].split('id="authentication"')[0]
    assert "with <code>identity</code>" in html
    assert html.count("curl -") >= 10
    assert "curl -X POST &quot;$BASE_URL/1/upload&quot;" in html
    assert "--data-urlencode &#x27;query=" in html
