"""Measured results: `attribution` (mailed vs holdout uplift) and its `report_chart` (SVG).

May import: `config`, `segments`, the shopmail foundation, `shop`, `state`.
"""
