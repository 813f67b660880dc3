from campaigns.delivery.models import OutboxMessage

__all__ = ["OutboxMessage"]
