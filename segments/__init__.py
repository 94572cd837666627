"""Who gets a mail: pure pandas over the extracted DataFrames, no Prefect, no shopmail import.

The shared engine lives here: segment `rules` over `customer_features`, `segment_snapshot` and
`segment_preview`, `recommendations`, `eligibility`, cross-campaign `arbitration` (frequency cap,
priority), `holdout` groups, `send_time` (quiet hours), `local_time`, and helpers of several audiences
(`order_details`, `service_window`, `holiday_calendar`). One module per campaign's audience rule is
in `segments.audiences`. May import: `config` only.
"""
