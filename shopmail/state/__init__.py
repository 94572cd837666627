"""Shopmail's own state DB: tables (`schema`), Alembic `migrations`, summaries and suppressions
(`state_db`), the send `ledger`, issued `coupons`, unsubscribes and provider events (`feedback`).

May import: `config`, the shopmail foundation, `shopmail.shop` (coupons go to the shop),
`shopmail.mail` (unsubscribe tokens), `shopmail.mailer` (send results).
"""
