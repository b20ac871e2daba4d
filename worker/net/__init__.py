"""Guarded HTTP for every stage that downloads: the SSRF-safe client and the fleet-wide per-host limits."""
