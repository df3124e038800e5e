"""WebRTC pieces shared by the parent (SDP checks, no aiortc) and the workers (ICE set-up)."""
