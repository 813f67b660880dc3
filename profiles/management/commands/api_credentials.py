"""python manage.py api_credentials create --name N | list | revoke --account-id ID"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.credentials import api_credential_create, api_credential_revoke
from profiles.models import ApiCredential


class Command(BaseCommand):
    help = "Create, list and revoke REST API credentials (account id + passcode)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="create a credential; prints the passcode once")
        create.add_argument("--name", required=True)
        actions.add_parser("list", help="list credentials (never passcodes)")
        revoke = actions.add_parser("revoke", help="revoke a credential")
        revoke.add_argument("--account-id", required=True)

    def handle(self, *args, **options) -> None:
        action = options["action"]
        if action == "create":
            if not options["name"].strip():
                raise CommandError("--name must not be empty.")
            credential, passcode = api_credential_create(name=options["name"])
            self.stdout.write(f"account_id={credential.account_id} passcode={passcode}")
        elif action == "list":
            for credential in ApiCredential.objects.order_by("created_at"):
                status = (
                    f"revoked {credential.revoked_at:%Y-%m-%d %H:%M}"
                    if (credential.revoked_at)
                    else "active"
                )
                last = (
                    f"{credential.last_used_at:%Y-%m-%d %H:%M}"
                    if (credential.last_used_at)
                    else "never"
                )
                self.stdout.write(
                    f"{credential.account_id}\t{credential.name}\t{status}\tlast used {last}"
                )
        else:
            credential = ApiCredential.objects.filter(account_id=options["account_id"]).first()
            if credential is None:
                raise CommandError(f"No credential with account id {options['account_id']}.")
            api_credential_revoke(credential=credential)
            self.stdout.write(f"revoked account_id={credential.account_id}")
