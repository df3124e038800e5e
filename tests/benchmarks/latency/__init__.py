"""Tests of the frame-latency benchmark's own parts."""
