"""The SFTP source form: validation and friendly messages only."""

from __future__ import annotations

from django import forms

from imports.models import SftpSchedule, SftpSource, SftpSourceKind
from imports.sources.sftp import SftpKeyInvalid, load_private_key

KEEP_HELP = "Saved — leave blank to keep."


class SftpSourceForm(forms.ModelForm):
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    private_key = forms.CharField(
        required=False,
        label="Private key",
        widget=forms.Textarea(
            attrs={"rows": 4, "placeholder": "-----BEGIN OPENSSH PRIVATE KEY-----"}
        ),
        help_text="OpenSSH or PEM (RSA, ECDSA, Ed25519), without a passphrase.",
    )

    class Meta:
        model = SftpSource
        fields = [
            "name",
            "host",
            "port",
            "username",
            "host_key_fingerprint",
            "remote_dir",
            "pattern",
            "kind",
            "event_name",
            "schedule",
            "every_minutes",
            "daily_at",
            "enabled",
        ]
        labels = {
            "host_key_fingerprint": "Trusted host key (SHA256 fingerprint)",
            "remote_dir": "Remote folder",
            "pattern": "File name pattern",
            "every_minutes": "Every (minutes)",
            "daily_at": "Daily at (HH:MM)",
        }
        help_texts = {
            "host_key_fingerprint": "Leave empty, save, then use “Test connection” to see and "
            "trust the server's key.",
            "pattern": "A glob such as *.csv or orders_*.csv.",
            "event_name": "Only for the Events kind.",
        }
        widgets = {"daily_at": forms.TimeInput(attrs={"type": "time"}, format="%H:%M")}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.has_password:
            self.fields["password"].help_text = KEEP_HELP
        if self.instance.pk and self.instance.has_private_key:
            self.fields["private_key"].help_text = KEEP_HELP

    def clean_remote_dir(self) -> str:
        value = self.cleaned_data["remote_dir"].strip() or "/"
        if not value.startswith("/"):
            value = "/" + value
        return value.rstrip("/") or "/"

    def clean_private_key(self) -> str:
        value = self.cleaned_data["private_key"].strip()
        if value:
            try:
                load_private_key(value)
            except SftpKeyInvalid as exc:
                raise forms.ValidationError(str(exc)) from exc
        return value

    def clean(self) -> dict:
        data = super().clean()
        password, key = data.get("password"), data.get("private_key")
        if password and key:
            self.add_error("private_key", "Give a password or a private key, not both.")
        has_saved = self.instance.pk and (
            self.instance.has_password or self.instance.has_private_key
        )
        if not password and not key and not has_saved:
            self.add_error("password", "Give a password or a private key.")
        if data.get("kind") == SftpSourceKind.EVENTS and not data.get("event_name", "").strip():
            self.add_error("event_name", "Events need an event name.")
        if data.get("schedule") == SftpSchedule.DAILY and not data.get("daily_at"):
            self.add_error("daily_at", "Give the time of day.")
        if data.get("schedule") == SftpSchedule.INTERVAL and not data.get("every_minutes"):
            self.add_error("every_minutes", "Give the number of minutes.")
        return data
