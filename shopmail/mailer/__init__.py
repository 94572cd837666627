"""Mail providers behind one `Sender` contract: file `outbox`, in-`memory`, `sendgrid_api`; the
`factory` picks one from settings; `throttle` paces requests; `errors` is the error hierarchy.

May import: `config` and the shopmail foundation only (no Prefect).
"""

from shopmail.mailer.base import OutgoingMail, Sender, SendResult, SendStatus

__all__ = ["OutgoingMail", "SendResult", "SendStatus", "Sender"]
