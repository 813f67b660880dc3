"""Settings → Messaging: provider settings; secrets are write-only."""

from __future__ import annotations

import re

from django import forms

from campaigns.delivery.models import MessagingSettings

# What push services accept as a VAPID subject (RFC 8292 §2.1): a mailto: or https: contact.
VAPID_SUBJECT = re.compile(r"^(mailto:[^@\s]+@[^@\s]+|https://[^\s/]+(/\S*)?)$", re.IGNORECASE)
SECRET_FIELDS = ("twilio_auth_token", "fcm_access_token")


class SecretInput(forms.PasswordInput):
    """Never renders the value back (PasswordInput's default, stated here on purpose)."""

    def __init__(self) -> None:
        super().__init__(render_value=False, attrs={"autocomplete": "new-password"})


class MessagingSettingsForm(forms.ModelForm):
    twilio_base_url = forms.URLField(
        label="SMS/WhatsApp API base URL", required=False, max_length=500, assume_scheme="https"
    )
    fcm_base_url = forms.URLField(
        label="FCM API base URL", required=False, max_length=500, assume_scheme="https"
    )
    twilio_auth_token = forms.CharField(
        label="Auth token", required=False, max_length=500, widget=SecretInput(),
        help_text="Leave empty to keep the current token.",
    )  # fmt: skip
    twilio_auth_token_clear = forms.BooleanField(label="Remove the saved token", required=False)
    fcm_access_token = forms.CharField(
        label="Access token (OAuth 2 bearer for the HTTP v1 API)", required=False,
        max_length=4000, widget=SecretInput(), help_text="Leave empty to keep the current one.",
    )  # fmt: skip
    fcm_access_token_clear = forms.BooleanField(
        label="Remove the saved credentials", required=False
    )

    class Meta:
        model = MessagingSettings
        fields = [
            "twilio_base_url",
            "twilio_account_sid",
            "twilio_sms_from",
            "twilio_whatsapp_from",
            "fcm_base_url",
            "fcm_project_id",
            "webpush_subject",
        ]

    def clean_twilio_account_sid(self) -> str:
        sid = self.cleaned_data["twilio_account_sid"].strip()
        if sid and not re.fullmatch(r"[A-Za-z0-9_-]+", sid):
            raise forms.ValidationError("An account SID has only letters, digits, - and _.")
        return sid

    def clean_fcm_project_id(self) -> str:
        project = self.cleaned_data["fcm_project_id"].strip()
        if project and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", project):
            raise forms.ValidationError("A project id has lower-case letters, digits and -.")
        return project

    def clean_webpush_subject(self) -> str:
        subject = self.cleaned_data["webpush_subject"].strip()
        if subject and not VAPID_SUBJECT.match(subject):
            raise forms.ValidationError(
                "Push services want a contact: mailto:someone@example.com or an https:// address."
            )
        return subject

    def secrets(self) -> dict[str, str | None]:
        """Secret changes: a new value, None to remove it; a secret left empty is absent."""
        changes: dict[str, str | None] = {}
        for name in SECRET_FIELDS:
            if self.cleaned_data.get(f"{name}_clear"):
                changes[name] = None
            elif value := self.cleaned_data.get(name, "").strip():
                changes[name] = value
        return changes
