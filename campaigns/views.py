from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from campaigns.delivery.selectors import outbox_messages
from config.access import permission_required


@require_GET
@permission_required("campaigns.view_outboxmessage")
def outbox(request: HttpRequest) -> HttpResponse:
    return render(
        request, "campaigns/outbox.html", {"nav": "campaigns", "messages_": outbox_messages()}
    )
