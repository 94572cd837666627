"""Prefect tasks: thin wrappers over the plain functions in `shopmail`, `segments` and `shopmail.mailer`."""
