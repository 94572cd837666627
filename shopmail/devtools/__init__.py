"""Developer tools, never on a production send path: the local SendGrid-compatible server
(`sendgrid_sink`, its `sink_rules`, `sink_faults` and `sink_page`), the `demo_shop` generator and
the `bench`mark.

May import: every shopmail room below `web`, `segments`, `config`; nothing imports devtools but the CLI
and the tests.
"""
