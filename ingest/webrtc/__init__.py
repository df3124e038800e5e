"""WebRTC input of the ingest worker: a WHIP publisher's peer connection into the input ring."""
