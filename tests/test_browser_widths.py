"""Every page at 1366, 800 and 390 px in a real Chromium: the page never scrolls
sideways and no text is squeezed into a sliver a few characters wide.

The pages come from the URL conf, so a new page is opened without anyone adding
it here: each route's parameters are filled from the fixtures below (a route
with a parameter nobody can fill fails the test, asking for a fixture). Routes
that answer a GET with something other than an HTML page (POST-only actions,
files, JSON, htmx fragments) are recognised by their answer and skipped.
Django's own admin and the REST API (`/1/…`, `/a`) are not dashboard pages.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from conftest import browser_login
from imports.tests.csv_fixtures import use_temporary_media
from profiles.tests.factories import EventFactory, IdentifierFactory, ProfileFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = (1366, 800, 390)
MIN_CHARS = 4  # narrowest a text box may be, in widths of its font's "0"
SKIPPED_NAMESPACES = ("admin", "api")
PAGES_OUTSIDE_SKIPPED = {"api:docs"}  # the API's docs page is a dashboard page

# Long, unbroken values: what makes cells and definition lists burst.
LONG_WORD = "Supercalifragilisticexpialidocious" * 3
LONG_URL = "https://cdn.example.com/" + "/".join(f"segment-{n}" for n in range(14)) + "/a.png"


@dataclass
class Route:
    name: str
    route: str
    params: list[str]


def _routes() -> list[Route]:
    routes: list[Route] = []

    def walk(patterns, prefix: str, namespace: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = ":".join(filter(None, [namespace, pattern.namespace or ""]))
                walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
            elif isinstance(pattern, URLPattern) and pattern.name:
                name = f"{namespace}:{pattern.name}" if namespace else pattern.name
                params = list(pattern.pattern.regex.groupindex)
                routes.append(Route(name, prefix + str(pattern.pattern), params))

    walk(get_resolver().url_patterns, "", "")
    return [
        route
        for route in routes
        if route.name in PAGES_OUTSIDE_SKIPPED or route.name.split(":")[0] not in SKIPPED_NAMESPACES
    ]


# Pages only the person who made the thing (and a superuser) may open.
OWNER_ONLY = {"profiles:export_progress", "profiles:export_download"}


def _content(superuser, tmp_path) -> dict[str, dict[str, object]]:
    """Real content for every page; returns the parameter values by route-name prefix."""
    from api.credentials import api_credential_create
    from campaigns.models import Campaign, CampaignRun
    from imports.models import SftpFile, SftpRun, SftpSource
    from imports.services import import_run_create, import_run_execute
    from imports.sftp.services import sftp_source_save
    from profiles.models import EventName, PeopleExport, PropertyDefinition
    from segments.models import Segment, SegmentExport

    # A profile with many properties, long values and a busy timeline.
    custom: dict[str, Any] = {f"Favourite thing number {n}": f"{LONG_WORD} {n}" for n in range(25)}
    custom |= {"Avatar URL": LONG_URL, "Score": 42.5, "Interests": ["a" * 60, "b" * 60, "c"]}
    for name, value in custom.items():
        type_ = "number" if isinstance(value, float) else "list" if isinstance(value, list) else (
            "string")  # fmt: skip
        PropertyDefinition.objects.get_or_create(scope="profile", name=name, type=type_)
    person: Any = ProfileFactory(name="Maximiliana " + LONG_WORD, email=f"{'m' * 50}@example.com",
                            phone="+14155550100", photo=LONG_URL, custom=custom)  # fmt: skip
    IdentifierFactory(profile=person, kind="identity", value="user-" + "9" * 60)
    IdentifierFactory(profile=person, kind="email", value=person.email)
    EventName.objects.get_or_create(name="Charged")
    now = timezone.now()
    for n in range(30):
        EventFactory(profile=person, name="Charged", ts=now - dt.timedelta(hours=n),
                     properties={"Amount": n, "Note": LONG_WORD, "Link": LONG_URL})  # fmt: skip
    for n in range(30):
        ProfileFactory(name=f"Person {n}", email=f"p{n}@example.com")

    segment = Segment.objects.create(
        name="Repeat buyers " + LONG_WORD[:60], updated_by=superuser, last_count=1,
        counted_at=now,
        definition={"all": [{"event": "Charged", "op": "did", "count": {"op": ">=", "value": 2},
                             "within_days": 30}, {"system": "age", "op": "between",
                             "value": [25, 30]}]},
    )  # fmt: skip
    export = SegmentExport.objects.create(segment=segment, definition=segment.definition,
                                          properties=["Name"], status="done", rows_total=1,
                                          rows_done=1)  # fmt: skip
    export.file.save("export.csv", ContentFile(b"ct_id,identities\n"), save=True)

    # An import with a wide mapping (waiting for it) and a finished one with rejections.
    header = ["identity"] + [f"A rather long column name number {n}" for n in range(16)]
    rows = [["u1"] + [LONG_WORD] * 16, ["u2"] + ["x"] * 16, [""] + ["y"] * 16]
    wide = "\n".join(",".join(row) for row in [header, *rows]) + "\n"
    pending = import_run_create(kind="profiles", file_name=f"wide-{LONG_WORD}.csv",
                                content=wide.encode(), uploaded_by=superuser)  # fmt: skip
    finished = import_run_create(kind="profiles", file_name="wide-done.csv", content=wide.encode(),
                                 uploaded_by=superuser)  # fmt: skip
    finished = import_run_execute(import_run_id=finished.pk)

    # An SFTP source with runs and files (no server is contacted by its pages).
    source = sftp_source_save(
        source=SftpSource(name="Acme nightly drop", host="sftp." + "very-long-host-" * 4 + "com",
                          username="feeds", remote_dir="/incoming/" + "deeply/nested/" * 5,
                          host_key_fingerprint="SHA256:" + "A" * 43, every_minutes=15),
        password="secret", private_key="",
    )  # fmt: skip
    poll = SftpRun.objects.create(source=source, status="done", files_seen=2, files_imported=1,
                                  files_failed=1)  # fmt: skip
    for n, status in enumerate(("imported", "failed")):
        SftpFile.objects.create(
            source=source, path=f"{source.remote_dir}customers-{LONG_WORD}-{n}.csv", size=12345,
            mtime=n, run=poll, status=status, import_run=finished,
            error="" if status == "imported" else "Value of 'Score' is not a number " + LONG_WORD,
            moved_to=f"{source.remote_dir}processed/customers-{n}.csv",
        )  # fmt: skip

    campaign = Campaign.objects.create(
        name="Spring sale " + LONG_WORD[:50], segment=segment,
        subject="Hi {{ Profile.Name }} " + LONG_WORD, body="Spring is here. " + LONG_URL,
    )  # fmt: skip
    campaign_run = CampaignRun.objects.create(campaign=campaign, kind="send", status="done",
                                              total=1, processed=1)  # fmt: skip
    credential, _ = api_credential_create(name="Website " + LONG_WORD[:40], created_by=superuser)
    people_export = PeopleExport.objects.create(filters={"q": LONG_WORD}, status="done",
                                                rows_total=1, rows_done=1,
                                                created_by=superuser)  # fmt: skip
    people_export.file.save("people.csv", ContentFile(b"ct_id,identities\n"), save=True)

    return {
        "profiles:export": {"pk": people_export.pk},
        "profiles": {"ct_id": person.ct_id},
        "segments:export": {"pk": export.pk},
        "segments": {"pk": segment.pk},
        "imports:mapping": {"pk": pending.pk},
        "imports:sftp": {"pk": source.pk},
        "imports": {"pk": finished.pk},
        # A provider's status callback, not a page (403 without Twilio's signature).
        "campaigns:twilio_status": {"pk": 0},
        "campaigns:run": {"pk": campaign_run.pk},
        "campaigns:stop": {"pk": campaign_run.pk},
        "campaigns": {"pk": campaign.pk},
        "settings": {"account_id": credential.account_id},
    }


def _url(route: Route, values: dict[str, dict[str, object]]) -> str:
    kwargs = {}
    for param in route.params:
        # The longest prefix of the route's name with a value for this parameter.
        prefixes = sorted((p for p in values if route.name.startswith(p)), key=len, reverse=True)
        found = [values[p][param] for p in prefixes if param in values[p]]
        assert found, f"no fixture fills <{param}> of {route.name} ({route.route}): add one"
        kwargs[param] = found[0]
    return reverse(route.name, kwargs=kwargs)


def _html_pages(client: Client, routes: list[Route], values) -> list[str]:
    """The routes that answer GET with a whole HTML page (others are actions, files,
    JSON or fragments)."""
    pages = []
    for route in routes:
        url = _url(route, values)
        response = client.get(url)
        if response.status_code in (302, 403, 405) or response.streaming:
            continue
        if response.status_code == 404 and route.name in OWNER_ONLY:
            continue  # somebody else's: not theirs to know of (the superuser sees it)
        assert response.status_code == 200, f"{url} answered {response.status_code}"
        body = response.content.decode(errors="replace")
        if response["Content-Type"].startswith("text/html") and "<html" in body[:500]:
            pages.append(url)
    return pages


# Every rendered element with text of its own: its width against its longest word
# (capped at MIN_CHARS of its font's "0").
MEASURE = """(minChars) => {
  const canvas = document.createElement("canvas").getContext("2d");
  const problems = [];
  for (const node of document.body.querySelectorAll("*")) {
    const skipped = ["SCRIPT", "STYLE", "OPTION", "DATALIST", "TEMPLATE", "NOSCRIPT"];
    if (skipped.includes(node.tagName)) continue;
    const text = [...node.childNodes].filter((c) => c.nodeType === 3)
      .map((c) => c.textContent).join("").trim();
    if (!text) continue;
    const box = node.getBoundingClientRect();
    const style = getComputedStyle(node);
    if (box.width === 0 && box.height === 0) continue;  // not rendered
    if (style.visibility === "hidden") continue;
    canvas.font = style.font;
    // Wrapping between words is fine; a box narrower than its longest word (or than
    // minChars, for long words) breaks words apart.
    const longest = Math.max(...text.split(/\\s+/).map((word) => canvas.measureText(word).width));
    const needed = Math.min(longest, minChars * canvas.measureText("0").width);
    if (box.width + 1 < needed) {
      const what = `${node.tagName.toLowerCase()}.${node.className} "${text.slice(0, 40)}"`;
      problems.push(`${what}: ${Math.round(box.width)}px < ${Math.round(needed)}px`);
    }
  }
  return problems;
}"""


# The outermost elements reaching past the right edge: what to fix when the page overflows.
CULPRITS = """() => {
  const edge = window.innerWidth + 1;
  const classes = (n) => typeof n.className === "string" && n.className.trim()
    ? "." + n.className.trim().split(/\\s+/).join(".") : "";
  const name = (n) => n.tagName.toLowerCase() + (n.id ? "#" + n.id : "") + classes(n);
  const past = (n) => n.getBoundingClientRect().right > edge;
  const found = [];
  for (const node of document.body.querySelectorAll("*")) {
    const parent = node.parentElement;
    if (past(node) && parent && (!past(parent) || parent === document.body)) {
      const right = Math.round(node.getBoundingClientRect().right);
      found.push(`${name(parent)} > ${name(node)} (right edge ${right}px)`);
    }
  }
  return found.slice(0, 4);
}"""


# Boxes that scroll sideways must show it: the edge shadow of app.css.
UNCUED_SCROLLERS = """() => {
  const found = [];
  for (const node of document.body.querySelectorAll("*")) {
    const style = getComputedStyle(node);
    if (!["auto", "scroll"].includes(style.overflowX)) continue;
    if (node.scrollWidth <= node.clientWidth + 1) continue;  // nothing hidden
    if (!style.backgroundImage.includes("gradient")) {
      found.push(node.tagName.toLowerCase() + "." + node.className);
    }
  }
  return found;
}"""


def _check(page, url: str, widths: tuple[int, ...]) -> list[str]:
    """Open `url` once and measure it at each width (narrowing the window re-lays the
    page out, as it does for a person resizing it; a reload per width doubled the run)."""
    page.goto(url)
    page.wait_for_load_state("networkidle")  # htmx fragments (counts, reach) are in
    problems = []
    for width in widths:
        page.set_viewport_size({"width": width, "height": 900})
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 0:
            culprits = "; ".join(page.evaluate(CULPRITS))
            problems.append(
                f"{url} @ {width}px: the page scrolls sideways by {overflow}px: {culprits}"
            )
        problems += [f"{url} @ {width}px: {p}" for p in page.evaluate(MEASURE, MIN_CHARS)]
        problems += [
            f"{url} @ {width}px: {box} scrolls sideways with no cue"
            for box in page.evaluate(UNCUED_SCROLLERS)
        ]
    return problems


@pytest.fixture
def content(superuser, tmp_path, settings):
    from profiles.roles import role_groups_ensure

    role_groups_ensure()
    use_temporary_media(settings, tmp_path)
    return _content(superuser, tmp_path)


def test_every_page_fits_every_width(page, superuser, content):
    client = Client()
    client.force_login(superuser)
    routes = _routes()
    pages = _html_pages(client, routes, content)
    assert len(pages) >= 20, pages  # the URL conf was read, the fixtures gave content
    browser_login(page, "root")
    problems = []
    for url in pages:
        problems += _check(page, url, WIDTHS)
    # The login page, as a visitor sees it.
    page.context.clear_cookies()
    problems += _check(page, reverse("login"), WIDTHS)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("persona", ["marketer", "admin_user", "importer"])
def test_every_page_of_each_persona_fits(request, page, content, persona):
    """Navigation and buttons differ by group: each persona's own pages, narrow."""
    user = request.getfixturevalue(persona)
    client = Client()
    client.force_login(user)
    pages = _html_pages(client, _routes(), content)
    assert pages, f"{persona} may open no page"
    browser_login(page, user.username)
    problems = []
    for url in pages:
        problems += _check(page, url, (800, 390))
    assert not problems, "\n".join(problems)


