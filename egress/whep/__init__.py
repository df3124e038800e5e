"""WHEP playback of the egress worker: viewers of a stream fed from its output ring."""
