"""Forms of the Find People and profile pages (validation only, no writes)."""

from __future__ import annotations

from django import forms
from django.db.models import Q

from profiles.properties import RecordError
from profiles.selectors import profile_property_condition

DELETE_WORD = "DELETE"


class PeopleFilterForm(forms.Form):
    """Base form of PeopleFilter: checks that the property filter's value fits
    the property, and keeps the resulting condition for the filter."""

    property_condition: Q | None = None

    def clean(self) -> dict:
        cleaned = super().clean()
        name = (cleaned.get("prop") or "").strip()
        value = (cleaned.get("value") or "").strip()
        self.property_condition = None
        if name and not value:
            self.add_error("value", "Type the value the property must have.")
        elif value and not name:
            self.add_error("prop", "Choose the property the value is for.")
        elif name and value:
            try:
                self.property_condition = profile_property_condition(name=name, value=value)
            except RecordError as error:
                self.add_error("value", error.message)
        return cleaned


class MarkTestForm(forms.Form):
    is_test = forms.TypedChoiceField(
        choices=[("1", "Mark as test profile"), ("0", "Unmark test profile")],
        coerce=lambda value: value == "1",
    )


class DeleteProfileForm(forms.Form):
    """Deleting is typed out: the CleverTap ID, or the word DELETE."""

    confirmation = forms.CharField(
        label="Type the CleverTap ID or the word DELETE to confirm",
        max_length=100,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def __init__(self, *args, ct_id: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ct_id = ct_id

    def clean_confirmation(self) -> str:
        typed = self.cleaned_data["confirmation"].strip()
        if typed not in {self.ct_id, DELETE_WORD}:
            raise forms.ValidationError(
                f"That is neither the CleverTap ID ({self.ct_id}) nor the word {DELETE_WORD}: "
                "nothing was deleted."
            )
        return typed


class ApiCredentialForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Who or what uses it, e.g. “Mobile backend”.")
