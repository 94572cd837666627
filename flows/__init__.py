"""Prefect flows. A flow-run process a worker started without Shopmail's logging settings gets them
here, when it loads its flow (config/quiet_logs.py)."""

from config.quiet_logs import quiet_flow_run_process

quiet_flow_run_process()
