"""Forms of the CSV import pages: the upload, then the column mapping."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from imports.models import ImportKind, ImportRun
from imports.services import ROLES, import_run_columns, mapping_errors
from imports.sources.csv import COLUMN_TYPES
from profiles.properties import DEFAULT_PROPERTIES, RecordError
from profiles.services import event_validate


class UploadForm(forms.Form):
    kind = forms.ChoiceField(
        label="The file holds", choices=ImportKind.choices, initial=ImportKind.PROFILES,
        widget=forms.RadioSelect,
    )  # fmt: skip
    event_name = forms.CharField(
        label="Event name (for an events file)", max_length=512, required=False,
        help_text="One event name per file, e.g. Charged.",
    )  # fmt: skip
    file = forms.FileField(label="CSV file")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.IMPORT_MAX_UPLOAD_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                f"This file is {filesizeformat(upload.size)}; files up to "
                f"{filesizeformat(limit)} can be uploaded. Split it into smaller files."
            )
        if upload.size == 0:
            raise forms.ValidationError("The file is empty.")
        return upload

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("kind") == ImportKind.EVENTS:
            name = (data.get("event_name") or "").strip()
            try:
                event_validate(name, {})
            except RecordError as error:
                self.add_error("event_name", error.message)
        return data


class MappingForm(forms.Form):
    """Per column of the file: what it holds, its type and the property name it is saved as."""

    def __init__(
        self, *args, import_run: ImportRun, detected: list[str],
        samples: list[list[str]] | None = None, **kwargs,
    ) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.import_run = import_run
        self.samples = samples or []
        self.columns = import_run_columns(import_run)
        self.detected = detected
        entries = import_run.mapping.get("columns") or []
        roles = [
            (role, label) for role, label in ROLES.items()
            if role != "ts" or import_run.kind == ImportKind.EVENTS
        ]  # fmt: skip
        types = [("", "as the property's own rules (default properties)"),
                 *COLUMN_TYPES.items()]  # fmt: skip
        for position, column in enumerate(self.columns):
            entry = entries[position] if position < len(entries) else {}
            # The table's header names the column; the labels are for screen readers.
            role_label, type_label = f"{column.header}: holds", f"{column.header}: type"
            self.fields[f"role_{position}"] = forms.ChoiceField(
                label=role_label, choices=roles, initial=entry.get("role"),
                widget=forms.Select(attrs={"aria-label": role_label}),
            )  # fmt: skip
            self.fields[f"type_{position}"] = forms.ChoiceField(
                label=type_label, choices=types, required=False, initial=entry.get("type", ""),
                widget=forms.Select(attrs={"aria-label": type_label}),
            )  # fmt: skip
            name_label = f"{column.header}: save as"
            self.fields[f"name_{position}"] = forms.CharField(
                label=name_label, required=False, max_length=1024,
                initial=entry.get("name") or column.name,
                widget=forms.TextInput(attrs={"aria-label": name_label}),
                help_text="The property name it is stored under.",
            )  # fmt: skip

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "column": column,
                "role": self[f"role_{position}"],
                "type": self[f"type_{position}"],
                "name": self[f"name_{position}"],
                "samples": [cells[position] for cells in self.samples if cells[position].strip()][
                    :3
                ],
                "detected": COLUMN_TYPES.get(self.detected[position], self.detected[position]),
                "is_default": column.name.lower() in DEFAULT_PROPERTIES,
            }
            for position, column in enumerate(self.columns)
        ]

    def mapping(self) -> dict[str, Any]:
        entries = self.import_run.mapping.get("columns") or []
        mapped = []
        for position, column in enumerate(self.columns):
            entry = entries[position] if position < len(entries) else {}
            role = self.cleaned_data[f"role_{position}"]
            column_type = self.cleaned_data.get(f"type_{position}") or ""
            if role != "property" or (
                column.name.lower() in DEFAULT_PROPERTIES and self.import_run.kind == "profiles"
            ):
                column_type = ""  # identifiers and default properties have their own rules
            date_format = entry.get("date_format") or column.date_format
            mapped_entry = {"role": role, "type": column_type, "date_format": date_format}
            name = (self.cleaned_data.get(f"name_{position}") or "").strip()
            if role == "property" and name and name != column.name:
                mapped_entry["name"] = name
            mapped.append(mapped_entry)
        return {"columns": mapped}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not self.errors:
            for error in mapping_errors(
                kind=self.import_run.kind, columns=self.columns, mapping=self.mapping()
            ):
                self.add_error(None, error)
        return data
