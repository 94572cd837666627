"""Public HTTP endpoints: `feedback_app` (one-click unsubscribe, signed SendGrid event webhook).

May import: `config`, the shopmail foundation, `mail`, `state`.
"""
