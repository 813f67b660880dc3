"""Run the local SMTP sink until stopped: received emails appear on the Outbox page."""

import signal
import threading

from django.core.management.base import BaseCommand

from campaigns.delivery.sink import smtp_sink_start


class Command(BaseCommand):
    help = "Receive email on 127.0.0.1:PORT and store it for the Outbox page."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, required=True)

    def handle(self, *args, port: int, **options) -> None:
        controller = smtp_sink_start(port)
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        signal.signal(signal.SIGINT, lambda *_: stopped.set())
        self.stdout.write(f"SMTP sink on 127.0.0.1:{controller.port}", ending="\n")
        self.stdout.flush()
        stopped.wait()
        controller.stop()
