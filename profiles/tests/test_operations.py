"""Property operations and limits, through profile_push against real PostgreSQL."""

import datetime as dt

import pytest

from profiles.models import Profile, PropertyChange, PropertyDefinition, Source
from profiles.properties import MAX_CUSTOM_PROFILE_KEYS, RecordError
from profiles.services import Actor, profile_push

API = Actor(source=Source.API, label="API: test")
pytestmark = pytest.mark.django_db


def push(data: dict, identity: str = "u1") -> Profile:
    profile = profile_push(identifiers={"identity": identity}, profile_data=data, actor=API)
    profile.refresh_from_db()
    return profile


def definition(name: str) -> str:
    return PropertyDefinition.objects.get(scope="profile", name=name).type


def test_set_is_the_default_operation_and_records_the_type_and_history():
    profile = push({"Plan": "Gold", "Score": 3, "VIP": True})
    assert profile.custom == {"Plan": "Gold", "Score": 3, "VIP": True}
    assert (definition("Plan"), definition("Score"), definition("VIP")) == (
        "string",
        "number",
        "boolean",
    )
    profile = push({"Plan": {"$set": "Silver"}})
    assert profile.custom["Plan"] == "Silver"
    change = PropertyChange.objects.filter(property="Plan").latest("pk")
    assert (change.old_value, change.new_value, change.source) == ("Gold", "Silver", "api")
    assert change.actor_label == "API: test"


def test_setting_the_same_value_again_records_no_change():
    push({"Plan": "Silver"})
    push({"Plan": "Gold"})
    push({"Plan": "Gold"})
    assert PropertyChange.objects.filter(property="Plan").count() == 1


def test_add_builds_a_list_of_unique_strings_and_records_list_type():
    push({"Tags": {"$add": ["a", "b"]}})
    profile = push({"Tags": {"$add": ["b", "c", "c"]}})
    # "b" was added again: it moves to the newest end; duplicates collapse.
    assert profile.custom["Tags"] == ["a", "b", "c"]
    assert definition("Tags") == "list"


def test_add_keeps_at_most_100_items_dropping_the_oldest():
    push({"Tags": {"$add": [f"t{i}" for i in range(90)]}})
    profile = push({"Tags": {"$add": [f"n{i}" for i in range(20)]}})
    tags = profile.custom["Tags"]
    assert len(tags) == 100
    assert tags[0] == "t10" and tags[-1] == "n19"
    assert "t0" not in tags


def test_set_with_a_list_overwrites_and_is_also_capped_at_100():
    push({"Tags": {"$add": ["old"]}})
    profile = push({"Tags": {"$set": [f"x{i}" for i in range(150)]}})
    assert profile.custom["Tags"] == [f"x{i}" for i in range(50, 150)]


def test_a_plain_list_value_sets_a_multi_value_property():
    profile = push({"Tags": ["a", "b", "a"]})
    assert profile.custom["Tags"] == ["b", "a"]
    assert definition("Tags") == "list"


def test_remove_takes_items_out_and_an_emptied_list_deletes_the_property():
    push({"Tags": {"$add": ["a", "b"]}})
    profile = push({"Tags": {"$remove": ["a"]}})
    assert profile.custom["Tags"] == ["b"]
    profile = push({"Tags": {"$remove": ["b"]}})
    assert "Tags" not in profile.custom
    change = PropertyChange.objects.filter(property="Tags").latest("pk")
    assert (change.old_value, change.new_value) == (["b"], None)


def test_set_with_an_empty_list_deletes_the_property():
    push({"Tags": {"$add": ["a"]}})
    assert "Tags" not in push({"Tags": {"$set": []}}).custom


def test_add_on_a_scalar_string_converts_it_to_a_list():
    push({"Interest": "golf"})
    assert definition("Interest") == "string"
    profile = push({"Interest": {"$add": ["chess"]}})
    assert profile.custom["Interest"] == ["golf", "chess"]
    assert definition("Interest") == "list"
    # A list property still accepts a single string (it was one before).
    assert push({"Interest": "tennis"}).custom["Interest"] == "tennis"


def test_remove_on_a_scalar_string_converts_it_too():
    push({"Interest": "golf"})
    assert "Interest" not in push({"Interest": {"$remove": ["golf"]}}).custom
    assert definition("Interest") == "list"


def test_list_items_over_512_bytes_are_refused():
    with pytest.raises(RecordError, match="longer than 512 bytes") as error:
        push({"Tags": {"$add": ["é" * 257]}})
    assert error.value.code == 555
    assert not Profile.objects.exists()


