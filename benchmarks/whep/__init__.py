"""CPU cost of a session's WHEP video for its viewers: shared encoder against aiortc's own."""
