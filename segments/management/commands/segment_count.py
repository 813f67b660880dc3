"""python manage.py segment_count '<definition JSON>' | --segment NAME: print the count."""

from django.core.management.base import BaseCommand, CommandError

from config import safejson
from segments.compiler import SegmentDefinitionError
from segments.models import Segment
from segments.selectors import segment_count


class Command(BaseCommand):
    help = "Print the number of profiles matching a segment definition (JSON) or a saved segment."

    def add_arguments(self, parser):
        parser.add_argument("definition", nargs="?", help="the definition as JSON")
        parser.add_argument("--segment", help="the name of a saved segment")

    def handle(self, *args, definition=None, segment=None, **options):
        if (definition is None) == (segment is None):
            raise CommandError("Give either a definition (JSON) or --segment NAME.")
        if segment is not None:
            saved = Segment.objects.filter(name=segment).first()
            if saved is None:
                raise CommandError(f"No segment named “{segment}”.")
            parsed = saved.definition
        else:
            try:
                parsed = safejson.loads(definition, what="the definition")
            except safejson.JsonInputError as error:
                raise CommandError(error.message) from None
        try:
            count = segment_count(parsed)
        except SegmentDefinitionError as error:
            raise CommandError(f"Invalid segment definition: {error}") from None
        self.stdout.write(str(count))
