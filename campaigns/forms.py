from django import forms

from campaigns import services
from campaigns.models import AudienceKind, Campaign
from config import safejson

MAX_JSON_CHARS = 100_000


class JsonField(forms.CharField):
    def __init__(self, *args, what: str, **kwargs):
        self.what = what
        super().__init__(*args, max_length=MAX_JSON_CHARS, required=False,
                         widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
                         **kwargs)  # fmt: skip

    def prepare_value(self, value):
        if isinstance(value, dict | list):
            import json

            return json.dumps(value)
        return value

    def clean(self, value):
        text = super().clean(value).strip()
        if not text:
            return None
        try:
            return safejson.parse(text, what=self.what).data
        except safejson.JsonInputError as error:
            raise forms.ValidationError(error.message) from None


class CampaignForm(forms.ModelForm):
    definition = JsonField(what="the audience definition", label="Audience definition (JSON)")
    live_where = JsonField(what="the event filter", label="Event filter (JSON list, optional)")

    class Meta:
        model = Campaign
        fields = ["name", "channel", "audience_kind", "segment", "definition", "live_event",
                  "live_where", "subject", "body", "html"]  # fmt: skip
        widgets = {"body": forms.Textarea(attrs={"rows": 8})}

    def clean_live_where(self):
        value = self.cleaned_data.get("live_where")
        if value is not None and not isinstance(value, list):
            raise forms.ValidationError("The event filter is a JSON list of conditions.")
        return value or []

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        candidate = Campaign(**{name: cleaned.get(name) for name in self.Meta.fields})
        if cleaned.get("audience_kind") != AudienceKind.DEFINITION:
            candidate.definition = None
        try:
            services.campaign_check(candidate)
        except services.CampaignProblem as problem:
            raise forms.ValidationError(str(problem)) from None
        return cleaned


class PreviewForm(forms.Form):
    q = forms.CharField(label="Identity, email or phone", max_length=512, required=False)


class TestSendForm(forms.Form):
    profile = forms.IntegerField(required=False, widget=forms.HiddenInput)
