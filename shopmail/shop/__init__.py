"""The shop data contract: its tables (`schema`), reading them (`extract`) and checking them
(`data_checks`, the Great Expectations gate).

May import: `config`, the shopmail foundation (`db`, `campaigns`), `segments` (shop-local time).
"""
