"""Mail providers behind one `Sender` contract (file outbox, in-memory, SendGrid)."""

from tasks.mailer.base import OutgoingMail, Sender, SendResult, SendStatus

__all__ = ["OutgoingMail", "SendResult", "SendStatus", "Sender"]
