"""PortStats and Histogram: fixed size, cumulative buckets, quantiles."""

from __future__ import annotations

import json

import pytest

from deploy_code.network import LATENCY_BOUNDS, Histogram, PortStats, ProxySettings


def test_histogram_stays_fixed_size_and_is_cumulative() -> None:
    h = Histogram()
    for i in range(10_000):
        h.observe((i % 100) / 10_000)  # 0 .. 9.9 ms
    h.observe(10.0)  # past the last bound: +Inf
    data = h.to_dict()
    buckets = data["buckets"]
    assert isinstance(buckets, list) and len(buckets) == len(LATENCY_BOUNDS) + 1
    assert buckets[-1] == ["+Inf", 10_001]
    counts = [c for _, c in buckets]
    assert counts == sorted(counts)
    assert data["count"] == 10_001
    assert h.quantile(0.5) == 0.005
    assert h.quantile(1.0) == float("inf")
    assert Histogram().quantile(0.5) is None


def test_port_stats_are_json_ready() -> None:
    s = PortStats()
    s.upstream_connect.observe(0.0002)
    text = json.dumps(s.to_dict())
    assert '"upstream_connect_seconds"' in text and '"refused": 0' in text and '"replays": 0' in text


def test_replay_settings_are_checked() -> None:
    assert ProxySettings().replay is True
    with pytest.raises(ValueError):
        ProxySettings(replay_buffer=-1)
    with pytest.raises(ValueError):
        ProxySettings(max_replays=-1)
