"""python manage.py campaign create|test|send|report --name N …"""

import csv
import json

from django.core.management.base import BaseCommand, CommandError

from campaigns import selectors, services
from campaigns.models import AudienceKind, Campaign, Channel
from segments.models import Segment


class Command(BaseCommand):
    help = "Create, test-send, send and report on campaigns."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="create an email/SMS/… campaign to a segment")
        create.add_argument("--name", required=True)
        create.add_argument("--channel", choices=Channel.values, default=Channel.EMAIL)
        create.add_argument("--segment", required=True, help="the name of a saved segment")
        create.add_argument("--subject", default="")
        create.add_argument("--body", required=True, help="Liquid template")
        create.add_argument("--html", action="store_true", help="the body is HTML (email)")
        for name, text in (("test", "send to every test profile"),
                           ("send", "send and wait; prints outcome counts as JSON"),
                           ("report", "per-profile outcomes as CSV")):  # fmt: skip
            actions.add_parser(name, help=text).add_argument("--name", required=True)

    def handle(self, *args, action, name, **options):
        if action == "create":
            return self.create(name, **options)
        campaign = Campaign.objects.select_related("segment").filter(name=name).first()
        if campaign is None:
            raise CommandError(f"No campaign named “{name}”.")
        try:
            if action == "test":
                run = services.send_test(campaign, user=None)
                self.stdout.write(json.dumps(selectors.run_outcome_counts(run)))
            elif action == "send":
                run = services.send_start(campaign, user=None, queue=False)
                run = services.run_execute(run.pk)
                self.stdout.write(json.dumps(selectors.run_outcome_counts(run)))
            else:
                writer = csv.writer(self.stdout)
                for row in selectors.report_rows(campaign):
                    writer.writerow(row)
        except services.CampaignProblem as problem:
            raise CommandError(str(problem)) from None

    def create(self, name, *, channel, segment, subject, body, html, **options):
        if Campaign.objects.filter(name=name).exists():
            raise CommandError(f"A campaign named “{name}” exists already.")
        saved = Segment.objects.filter(name=segment).first()
        if saved is None:
            raise CommandError(f"No segment named “{segment}”.")
        campaign = Campaign(name=name, channel=channel, audience_kind=AudienceKind.SEGMENT,
                            segment=saved, subject=subject, body=body, html=html)  # fmt: skip
        try:
            services.campaign_save(campaign, user=None)
        except services.CampaignProblem as problem:
            raise CommandError(str(problem)) from None
        self.stdout.write(f"Created campaign “{name}” (#{campaign.pk}).")