def test_incr_and_decr_change_numbers_and_start_from_zero():
    assert push({"Points": {"$incr": 5}}).custom["Points"] == 5
    assert push({"Points": {"$incr": 2.5}}).custom["Points"] == 7.5
    assert push({"Points": {"$decr": 10}}).custom["Points"] == -2.5
    assert definition("Points") == "number"


def test_incr_on_a_string_property_is_refused_not_coerced():
    push({"Plan": "Gold"})
    with pytest.raises(RecordError, match="holds a string; refused a number"):
        push({"Plan": {"$incr": 1}})
    with pytest.raises(RecordError, match="needs a number"):
        push({"Points": {"$incr": "5"}})
    with pytest.raises(RecordError, match="needs a number"):
        push({"Points": {"$incr": float("inf")}})


def test_delete_removes_a_custom_property_and_a_default_one():
    push({"Plan": "Gold", "Name": "Ann", "Gender": "F"})
    profile = push({"Plan": {"$delete": True}, "Name": {"$delete": True}})
    assert "Plan" not in profile.custom
    assert profile.name == "" and profile.gender == "F"
    with pytest.raises(RecordError, match="needs the value true"):
        push({"Plan": {"$delete": False}})


def test_dates_are_given_as_D_epoch_and_stored_as_sortable_utc_text():
    profile = push({"Joined": "$D_1700000000", "DOB": "$D_631152000"})
    assert profile.custom["Joined"] == "2023-11-14T22:13:20Z"
    assert definition("Joined") == "date"
    assert profile.dob == dt.date(1990, 1, 1)
    with pytest.raises(RecordError, match="not a valid"):
        push({"Joined": "$D_soon"})


def test_a_type_is_fixed_on_first_sight_and_a_mismatch_is_refused_not_coerced():
    push({"Score": 10}, identity="a")
    for bad in ("10", True, "$D_1700000000", {"$add": ["x"]}):
        with pytest.raises(RecordError, match="holds a number") as error:
            push({"Score": bad}, identity="b")
        assert error.value.code == 555
    assert Profile.objects.count() == 1  # refused records write nothing, not even a profile
    push({"Active": True})
    with pytest.raises(RecordError, match="holds a boolean"):
        push({"Active": "yes"})


def test_a_declared_type_applies_to_the_first_value():
    PropertyDefinition.objects.create(scope="profile", name="Score", type="number", declared=True)
    with pytest.raises(RecordError, match="holds a number"):
        push({"Score": "high"})


def test_a_refused_record_changes_nothing_on_the_profile():
    push({"Plan": "Gold", "Score": 1})
    with pytest.raises(RecordError):
        push({"Plan": "Silver", "Score": "x"})
    profile = Profile.objects.get()
    assert profile.custom == {"Plan": "Gold", "Score": 1}


@pytest.mark.parametrize(
    "key",
    [
        "",
        "   ",
        "a%b",
        "a>b",
        "a<b",
        "a!b",
        "a|b",
        "a&b",
        "a.b",
        "a:b",
        "a;b",
        "a$b",
        "a'b",
        'a"b',
        "a\\b",
        "a#b",
        "k" * 121,
        "é" * 61,
    ],
)
def test_bad_key_names_are_refused(key):
    with pytest.raises(RecordError) as error:
        push({key: "v"})
    assert error.value.code == 555
    assert "name" in error.value.message


def test_keys_of_120_bytes_and_values_of_512_bytes_are_accepted_and_one_more_is_not():
    profile = push({"k" * 120: "v" * 512})
    assert profile.custom["k" * 120] == "v" * 512
    with pytest.raises(RecordError, match="longer than 512 bytes"):
        push({"Note": "é" * 256 + "x"})


def test_at_most_256_custom_profile_keys_exist():
    PropertyDefinition.objects.bulk_create(
        PropertyDefinition(scope="profile", name=f"p{i}", type="string")
        for i in range(MAX_CUSTOM_PROFILE_KEYS - 1)
    )
    push({"last one": "ok"})
    with pytest.raises(RecordError, match="at most 256") as error:
        push({"one too many": "no"})
    assert error.value.code == 555
    # Known keys still take values.
    assert push({"p0": "still fine"}).custom["p0"] == "still fine"


def test_operations_must_be_known_and_alone():
    for bad in ({"$append": ["a"]}, {"$add": ["a"], "$remove": ["b"]}, {"$set": {"$incr": 1}}):
        with pytest.raises(RecordError):
            push({"Tags": bad})


def test_default_properties_take_plain_values():
    with pytest.raises(RecordError, match="takes a plain value"):
        push({"Name": {"$add": ["x"]}})
