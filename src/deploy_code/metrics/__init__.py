"""Metrics: prometheus_client collectors that read live state at scrape time, bounded history rings."""
