import json

import pytest
from django.core.management import CommandError, call_command

from conftest import test_database_url
from profiles.tests.factories import ProfileFactory
from segments.models import Segment

pytestmark = pytest.mark.django_db


def test_prints_the_count(capsys):
    ProfileFactory(custom={"ct_is_test_user": "Yes"})
    ProfileFactory()
    call_command("segment_count", json.dumps({"system": "test_profile", "op": "is_true"}))
    assert capsys.readouterr().out.strip() == "1"


def test_saved_segment_by_name(capsys):
    ProfileFactory.create_batch(2)
    call_command("segment_count", "--segment", "All Users")
    assert capsys.readouterr().out.strip() == "2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (['{"any": []}'], '$.any: an "any" group needs at least one condition'),
        (["{not json"], "not valid JSON"),
        (["--segment", "Nope"], "No segment named"),
        ([], "either a definition"),
    ],
)
def test_invalid_input_fails_with_the_reason(args, message):
    with pytest.raises(CommandError) as error:
        call_command("segment_count", *args)
    assert message in str(error.value)


def test_exit_status_and_stderr(tmp_path):
    """Through a real process: non-zero exit, the reason on stderr."""
    import os
    import subprocess
    import sys

    from django.conf import settings

    Segment.objects.all()  # the test database exists
    env = {**os.environ, "DATABASE_URL": test_database_url()}
    result = subprocess.run(
        [sys.executable, "manage.py", "segment_count", '{"system": "age", "op": "older"}'],
        capture_output=True, text=True, env=env, cwd=settings.BASE_DIR, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert '$.op: "older" is not an operator for age' in result.stderr
    assert result.stdout == ""