def test_profile_properties_card_takes_the_width_at_800(page, superuser, content):
    """The issue's case: at 800 px the Properties card was ~260 px, values one letter a line."""
    browser_login(page, "root")
    page.set_viewport_size({"width": 800, "height": 900})
    page.goto(reverse("profiles:detail", args=[content["profiles"]["ct_id"]]))
    card = page.locator("section[aria-labelledby=properties-title]").bounding_box()
    main = page.locator("main").bounding_box()
    assert card is not None and main is not None
    assert card["width"] > 0.8 * main["width"]
    value = page.locator("section[aria-labelledby=properties-title] dd").first.bounding_box()
    assert value is not None and value["width"] > 300
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 6000, height


def test_wide_tables_scroll_inside_their_card_with_a_cue(page, superuser, content):
    browser_login(page, "root")
    page.set_viewport_size({"width": 390, "height": 900})
    page.goto(reverse("imports:sftp:detail", args=[content["imports:sftp"]["pk"]]))
    files = page.locator(".table-scroll:has(table.sftp-files)")
    sizes = files.evaluate("n => [n.scrollWidth, n.clientWidth]")
    assert sizes[0] > sizes[1]  # it scrolls, inside the page
    assert "gradient" in files.evaluate("n => getComputedStyle(n).backgroundImage")
    page.goto(reverse("imports:mapping", args=[content["imports:mapping"]["pk"]]))
    columns = page.locator(".mapping-column")
    first, second = columns.nth(0).bounding_box(), columns.nth(1).bounding_box()
    assert first is not None and second is not None
    assert second["y"] > first["y"] and abs(second["x"] - first["x"]) < 2  # a vertical list
