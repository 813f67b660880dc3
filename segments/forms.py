import json

from django import forms

from config import safejson
from segments.models import SYSTEM_DEFINITIONS

# Far above any real definition (the compiler caps conditions anyway); keeps a
# pasted megabyte from being parsed at all.
MAX_DEFINITION_CHARS = 100_000


class SegmentForm(forms.Form):
    name = forms.CharField(max_length=200, required=False)
    definition = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
        max_length=MAX_DEFINITION_CHARS,
        initial=json.dumps({"all": []}),
    )

    def clean_definition(self):
        text = self.cleaned_data["definition"]
        try:
            # Unstorable values are named with their path by the compiler.
            return safejson.parse(text, what="the definition").data
        except safejson.JsonInputError as error:
            raise forms.ValidationError(error.message) from None

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if name in {key.label for key in SYSTEM_DEFINITIONS}:
            raise forms.ValidationError(f"“{name}” is the name of a system segment.")
        return name


class ExportForm(forms.Form):
    # Checkboxes: a multiple <select> needs Ctrl-click, which few people know.
    properties = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple(
        attrs={"class": "export-property"}))  # fmt: skip

    def __init__(self, *args, available: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["properties"].choices = [(name, name) for name in available]
