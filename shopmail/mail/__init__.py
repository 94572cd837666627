"""Composing a mail: Jinja2 `rendering` (sandboxed, autoescaped) and `links` (UTM, signed unsubscribe).

May import: `config` and the shopmail foundation only.
"""
