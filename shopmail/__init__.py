"""Shopmail's plain functions (no Prefect), in rooms by concern.

Foundation modules here: `db` (engines, safe URLs, private SQLite files), `campaigns` (campaign
model and registry), `schedule` (crons in shop time), `redaction` (what no error, log or report may
carry), `coupon_codes` (the shape and length of coupon codes); they may import `config` only.
Rooms, lowest first: `mailer` (mail providers), `mail` (rendering, links), `shop` (the shop data
contract), `state` (Shopmail's own DB), `results`, `run` (a campaign run as plain functions), `web`
(the feedback app), `devtools`; then `cli`, the entry point. A room may import only the rooms below
it (and `segments`, `config`): `tests/test_import_directions.py` holds the exact rules.
"""
