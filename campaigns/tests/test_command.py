import csv
import io
import json

import pytest
from django.core.management import CommandError, call_command

from profiles.tests.factories import ProfileFactory
from segments.models import Segment

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command("campaign", *args, stdout=out)
    return out.getvalue()


def test_create_test_send_and_report(smtp_inbox):
    Segment.objects.create(name="Everyone", definition={"all": []})
    ProfileFactory(name="Tess", email="t@example.com", custom={"ct_is_test_user": "Yes"})
    ProfileFactory(name="Cy", email="")
    created = run("create", "--name", "Hello", "--segment", "Everyone",
                  "--subject", "Hi {{ Profile.Name }}", "--body", "Body")  # fmt: skip
    assert "Created campaign" in created
    assert json.loads(run("test", "--name", "Hello")) == {"Sent": 1}
    assert json.loads(run("send", "--name", "Hello")) == {"Sent": 1, "Profile not reachable": 1}
    assert sorted(m["Subject"] for m in smtp_inbox.messages) == ["Hi Tess", "Hi Tess"]
    rows = list(csv.reader(io.StringIO(run("report", "--name", "Hello"))))
    assert rows[0][0] == "Run" and len(rows) == 4  # header, test send, two in the real send


def test_bad_input_is_a_clear_error():
    Segment.objects.create(name="Everyone", definition={"all": []})
    with pytest.raises(CommandError, match="No segment named"):
        run("create", "--name", "X", "--segment", "Nope", "--body", "B")
    with pytest.raises(CommandError, match="line 1: unknown filter"):
        run("create", "--name", "X", "--segment", "Everyone", "--body", "{{ a | nope }}")
    with pytest.raises(CommandError, match="No campaign named"):
        run("send", "--name", "Missing")
