"""Shopmail core: plain functions and models used by the Prefect tasks and flows."""
