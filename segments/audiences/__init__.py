"""One module per campaign audience rule (`birthday`, `wakeup`, ...) and the `registry` that campaign
files name in `audience = "..."`.

Pure pandas, no Prefect. May import: `config` and the shared engine in `segments` (local time,
recommendations, order details, service window, holiday calendar).
"""
