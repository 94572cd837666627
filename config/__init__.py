"""Shopmail configuration: typed settings, campaign catalogue, data contract mapping."""
