"""A campaign run as plain functions: the `pipeline` (audience -> recipients -> eligibility -> mails),
the `approval` guard rail, `preview` of one mail, and the `run_report` artifacts show.

May import: `config`, `segments`, the shopmail foundation, `mailer`, `mail`, `shop`, `state`.
"""
