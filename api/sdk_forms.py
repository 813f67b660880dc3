"""The allowed-origins form of Settings → SDK."""

from __future__ import annotations

from django import forms

from api.sdk_services import normalize_origin

MAX_ORIGINS = 50


class AllowedOriginsForm(forms.Form):
    origins = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=20_000,
        help_text="One origin a line, e.g. https://shop.example.com. Leave empty to accept "
        "SDK traffic from any origin.",
    )

    def clean_origins(self) -> list[str]:
        lines = [line.strip() for line in self.cleaned_data["origins"].splitlines()]
        origins, bad = [], []
        for line in filter(None, lines):
            origin = normalize_origin(line)
            (origins.append(origin) if origin else bad.append(line))
        if bad:
            raise forms.ValidationError(
                "Not an http(s) origin: %(bad)s", params={"bad": ", ".join(bad[:5])}
            )
        if len(origins) > MAX_ORIGINS:
            raise forms.ValidationError(f"At most {MAX_ORIGINS} origins.")
        return origins
