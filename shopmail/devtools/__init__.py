"""Developer tools, never on a production send path: the local SendGrid-compatible server
(`sendgrid_sink`, its `sink_rules`, `sink_faults`, `sink_page`, and `sink_engagement`: what its
recipients do), `local_loop` (the sink wired to the real feedback app), the `demo_shop` generator
and the `bench`mark.

May import: every shopmail room up to `web` (the local loop serves the real feedback app) and
`results` (the benchmark of the reports), `segments`, `config`; nothing imports devtools but the CLI
and the tests.
"""
