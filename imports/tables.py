import django_tables2 as tables
from django.utils.html import format_html

from imports.models import ImportRun, ImportStatus

STATUS_BADGES = {
    ImportStatus.DONE: "identified",
    ImportStatus.FAILED: "test",
    ImportStatus.CANCELLED: "anonymous",
}


class ImportRunTable(tables.Table):
    file_name = tables.Column("File", linkify=True)
    created_at = tables.DateTimeColumn(verbose_name="Uploaded on", format="Y-m-d H:i")
    uploaded_by = tables.Column("Uploaded by", empty_values=())
    kind = tables.Column("Kind")
    status = tables.Column("Status")
    rows_total = tables.Column("Rows", default="—")
    rows_rejected = tables.Column("Rejected")

    class Meta:
        model = ImportRun
        fields = ("file_name", "created_at", "uploaded_by", "kind", "status", "rows_total",
                  "rows_rejected")  # fmt: skip
        orderable = False
        empty_text = "No imports yet."
        attrs = {"class": "imports-table"}

    def render_uploaded_by(self, record: ImportRun) -> str:
        if record.uploaded_by is not None:
            return record.uploaded_by.get_username()
        return record.get_origin_display()

    def render_status(self, record: ImportRun) -> str:
        badge = STATUS_BADGES.get(record.status, "")
        return format_html('<span class="badge {}">{}</span>', badge, record.get_status_display())
